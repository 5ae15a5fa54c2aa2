"""The committed schema.graphql and the client documents in graphql/ match the code."""

from __future__ import annotations

from pathlib import Path

import pytest

from csms.api.export_schema import REGENERATE, SCHEMA_FILE, render_sdl
from graphql import build_schema, parse, validate

DOCUMENTS = sorted((Path(__file__).resolve().parents[2] / "graphql").glob("*"))


def test_schema_file_is_up_to_date() -> None:
    committed = SCHEMA_FILE.read_text(encoding="utf-8") if SCHEMA_FILE.exists() else ""
    assert committed == render_sdl(), f"schema.graphql is out of date: run `{REGENERATE}` and commit it"


def test_graphql_folder_holds_only_documents() -> None:
    # A .py file in graphql/ would shadow the graphql-core package.
    assert DOCUMENTS
    assert all(p.suffix == ".graphql" for p in DOCUMENTS), DOCUMENTS


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.name)
def test_client_documents_are_valid(path: Path) -> None:
    errors = validate(build_schema(render_sdl()), parse(path.read_text(encoding="utf-8")))
    assert errors == [], [e.message for e in errors]

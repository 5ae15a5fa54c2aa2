"""The PWA's operation documents in ``graphql/`` as one bundle: names unique, every root field covered.

Each file is validated on its own in ``test_schema_sync.py``. Client code generators (graphql-codegen,
Apollo, urql) load the whole folder as one document, so fragment and operation names must be unique
across files; and every root field should have an operation the app can send.
"""

from __future__ import annotations

from pathlib import Path

from csms.api.export_schema import render_sdl
from graphql import OperationDefinitionNode, build_schema, parse, validate

DOCUMENTS = sorted((Path(__file__).resolve().parents[2] / "graphql").glob("*.graphql"))


def test_the_documents_are_valid_as_one_bundle() -> None:
    bundle = "\n".join(path.read_text(encoding="utf-8") for path in DOCUMENTS)
    errors = validate(build_schema(render_sdl()), parse(bundle))
    assert [e.message for e in errors] == []


def test_every_root_field_has_a_client_operation() -> None:
    schema = build_schema(render_sdl())
    roots = {"query": schema.query_type, "mutation": schema.mutation_type, "subscription": schema.subscription_type}
    fields = {(kind, name) for kind, root in roots.items() if root is not None for name in root.fields}
    used = {
        (definition.operation.value, selection.name.value)  # type: ignore[attr-defined]
        for path in DOCUMENTS
        for definition in parse(path.read_text(encoding="utf-8")).definitions
        if isinstance(definition, OperationDefinitionNode)
        for selection in definition.selection_set.selections
    }
    assert fields - used == set()

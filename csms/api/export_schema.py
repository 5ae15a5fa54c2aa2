"""Write the GraphQL schema as SDL to ``schema.graphql`` at the repo root.

Run ``python -m csms.api.export_schema`` after changing the schema; ``tests/api/test_schema_sync.py``
fails while the committed file is out of date, so clients and reviewers always see the real contract.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = REPO_ROOT / "schema.graphql"
REGENERATE = "python -m csms.api.export_schema"


def render_sdl() -> str:
    """The schema's SDL, with a trailing newline, exactly as written to the file."""
    from csms.api.schema import schema

    return schema.as_str().rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write (or with ``--check``, compare) the SDL file; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m csms.api.export_schema", description=__doc__)
    parser.add_argument("--output", type=Path, default=SCHEMA_FILE, help="where to write (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is out of date, write nothing")
    args = parser.parse_args(argv)
    sdl = render_sdl()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != sdl:
            print(f"{args.output} is out of date: run `{REGENERATE}`", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(sdl, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

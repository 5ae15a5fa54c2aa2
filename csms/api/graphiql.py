"""GraphiQL, served from local files only.

The browser IDE must work without internet access and the repo holds only our own code, so its
third-party bundles (GraphiQL, React, ReactDOM, graphql-ws) are fetched from the npm registry at setup
time by ``csms/api/fetch_graphiql.sh`` into ``$CSMS_GRAPHIQL_DIR`` (default ``var/graphiql``) and
served from there under ``/graphiql/static/``. Our page and its start-up script are generated here.

A Content-Security-Policy limits every load and fetch to this origin, so a bundle that tried to reach a
CDN or a font service would fail visibly instead of leaking requests.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

import trio

STATIC_PREFIX = "/graphiql/static/"
BOOT_SCRIPT = "csms-graphiql.js"
# The files fetch_graphiql.sh copies; nothing else in the directory is ever served.
ASSETS: dict[str, str] = {
    "react.production.min.js": "text/javascript; charset=utf-8",
    "react-dom.production.min.js": "text/javascript; charset=utf-8",
    "graphiql.min.js": "text/javascript; charset=utf-8",
    "graphiql.min.css": "text/css; charset=utf-8",
    "graphql-ws.min.js": "text/javascript; charset=utf-8",
}
_REQUIRED = ("react.production.min.js", "react-dom.production.min.js", "graphiql.min.js", "graphiql.min.css")

# GraphiQL styles itself with inline style attributes and inlines its icons as data: URIs.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)

_DEFAULT_QUERY = """# Paste your API key in the Headers tab below:
#   {"Authorization": "Bearer csms_..."}
# (create one with: csms apikey create --name NAME)

query Stations {
  stations {
    id
    registrationStatus
    connected
    connectors { connectorId status errorCode }
  }
}
"""

# Kept in a served file, not inline, so the CSP can forbid inline scripts.
BOOT_JS = """"use strict";
(function () {
  var fetcher = GraphiQL.createFetcher({ url: new URL("/graphql", window.location.href).href });
  var root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(React.createElement(GraphiQL, {
    fetcher: fetcher,
    isHeadersEditorEnabled: true,
    // An API key must not outlive the tab in localStorage.
    shouldPersistHeaders: false,
    defaultHeaders: JSON.stringify({ Authorization: "Bearer " }, null, 2),
    defaultEditorToolsVisibility: "headers",
    defaultQuery: __DEFAULT_QUERY__
  }));
})();
"""

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>csms GraphiQL</title>
<link rel="stylesheet" href="{static}graphiql.min.css">
<style>html, body, #graphiql {{ height: 100%; margin: 0; }}</style>
</head>
<body>
<div id="graphiql">Loading GraphiQL…</div>
<script src="{static}react.production.min.js"></script>
<script src="{static}react-dom.production.min.js"></script>
<script src="{static}graphiql.min.js"></script>
<script src="{static}{boot}"></script>
</body>
</html>
"""

_MISSING_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>GraphiQL assets missing</title></head>
<body style="font-family: sans-serif; max-width: 46em; margin: 2em auto">
<h1>GraphiQL is not installed</h1>
<p>csms serves GraphiQL from local files, which are not in <code>{dir}</code> (missing: {missing}).</p>
<p>Fetch them once from the npm registry (needs <code>npm</code>):</p>
<pre>bash csms/api/fetch_graphiql.sh {dir}</pre>
<p>or point <code>CSMS_GRAPHIQL_DIR</code> at a directory that holds them, then reload this page.
The GraphQL API itself works without them: <code>POST /graphql</code>.</p>
</body>
</html>
"""


def graphiql_dir() -> Path:
    """Where the assets live: ``$CSMS_GRAPHIQL_DIR``, else ``var/graphiql`` under the working directory."""
    return Path(os.environ.get("CSMS_GRAPHIQL_DIR") or "var/graphiql")


def missing_assets(directory: Path) -> list[str]:
    """The required asset files not present in ``directory``."""
    return [name for name in _REQUIRED if not (directory / name).is_file()]


def boot_script() -> str:
    """The start-up script that mounts GraphiQL on the page."""
    return BOOT_JS.replace("__DEFAULT_QUERY__", json.dumps(_DEFAULT_QUERY))


def page(directory: Path) -> tuple[str, int]:
    """The GraphiQL page and its HTTP status: 200, or 503 with instructions when assets are missing."""
    missing = missing_assets(directory)
    if missing:
        return (
            _MISSING_PAGE.format(dir=html.escape(str(directory)), missing=html.escape(", ".join(missing))),
            503,
        )
    return _PAGE.format(static=STATIC_PREFIX, boot=BOOT_SCRIPT), 200


async def read_asset(directory: Path, name: str) -> tuple[bytes, str] | None:
    """The bytes and content type of one allowed asset, or None if unknown or absent.

    Only names in :data:`ASSETS` are served, so no request path ever reaches the file system.
    """
    if name == BOOT_SCRIPT:
        return boot_script().encode(), "text/javascript; charset=utf-8"
    content_type = ASSETS.get(name)
    if content_type is None:
        return None
    try:
        data = await trio.Path(directory / name).read_bytes()
    except FileNotFoundError:
        return None
    return data, content_type

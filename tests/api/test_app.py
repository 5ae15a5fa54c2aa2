"""HTTP surface besides GraphQL itself: /healthz, GraphiQL and its local assets, serve_api's lifecycle."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest
import trio

from csms.api import graphiql
from csms.store.db import Database, open_database
from tests.api.conftest import start_api

if TYPE_CHECKING:
    from pathlib import Path


async def test_healthz_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


async def test_healthz_database_down(db_url: str, nursery: trio.Nursery) -> None:
    async with open_database(db_url, size=1) as broken:
        await trio.to_thread.run_sync(broken.pool.close)
        url = await start_api(broken, nursery)
        async with httpx.AsyncClient(base_url=url) as http:
            response = await http.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "unavailable"}


@pytest.fixture
def assets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A GraphiQL directory holding stand-in files (the real ones come from npm at setup time)."""
    for name in graphiql.ASSETS:
        (tmp_path / name).write_text(f"/* {name} */\n")
    monkeypatch.setenv("CSMS_GRAPHIQL_DIR", str(tmp_path))
    return tmp_path


async def test_graphiql_page_from_local_assets(client: httpx.AsyncClient, assets: Path) -> None:
    response = await client.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    page = response.text
    assert "/graphiql/static/graphiql.min.js" in page
    assert "/graphiql/static/csms-graphiql.js" in page
    # Everything the page loads comes from this server.
    assert "https://" not in page
    assert "http://" not in page
    assert "//unpkg" not in page
    boot = await client.get("/graphiql/static/csms-graphiql.js")
    assert boot.status_code == 200
    assert "isHeadersEditorEnabled: true" in boot.text
    asset = await client.get("/graphiql/static/graphiql.min.css")
    assert asset.status_code == 200
    assert asset.text == "/* graphiql.min.css */\n"
    assert asset.headers["content-type"].startswith("text/css")


async def test_graphiql_static_serves_only_known_files(client: httpx.AsyncClient, assets: Path) -> None:
    (assets / "secret.txt").write_text("no")
    for path in ("secret.txt", "..%2Fsecret.txt", "npm", "VERSIONS.txt"):
        response = await client.get(f"/graphiql/static/{path}")
        assert response.status_code == 404, path


async def test_graphiql_missing_assets_explains_how_to_fetch(
    client: httpx.AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CSMS_GRAPHIQL_DIR", str(tmp_path / "absent"))
    response = await client.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 503
    assert "fetch_graphiql.sh" in response.text
    assert (await client.get("/graphiql/static/graphiql.min.js")).status_code == 404


async def test_serve_api_stops_when_cancelled(db: Database) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            url = await start_api(db, nursery)
            async with httpx.AsyncClient(base_url=url) as http:
                assert (await http.get("/healthz")).status_code == 200
            nursery.cancel_scope.cancel()
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient(base_url=url) as http:
            await http.get("/healthz")

"""A small run of the live-subscription benchmark against a real node, so the tool keeps working."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from csms.config import AuthSettings
from csms.store.apikeys import create_api_key
from simulators import live_bench
from tests.conftest import node_settings, running_node

NODE_MODULES = os.environ.get("CSMS_TEST_NODE_MODULES", "")  # set by `./dev test` when npm can install `ws`


@pytest.mark.parametrize("client", [
    "python",
    pytest.param("node", marks=pytest.mark.skipif(not NODE_MODULES, reason="no node_modules with `ws`")),
])
async def test_live_bench_measures_subscribers_of_live_sessions(db_url: str, client: str) -> None:
    settings = node_settings(db_url, auth=replace(AuthSettings(), register_rate_limit=1000))
    async with running_node(settings) as node:
        key = await node.db.run(create_api_key, "live bench")
        args = live_bench.parse_args([
            "--api", f"http://127.0.0.1:{node.ready.http_port}", "--ocpp", node.ocpp_url, "--api-key", key,
            "--sessions", "2", "--subscribers", "5", "--meter-interval", "0.1", "--warmup-s", "0.3",
            "--duration-s", "1", "--drain-s", "0.5", *(["--node-modules", NODE_MODULES] if client == "node" else []),
        ])
        line = await live_bench.run(args)
        sessions = await node.db.run(lambda conn: conn.execute(
            "SELECT status, count(*) FROM charging_sessions GROUP BY status").fetchall())
    name, *pairs = line.split()
    fields = dict(pair.split("=", 1) for pair in pairs)
    assert name == "LIVE" and (fields["subscribers"], fields["sessions"]) == ("5", "2")
    events, deliveries = int(fields["events"]), int(fields["deliveries"])
    # 5 subscribers round-robin over 2 sessions: 3 watch one, 2 the other; nobody missed an update.
    assert events >= 10 and 2 * events <= deliveries <= 3 * events
    assert (fields["dropped"], fields["errors"], fields["failed_sends"]) == ("0", "0", "0")
    assert int(fields["server_deliveries"]) >= deliveries  # stamped updates csms put on the sockets
    for figure in ("client_p50_ms", "client_p99_ms", "server_p50_ms", "server_p99_ms", "notify_p99_ms"):
        assert 0 < float(fields[figure]) < 5000, figure
    # The sessions were started from the app, then stopped and billed at the end of the run.
    assert sessions == [("completed", 2)]


@pytest.mark.parametrize("bad", [["--sessions", "0"], ["--subscribers", "-1"], ["--meter-interval", "0"]])
def test_arguments_are_checked(bad: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        live_bench.parse_args(["--api-key", "k", *bad])
    assert exc.value.code == 2

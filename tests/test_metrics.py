"""Latency histograms and ``GET /metrics``: the format, the figures, and who may read them."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import httpx
import pytest
import trio

from csms.services.metrics import Histogram, LiveMetrics, received_at
from csms.store.apikeys import create_api_key
from simulators import ocpp_latency
from simulators.rpc import CallErrorReceived
from tests.api.ws_client import LiveApi, start_live_api
from tests.conftest import add_station, charger, make_user, node_settings, running_node

if TYPE_CHECKING:
    from csms.store.db import Database


def test_histogram_counts_buckets_cumulatively() -> None:
    hist = Histogram("x_seconds", "A test.", buckets=(0.01, 0.05, 0.1))
    for value in (0.004, 0.02, 0.03, 0.07, 3.0, -1.0):
        hist.observe(value)
    lines = hist.render()
    assert lines[:2] == ["# HELP x_seconds A test.", "# TYPE x_seconds histogram"]
    assert lines[2:6] == ['x_seconds_bucket{le="0.01"} 2', 'x_seconds_bucket{le="0.05"} 4',
                          'x_seconds_bucket{le="0.1"} 5', 'x_seconds_bucket{le="+Inf"} 6']
    assert lines[6:] == ["x_seconds_sum 3.124000", "x_seconds_count 6"]


def test_histogram_quantiles_interpolate_within_a_bucket() -> None:
    hist = Histogram("x_seconds", "A test.", buckets=(0.01, 0.02, 0.05))
    assert math.isnan(hist.quantile(0.5))
    for _ in range(90):
        hist.observe(0.005)
    for _ in range(10):
        hist.observe(0.03)
    assert hist.quantile(0.5) == pytest.approx(0.01 * 50 / 90)
    assert hist.quantile(0.99) == pytest.approx(0.02 + 0.03 * 9 / 10)
    hist.observe(99.0)
    assert hist.quantile(1.0) == 0.05  # beyond the last bound: the last bound, as Prometheus does


def test_histogram_buckets_must_increase() -> None:
    with pytest.raises(ValueError, match="increase"):
        Histogram("x_seconds", "A test.", buckets=(0.1, 0.01))


def test_live_metrics_measure_the_age_of_stamped_events_only() -> None:
    now = [1_000.0]
    metrics = LiveMetrics(clock=lambda: now[0])
    metrics.event_arrived(received_at({"received_us": 999_990_000}))  # 10 ms old
    metrics.event_arrived(received_at({"status": "charging"}))  # not caused by a charger: not measured
    metrics.update_sent(received_at({"received_us": 999_970_000}))  # 30 ms old
    metrics.update_sent(None)
    assert (metrics.notify.count, metrics.delivery.count) == (1, 1)
    assert metrics.notify.sum == pytest.approx(0.01) and metrics.delivery.sum == pytest.approx(0.03)
    assert received_at({"received_us": True}) is None and received_at({"received_us": "1"}) is None


@pytest.fixture
async def api(db: Database, nursery: trio.Nursery) -> LiveApi:
    return await start_live_api(db, nursery)


async def test_metrics_page_for_local_clients_and_admins_only(api: LiveApi, db: Database) -> None:
    admin_key = await db.run(create_api_key, "prometheus")
    owner_key_user, _ = await make_user(db, "owner")
    owner_key = await db.run(lambda conn: create_api_key(conn, "owner key", role="owner", user_id=owner_key_user))
    _, driver_token = await make_user(db)
    _, admin_token = await make_user(db, "admin")
    proxied = {"X-Forwarded-For": "203.0.113.7"}  # what a reverse proxy on this host adds
    async with httpx.AsyncClient(base_url=api.url) as http:
        local = await http.get("/metrics")
        assert local.status_code == 200
        assert local.headers["content-type"].startswith("text/plain; version=0.0.4")
        for name in ("csms_live_event_latency_seconds", "csms_live_notify_latency_seconds",
                     "csms_live_subscriptions", "csms_events_received_total"):
            assert f"# TYPE {name} " in local.text
        cases = [
            ({**proxied}, 401),
            ({**proxied, "Authorization": "Bearer nonsense"}, 401),
            ({**proxied, "Authorization": f"Bearer {driver_token}"}, 403),
            ({**proxied, "Authorization": f"Bearer {owner_key}"}, 403),
            ({"Forwarded": "for=203.0.113.7", "Authorization": f"Bearer {driver_token}"}, 403),
            ({"Authorization": f"Bearer {driver_token}"}, 403),  # a credential is checked even from loopback
            ({**proxied, "Authorization": f"Bearer {admin_key}"}, 200),
            ({**proxied, "Authorization": f"Bearer {admin_token}"}, 200),
        ]
        for headers, status in cases:
            response = await http.get("/metrics", headers=headers)
            assert response.status_code == status, (headers, response.text)
            if status != 200:
                assert "csms_" not in response.text


async def test_metrics_page_shows_the_gateway_and_group_commit(db_url: str) -> None:
    async with running_node(node_settings(db_url)) as node:
        await add_station(node, "MET-1")
        async with charger(node, "MET-1") as cp:
            for _ in range(5):
                await cp.call("Heartbeat", {})
            with pytest.raises(CallErrorReceived):  # an action csms does not know: NotImplemented
                await cp.call("MadeUpAction", {})
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.ready.http_port}") as http:
            text = (await http.get("/metrics")).text
    values = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    # Every CALL is timed from read to answer, under its action; an unknown one under "other", so a
    # charger cannot add series.
    assert values['csms_ocpp_call_seconds_count{action="Heartbeat"}'] == "5"
    assert values['csms_ocpp_call_seconds_count{action="BootNotification"}'] == "1"
    assert int(values['csms_ocpp_call_seconds_count{action="StatusNotification"}']) >= 1
    assert values['csms_ocpp_call_seconds_count{action="other"}'] == "1"
    assert values['csms_ocpp_call_seconds_count{action="MeterValues"}'] == "0"  # every action has a series
    assert not any("MadeUpAction" in key for key in values)
    assert values['csms_ocpp_call_seconds_bucket{action="Heartbeat",le="+Inf"}'] == "5"
    assert text.count("# TYPE csms_ocpp_call_seconds histogram") == 1
    assert int(values["csms_commit_operations_total"]) >= 1  # the status notifications
    assert int(values["csms_journal_frames_dropped_total"]) == 0


def test_the_benchmark_report_reads_the_histograms_by_action() -> None:
    def family(heartbeat: list[int], meter: list[int], waits: list[int]) -> dict[str, float]:
        # Cumulative counts at le=0.01, 0.05 and +Inf.
        samples: dict[str, float] = {}
        for action, counts in (("Heartbeat", heartbeat), ("MeterValues", meter)):
            for le, n in zip(("0.01", "0.05", "+Inf"), counts, strict=True):
                samples[f'csms_ocpp_call_seconds_bucket{{action="{action}",le="{le}"}}'] = n
        for le, n in zip(("0.01", "0.05", "+Inf"), waits, strict=True):
            samples[f'csms_ocpp_admission_wait_seconds_bucket{{le="{le}"}}'] = n
        return samples

    before = family([10, 10, 10], [0, 10, 10], [0, 0, 0])
    after = family([110, 110, 110], [0, 110, 110], [50, 50, 50])
    lines = ocpp_latency.report(before, after).splitlines()
    assert lines[0].startswith("SERVER calls=200 p50_ms=10.0 ")  # both actions, only what happened between
    assert lines[1] == "SERVER action=Heartbeat calls=100 p50_ms=5.0 p99_ms=9.9"
    assert lines[2] == "SERVER action=MeterValues calls=100 p50_ms=30.0 p99_ms=49.6"
    assert lines[3] == "SERVER admission_waits=50 p50_ms=5.0 p99_ms=9.9"

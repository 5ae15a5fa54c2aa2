"""Live-subscription benchmark: S subscribers watch N charging sessions while MeterValues flow.

Against a running csms, with an admin API key (issue #3, "Performance")::

    python -m simulators.live_bench --api http://127.0.0.1:8300 --ocpp ws://127.0.0.1:9300/ocpp/ \\
        --api-key-file var/bench-api-key --sessions 100 --subscribers 1000

It sets up N sessions the way real users would: an operator tariff, a location and N stations through
the API, N drivers through ``register``, their balances through ``adjustBalance``, N simulated chargers
(:mod:`simulators.chargepoint`) that accept RemoteStart, and ``startCharging`` by each driver. Then it
opens S ``graphql-transport-ws`` connections (one per subscriber, as phones would), spread round-robin
over the sessions (``--sessions 1`` puts them all on one session), each subscribed to
``sessionUpdated``. Each charger then sends a MeterValues every ``--meter-interval`` seconds, its energy
register 10 Wh higher than the last, so every update has its own ``energyWh``.

Latency is measured twice, for the MeterValues sent inside the measurement window:

- client side: from the MeterValues leaving the charger to the first ``sessionUpdated`` at or past its
  energy arriving at each subscriber (same process, same clock). It includes both network hops and this
  process's own scheduling, so it is an upper bound of what the issue asks.
- server side: csms's ``/metrics`` histogram ``csms_live_event_latency_seconds``, from the MeterValues
  arriving at csms to the event leaving on each subscriber's socket, read before and after the window.

- ``notify_*``: the server-side part of that up to the event reaching csms's events hub (the durable
  commit, PostgreSQL's NOTIFY and the LISTEN loop); the rest is the fan-out to the sockets.

A MeterValues a subscriber never saw (within ``--drain-s`` after the window) counts as dropped. The tool
prints one line, like the OCPP harness (``server_deliveries`` counts the stamped updates csms sent while
the window was open, so it also counts those of MeterValues sent during the warm-up)::

    LIVE subscribers=1000 sessions=100 interval_s=1 events=... deliveries=... client_p50_ms=...
        client_p99_ms=... client_max_ms=... server_deliveries=... server_p50_ms=... server_p99_ms=...
        notify_p50_ms=... notify_p99_ms=... dropped=... errors=... failed_sends=... tool_cpu_pct=...

``simulators/live_bench.sh`` runs it beside the OCPP harness's S1 against a fresh csms.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import random
import resource
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import trio

from simulators.chargepoint import ChargePoint
from simulators.live_bench_api import LIVE_SESSION, ApiError, BenchApi, parse_histogram
from simulators.live_bench_node import NodeSubscribers
from simulators.live_bench_ws import GraphQLWsClient, WsClosed

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

log = logging.getLogger("simulators.live_bench")

EVENT_HISTOGRAM = "csms_live_event_latency_seconds"
NOTIFY_HISTOGRAM = "csms_live_notify_latency_seconds"
STEP_WH = 10  # each MeterValues adds at least this much, so every update has its own energyWh
PRICE_PER_KWH_TYIYN = 100
LIMIT_TYIYN = 10_000_000  # 100,000 som: the largest limit startCharging accepts; never reached here
SETUP_CONCURRENCY = 20


@dataclass
class Load:
    """One charging session under load: its driver, its charger and the MeterValues sent."""

    index: int
    station_id: str
    user_id: str = ""
    token: str = ""
    cp: ChargePoint | None = None
    session_id: str = ""
    meter_start_wh: int = 0
    sends: list[tuple[int, float]] = field(default_factory=list)  # (energyWh the server will show, sent at)
    failed_sends: int = 0


@dataclass
class Subscriber:
    """One subscriber: which session it watches and how far through its MeterValues it has seen."""

    load: Load
    seen: int = 0  # index in load.sends of the first MeterValues not yet seen
    ready: trio.Event = field(default_factory=trio.Event)


@dataclass
class Results:
    """What the subscribers saw."""

    window: tuple[float, float] = (math.inf, math.inf)  # perf_counter bounds of the measured sends
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    closed: int = 0

    def on_message(self, sub: Subscriber, at: float, message: dict[str, Any]) -> None:
        """Match one message to the MeterValues it shows (all those up to its energy)."""
        if message.get("type") != "next" or message["payload"].get("errors"):
            self.errors += 1
            return
        sub.ready.set()
        self.on_update(sub, at, message["payload"]["data"]["sessionUpdated"]["energyWh"])

    def on_update(self, sub: Subscriber, at: float, energy: int) -> None:
        """Match an update showing ``energy`` to the MeterValues it shows (all those up to it)."""
        sends, i = sub.load.sends, sub.seen
        start, end = self.window
        while i < len(sends) and sends[i][0] <= energy:
            if start <= sends[i][1] < end:
                self.latencies.append(at - sends[i][1])
            i += 1
        sub.seen = i

    def dropped(self, subscribers: list[Subscriber]) -> int:
        """Deliveries of MeterValues sent in the window that never came."""
        start, end = self.window
        return sum(1 for sub in subscribers for _, at in sub.load.sends[sub.seen:] if start <= at < end)


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ``values``; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


async def gather_limited(fns: Sequence[Callable[[], Awaitable[None]]], limit: int) -> None:
    """Run ``fns`` concurrently, at most ``limit`` at a time."""
    limiter = trio.CapacityLimiter(limit)

    async def one(fn: Callable[[], Awaitable[None]]) -> None:
        async with limiter:
            await fn()

    async with trio.open_nursery() as nursery:
        for fn in fns:
            nursery.start_soon(one, fn)


async def set_up_accounts(api: BenchApi, loads: list[Load], tag: str) -> None:
    """Tariff, location, stations, drivers and their balances, all through the API."""
    tariff = await api.create_tariff(f"live bench {tag}", PRICE_PER_KWH_TYIYN)
    location = await api.create_location(f"live bench {tag}")

    async def account(load: Load) -> None:
        await api.create_station(load.station_id, location, tariff)
        try:
            load.user_id, load.token = await api.register(f"lb-{tag.lower()}-{load.index}@bench.invalid",
                                                          secrets.token_urlsafe(16))
        except ApiError as exc:
            if "RATE_LIMITED" in exc.codes:
                raise SystemExit("register is rate limited: raise CSMS_REGISTER_RATE_LIMIT, CSMS_CRITICAL_RATE_LIMIT "
                                 "and CSMS_MUTATION_RATE_LIMIT for this csms") from None
            raise
        await api.credit(load.user_id, LIMIT_TYIYN)

    await gather_limited([lambda load=load: account(load) for load in loads], SETUP_CONCURRENCY)


async def start_sessions(api: BenchApi, loads: list[Load], ocpp_url: str, nursery: trio.Nursery) -> None:
    """Connect one simulated charger per station and start a session on each from the driver's account."""

    async def one(load: Load) -> None:
        # meter_interval_s=0: no periodic MeterValues of its own; the benchmark sends them (drive()).
        load.cp = cp = ChargePoint(ocpp_url, load.station_id, connectors=1, meter_interval_s=0)
        await nursery.start(cp.run)
        load.session_id = await api.start_charging(load.token, load.station_id, LIMIT_TYIYN)
        connector = cp.connectors[1]
        with trio.fail_after(30):
            while not (connector.charging and connector.transaction_id is not None):
                await trio.sleep(0.05)
        load.meter_start_wh = int(connector.session_start_wh)

    await gather_limited([lambda load=load: one(load) for load in loads], SETUP_CONCURRENCY)


async def open_subscribers(subs: list[Subscriber], ws_url: str, results: Results, nursery: trio.Nursery) -> None:
    """One WebSocket per subscriber, subscribed to its session; returns once each got the current state."""

    async def serve(sub: Subscriber, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        client = GraphQLWsClient(ws_url)
        try:
            await client.open({"Authorization": f"Bearer {sub.load.token}"})
            await client.subscribe("live", LIVE_SESSION, {"id": sub.load.session_id})
            task_status.started()
            await client.serve(lambda at, message: results.on_message(sub, at, message))
        except WsClosed as exc:
            results.closed += 1
            log.warning("a subscriber's socket closed: %s", exc)
        finally:
            await client.aclose()

    async def one(sub: Subscriber) -> None:
        await nursery.start(serve, sub)
        with trio.fail_after(30):
            await sub.ready.wait()

    await gather_limited([lambda sub=sub: one(sub) for sub in subs], SETUP_CONCURRENCY * 2)


async def drive(load: Load, interval_s: float, stop: trio.Event, rng: random.Random,
                clock: Callable[[], float] = time.perf_counter) -> None:
    """Send MeterValues every ``interval_s`` (the first at a random offset) until ``stop`` is set."""
    assert load.cp is not None
    cp, connector = load.cp, load.cp.connectors[1]
    with trio.move_on_after(rng.uniform(0, interval_s)):
        await stop.wait()
    next_at = trio.current_time()
    while not stop.is_set():
        connector.meter_wh += STEP_WH
        payload = cp.meter_values(1, "Sample.Periodic")
        register = int(float(payload["meterValue"][0]["sampledValue"][0]["value"]))  # what csms floors to
        load.sends.append((register - load.meter_start_wh, clock()))
        if await cp.tx_call("MeterValues", payload) is None:
            load.failed_sends += 1
        next_at += interval_s
        with trio.move_on_at(next_at):
            await stop.wait()


async def stop_sessions(api: BenchApi, loads: list[Load]) -> int:
    """``stopCharging`` every session and wait for the chargers' StopTransaction; how many failed."""
    failures = 0

    async def one(load: Load) -> None:
        nonlocal failures
        try:
            await api.stop_charging(load.token, load.session_id)
            assert load.cp is not None
            connector = load.cp.connectors[1]
            with trio.fail_after(15):  # Finishing comes once the StopTransaction was answered (and billed)
                while connector.transaction_id is not None or connector.status not in ("Finishing", "Available"):
                    await trio.sleep(0.05)
        except (ApiError, httpx.HTTPError, trio.TooSlowError) as exc:
            failures += 1
            log.warning("stopping session %s failed: %s", load.session_id, exc)

    await gather_limited([lambda load=load: one(load) for load in loads], SETUP_CONCURRENCY)
    return failures


def _ms(seconds: float) -> str:
    return "NaN" if math.isnan(seconds) else f"{seconds * 1000:.1f}"


async def run(args: argparse.Namespace) -> str:
    """Run the whole benchmark; returns the result line."""
    api_key = args.api_key or Path(args.api_key_file).read_text().strip()
    tag = args.tag or secrets.token_hex(3).upper()
    loads = [Load(i, f"{args.station_prefix}{tag}-{i}") for i in range(args.sessions)]
    subs = [Subscriber(loads[j % len(loads)]) for j in range(args.subscribers)]
    results = Results()
    rng = random.Random(args.seed)
    ws_url = args.api.replace("http://", "ws://").replace("https://", "wss://").rstrip("/") + "/graphql"
    async with httpx.AsyncClient(base_url=args.api, timeout=60) as http, trio.open_nursery() as nursery:
        api = BenchApi(http, api_key)
        t = time.perf_counter()
        await set_up_accounts(api, loads, tag)
        await start_sessions(api, loads, args.ocpp, nursery)
        node = None
        if args.node_modules:  # see simulators.live_bench_node
            node = NodeSubscribers(Path(args.node_modules), ws_url, LIVE_SESSION,
                                   [(sub.load.token, sub.load.session_id) for sub in subs])
            await node.start()
        else:
            await open_subscribers(subs, ws_url, results, nursery)
        clock = time.time if node else time.perf_counter  # the Node client stamps with the wall clock
        log.warning("set up %d sessions and %d subscribers in %.1f s", len(loads), len(subs), time.perf_counter() - t)
        if args.ready_file:
            Path(args.ready_file).write_text("ready\n")
        stop = trio.Event()
        async with trio.open_nursery() as senders:
            for load in loads:
                senders.start_soon(drive, load, args.meter_interval, stop, rng, clock)
            await trio.sleep(args.warmup_s)
            before = await api.metrics()
            def tool_cpu() -> float:
                return time.process_time() + (node.cpu_seconds() if node else 0.0)

            cpu0, start = tool_cpu(), clock()
            results.window = (start, start + args.duration_s)
            await trio.sleep(args.duration_s)
            cpu, wall = tool_cpu() - cpu0, clock() - start
            stop.set()
        await trio.sleep(args.drain_s)
        after = await api.metrics()
        if node is not None:
            for index, at, energy in await node.finish():
                results.on_update(subs[index], at, energy)
            results.errors += node.errors
        missing = results.dropped(subs)
        stop_failures = 0 if args.keep_sessions else await stop_sessions(api, loads)
        nursery.cancel_scope.cancel()
    start, end = results.window  # the MeterValues measured; the senders stop a little later
    events = sum(1 for load in loads for _, at in load.sends if start <= at < end)
    server = parse_histogram(after, EVENT_HISTOGRAM).minus(parse_histogram(before, EVENT_HISTOGRAM))
    notify = parse_histogram(after, NOTIFY_HISTOGRAM).minus(parse_histogram(before, NOTIFY_HISTOGRAM))
    return " ".join([
        f"LIVE subscribers={len(subs)} sessions={len(loads)} interval_s={args.meter_interval:g}",
        f"events={events} deliveries={len(results.latencies)}",
        f"client_p50_ms={_ms(percentile(results.latencies, 0.5))}",
        f"client_p99_ms={_ms(percentile(results.latencies, 0.99))}",
        f"client_max_ms={_ms(max(results.latencies, default=math.nan))}",
        f"server_deliveries={server.count} server_p50_ms={_ms(server.quantile(0.5))}",
        f"server_p99_ms={_ms(server.quantile(0.99))}",
        f"notify_p50_ms={_ms(notify.quantile(0.5))} notify_p99_ms={_ms(notify.quantile(0.99))}",
        f"dropped={missing} errors={results.errors + results.closed + stop_failures}",
        f"failed_sends={sum(load.failed_sends for load in loads)}",
        f"tool_cpu_pct={100 * cpu / max(wall, 1e-9):.0f} loadavg={os.getloadavg()[0]:.2f}",
    ])


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(prog="python -m simulators.live_bench",
                                     description="Live-subscription latency benchmark against a running csms.")
    parser.add_argument("--api", default="http://127.0.0.1:8000", help="csms HTTP base URL")
    parser.add_argument("--ocpp", default="ws://127.0.0.1:9000/ocpp/", help="csms OCPP URL prefix")
    key = parser.add_mutually_exclusive_group(required=True)
    key.add_argument("--api-key-file", help="file holding an admin API key (csms apikey create)")
    key.add_argument("--api-key", help="an admin API key (prefer --api-key-file: argv is visible to others)")
    parser.add_argument("--sessions", type=int, default=100, help="charging sessions (1 = all on one)")
    parser.add_argument("--subscribers", type=int, default=1000, help="WebSocket subscribers, spread round-robin")
    parser.add_argument("--meter-interval", type=float, default=1.0, help="seconds between MeterValues per session")
    parser.add_argument("--warmup-s", type=float, default=5.0, help="MeterValues before the measurement window")
    parser.add_argument("--duration-s", type=float, default=18.0, help="measurement window")
    parser.add_argument("--drain-s", type=float, default=2.0, help="wait for late updates after the window")
    parser.add_argument("--station-prefix", default="LB-", help="station ids are PREFIX<tag>-<n>")
    parser.add_argument("--tag", help="run tag in station ids and emails (default: random)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the send offsets")
    parser.add_argument("--ready-file", help="write this file once everything is set up (for scripts)")
    parser.add_argument("--keep-sessions", action="store_true", help="leave the sessions charging at the end")
    parser.add_argument("--node-modules", help="run the subscribers in Node with the `ws` package from this "
                        "node_modules directory (a set-up shared/bench has one)")
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    if args.sessions < 1 or args.subscribers < 1 or args.meter_interval <= 0 or args.duration_s <= 0:
        parser.error("--sessions, --subscribers, --meter-interval and --duration-s must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: run the benchmark and print its line on stdout."""
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("simulators.charger").setLevel(max(logging.WARNING, logging.getLogger().level))
    logging.getLogger("httpx").setLevel(logging.WARNING)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = args.subscribers + args.sessions + 100
    if soft < needed:  # one socket per subscriber and per charger
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(needed, soft), hard), hard))
    print(trio.run(run, args), flush=True)


if __name__ == "__main__":
    main()

"""csms's own view of a benchmark: OCPP call latency from ``GET /metrics``, between two scrapes.

The shared harness measures round trips from the load generator, which shares a core with the
database; csms's ``csms_ocpp_call_seconds`` histogram measures read-to-answer inside csms. Printing
both tells csms's delays from the load generator's.

    python -m simulators.ocpp_latency snapshot http://127.0.0.1:8000 > before.txt
    ... run the load ...
    python -m simulators.ocpp_latency report http://127.0.0.1:8000 before.txt
    SERVER calls=123456 p50_ms=3.1 p99_ms=14.2 commit_batches=2345 commit_ops_per_batch=21.3
    SERVER action=Heartbeat calls=61728 p50_ms=1.2 p99_ms=6.0
    SERVER action=MeterValues calls=61728 p50_ms=9.8 p99_ms=18.1
    SERVER admission_waits=40211 p50_ms=2.0 p99_ms=7.5

The first line is every call; then each action that had calls, and the messages that waited for a
scheduler turn (``csms_ocpp_admission_wait_seconds``).
"""

from __future__ import annotations

import argparse
import math
import sys
import urllib.request

HISTOGRAM = "csms_ocpp_call_seconds"
ADMISSION = "csms_ocpp_admission_wait_seconds"


def scrape(base_url: str) -> dict[str, float]:
    """Every sample of ``GET /metrics`` by its full name (with labels)."""
    with urllib.request.urlopen(base_url.rstrip("/") + "/metrics", timeout=10) as response:
        text = response.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """Prometheus' ``histogram_quantile`` over cumulative ``(upper bound, count)`` pairs."""
    total = buckets[-1][1]
    if total <= 0:
        return math.nan
    rank, lower, below = q * total, 0.0, 0.0
    for bound, cumulative in buckets:
        if cumulative >= rank:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / max(cumulative - below, 1e-12)
        lower, below = bound, cumulative
    return lower


def _buckets(before: dict[str, float], after: dict[str, float], name: str,
             label: str | None = None) -> list[tuple[float, float]]:
    """Cumulative ``(upper bound, count)`` pairs of histogram ``name`` between two scrapes, summed over
    its series, or of the one series whose labels start with ``label``."""
    prefix = f"{name}_bucket{{"
    counts: dict[float, float] = {}
    for key, value in after.items():
        if not key.startswith(prefix) or (label is not None and not key[len(prefix):].startswith(label + ",")):
            continue
        le = key[key.rindex('le="') + 4:-2]
        bound = math.inf if le == "+Inf" else float(le)
        counts[bound] = counts.get(bound, 0.0) + value - before.get(key, 0.0)
    return sorted(counts.items())


def _latency(buckets: list[tuple[float, float]]) -> str:
    return (f"p50_ms={quantile(buckets, 0.5) * 1000:.1f} p99_ms={quantile(buckets, 0.99) * 1000:.1f}")


def report(before: dict[str, float], after: dict[str, float]) -> str:
    """The calls between the two scrapes and their server-side latency: all, then by action."""
    buckets = _buckets(before, after, HISTOGRAM)
    if not buckets:
        return "SERVER no csms_ocpp_call_seconds in /metrics"
    calls = buckets[-1][1]
    batches = after.get("csms_commit_batches_total", 0) - before.get("csms_commit_batches_total", 0)
    ops = after.get("csms_commit_operations_total", 0) - before.get("csms_commit_operations_total", 0)
    per_batch = ops / batches if batches else math.nan
    lines = [f"SERVER calls={calls:.0f} {_latency(buckets)} commit_batches={batches:.0f} "
             f"commit_ops_per_batch={per_batch:.1f}"]
    actions = sorted({key.split('action="', 1)[1].split('"', 1)[0]
                      for key in after if key.startswith(f'{HISTOGRAM}_bucket{{action="')})
    for action in actions:
        series = _buckets(before, after, HISTOGRAM, f'action="{action}"')
        if series and series[-1][1] > 0:
            lines.append(f"SERVER action={action} calls={series[-1][1]:.0f} {_latency(series)}")
    waits = _buckets(before, after, ADMISSION)
    if waits and waits[-1][1] > 0:
        lines.append(f"SERVER admission_waits={waits[-1][1]:.0f} {_latency(waits)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``snapshot URL`` prints the samples; ``report URL FILE`` compares FILE with a new scrape."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["snapshot", "report"])
    parser.add_argument("url", help="csms's HTTP base URL (GET /metrics is open to loopback clients)")
    parser.add_argument("before", nargs="?", help="for report: the output of an earlier snapshot")
    args = parser.parse_args(argv)
    if args.command == "snapshot":
        for name, value in scrape(args.url).items():
            print(name, value)
        return 0
    if not args.before:
        parser.error("report needs the file an earlier snapshot wrote")
    with open(args.before) as f:
        before = {name: float(value) for name, _, value in (line.rstrip("\n").rpartition(" ") for line in f) if name}
    print(report(before, scrape(args.url)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""csms's own view of a benchmark: OCPP call latency from ``GET /metrics``, between two scrapes.

The shared harness measures round trips from the load generator, which shares a core with the
database; csms's ``csms_ocpp_call_seconds`` histogram measures read-to-answer inside csms. Printing
both tells csms's delays from the load generator's.

    python -m simulators.ocpp_latency snapshot http://127.0.0.1:8000 > before.txt
    ... run the load ...
    python -m simulators.ocpp_latency report http://127.0.0.1:8000 before.txt
    SERVER calls=123456 p50_ms=3.1 p99_ms=14.2 commit_batches=2345 commit_ops_per_batch=21.3
"""

from __future__ import annotations

import argparse
import math
import sys
import urllib.request

HISTOGRAM = "csms_ocpp_call_seconds"


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


def report(before: dict[str, float], after: dict[str, float]) -> str:
    """One line: the calls between the two scrapes and their server-side latency."""
    prefix = f'{HISTOGRAM}_bucket{{le="'
    buckets = sorted(
        (math.inf if key[len(prefix):-2] == "+Inf" else float(key[len(prefix):-2]), value - before.get(key, 0.0))
        for key, value in after.items() if key.startswith(prefix)
    )
    if not buckets:
        return "SERVER no csms_ocpp_call_seconds in /metrics"
    calls = buckets[-1][1]
    batches = after.get("csms_commit_batches_total", 0) - before.get("csms_commit_batches_total", 0)
    ops = after.get("csms_commit_operations_total", 0) - before.get("csms_commit_operations_total", 0)
    per_batch = ops / batches if batches else math.nan
    return (f"SERVER calls={calls:.0f} p50_ms={quantile(buckets, 0.5) * 1000:.1f} "
            f"p99_ms={quantile(buckets, 0.99) * 1000:.1f} commit_batches={batches:.0f} "
            f"commit_ops_per_batch={per_batch:.1f}")


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

"""In-process metrics in the Prometheus text format: latency histograms of live updates, and gauges.

The live-update path measures how old an event is when it reaches a subscriber: writers stamp the time
csms received the charger message behind a change into the change event (``received_us``, epoch
microseconds), and :class:`LiveMetrics` records

- ``csms_live_notify_latency_seconds``: receive → the event reached this process's events hub (the
  durable commit, PostgreSQL's NOTIFY and the LISTEN loop), once per event;
- ``csms_live_event_latency_seconds``: receive → the update left on a subscriber's WebSocket, once per
  subscriber and update. This is the figure issue #3 asks for ("from a MeterValues arriving to the
  subscription event leaving").

Both use wall-clock time (``time.time()``), so a change made on one csms process and delivered by
another on the same machine is measured too. Recording is a ``bisect`` and three additions: cheap
enough for every message.

``GET /metrics`` (``csms.api.app``) serves :meth:`LiveMetrics.render`.
"""

from __future__ import annotations

import bisect
import math
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

# Upper bounds in seconds: fine below 100 ms, where the targets are (p99 ≤ 50 ms), coarse above.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.0125, 0.015, 0.0175, 0.02, 0.025, 0.03, 0.035, 0.04,
    0.045, 0.05, 0.06, 0.07, 0.08, 0.09, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
)


class Histogram:
    """A Prometheus histogram: counts per bucket, their sum and count.

    Args:
        name: the metric name (``..._seconds``).
        help_text: the ``# HELP`` line.
        buckets: increasing upper bounds; ``+Inf`` is added.
        labels: the series' labels, rendered as is (``action="Heartbeat"``); empty for none.
    """

    def __init__(self, name: str, help_text: str, buckets: Iterable[float] = LATENCY_BUCKETS, *,
                 labels: str = "") -> None:
        self.name = name
        self.help_text = help_text
        self.labels = labels
        self.bounds = tuple(buckets)
        if list(self.bounds) != sorted(set(self.bounds)):
            raise ValueError("histogram buckets must increase")
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        """Record one observation (negative values, from clock steps, count as 0)."""
        value = max(value, 0.0)
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def quantile(self, q: float) -> float:
        """The ``q`` quantile, interpolated within its bucket (as Prometheus' ``histogram_quantile``)."""
        if self.count == 0:
            return math.nan
        rank, below = q * self.count, 0
        for i, n in enumerate(self.counts):
            if below + n >= rank and n:
                if i == len(self.bounds):
                    return self.bounds[-1]
                lower = self.bounds[i - 1] if i else 0.0
                return lower + (self.bounds[i] - lower) * (rank - below) / n
            below += n
        return self.bounds[-1]

    def render(self, *, header: bool = True) -> list[str]:
        """The metric's lines in the text exposition format (``header``: with its HELP and TYPE lines)."""
        lines = [f"# HELP {self.name} {self.help_text}", f"# TYPE {self.name} histogram"] if header else []
        cumulative = 0
        prefix = f"{self.labels}," if self.labels else ""
        for bound, n in zip((*self.bounds, math.inf), self.counts, strict=True):
            cumulative += n
            le = "+Inf" if math.isinf(bound) else f"{bound:g}"
            lines.append(f'{self.name}_bucket{{{prefix}le="{le}"}} {cumulative}')
        suffix = f"{{{self.labels}}}" if self.labels else ""
        lines += [f"{self.name}_sum{suffix} {self.sum:.6f}", f"{self.name}_count{suffix} {self.count}"]
        return lines


class HistogramFamily:
    """Histograms of one metric, one per value of a label, from a fixed set of values.

    The values are fixed up front, and anything else is counted under ``other``: label values that
    come from the outside (a charger may send any action name) must not grow the series without bound.
    """

    def __init__(self, name: str, help_text: str, label: str, values: Iterable[str]) -> None:
        self.name = name
        self.help_text = help_text
        self._children = {value: Histogram(name, help_text, labels=f'{label}="{value}"')
                          for value in sorted({*values, "other"})}
        self._other = self._children["other"]

    def child(self, value: str) -> Histogram:
        """The histogram for ``value`` (``other`` for a value outside the set)."""
        return self._children.get(value, self._other)

    def render(self) -> list[str]:
        """Every series' lines under one HELP and TYPE."""
        lines = [f"# HELP {self.name} {self.help_text}", f"# TYPE {self.name} histogram"]
        for histogram in self._children.values():
            lines += histogram.render(header=False)
        return lines


def gauge(name: str, help_text: str, value: float) -> list[str]:
    """A gauge's lines in the text exposition format."""
    return [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {value:g}"]


def counter(name: str, help_text: str, value: float) -> list[str]:
    """A counter's lines in the text exposition format (``name`` ends in ``_total``)."""
    return [f"# HELP {name} {help_text}", f"# TYPE {name} counter", f"{name} {value:g}"]


def received_at(data: object) -> float | None:
    """The receive time stamped into an event payload (``received_us``), in epoch seconds, or None."""
    if not isinstance(data, dict):
        return None
    stamp = data.get("received_us")
    return stamp / 1_000_000 if isinstance(stamp, int) and not isinstance(stamp, bool) else None


class LiveMetrics:
    """The live-update latencies of one process (see the module docstring).

    Args:
        clock: wall-clock time in seconds (tests may pass their own).
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.notify = Histogram(
            "csms_live_notify_latency_seconds",
            "Charger message received to its change event reaching this process (commit, NOTIFY, LISTEN).")
        self.delivery = Histogram(
            "csms_live_event_latency_seconds",
            "Charger message received to the subscription update leaving on a subscriber's WebSocket.")

    def event_arrived(self, stamp: float | None) -> None:
        """A change event stamped ``stamp`` (epoch s, or None: not caused by a charger) reached the hub."""
        if stamp is not None:
            self.notify.observe(self.clock() - stamp)

    def update_sent(self, stamp: float | None) -> None:
        """A subscription update for a change stamped ``stamp`` left on one subscriber's socket."""
        if stamp is not None:
            self.delivery.observe(self.clock() - stamp)

    def render(self) -> list[str]:
        """Both histograms' lines."""
        return [*self.notify.render(), *self.delivery.render()]


class OcppMetrics:
    """How long chargers wait for csms: every CALL from the frame read to its answer written, by action.

    This is the server's share of what a charger sees (validation, the handler, the durable commit of
    transaction messages, the write), so the benchmark's round trips can be told apart from the load
    generator's own delays. By action, because the actions differ by an order of magnitude: a
    MeterValues waits for its durable commit, a Heartbeat for nothing.

    Args:
        actions: the actions csms handles; any other is counted as ``other``.
    """

    def __init__(self, actions: Iterable[str] = ()) -> None:
        self.calls = HistogramFamily(
            "csms_ocpp_call_seconds",
            "Charger CALL read to its answer written (validation, handler, durable commit, write), by action.",
            "action", actions)

    def call(self, action: str) -> Histogram:
        """The histogram of ``action``'s calls."""
        return self.calls.child(action)

    def render(self) -> list[str]:
        """The histograms' lines."""
        return self.calls.render()


__all__ = ["LATENCY_BUCKETS", "Histogram", "HistogramFamily", "LiveMetrics", "OcppMetrics", "counter", "gauge",
           "received_at"]

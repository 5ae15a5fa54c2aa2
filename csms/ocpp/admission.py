"""A cap on how many charger messages start being handled per turn of the event loop.

Trio runs, in each turn of its scheduler, every task that became runnable during the previous one.
Under a flood of charger messages (a reconnect storm, or the benchmark's S1 load) a turn holds
hundreds of reader tasks, and each turn then takes tens of milliseconds. Everything else the
process does waits a whole turn at each of its steps: a live subscription update needs five or six
steps between the MeterValues that caused it and its socket, so it arrived 100-300 ms late while
the chargers themselves were answered within their usual closed-loop latency.

With :class:`TurnAdmission` a reader that has read a message asks :meth:`~TurnAdmission.admit`
before handling it. The first ``per_turn`` readers of a turn go on at once (no checkpoint: the
common case costs two attribute operations); the others wait in arrival order and are let in,
``per_turn`` at a time, in the following turns. Turns stay short, so the API and live updates keep
their latency; chargers are served at the same rate (the work is the same, only spread over more,
shorter turns), and a waiting reader is not reading, which is the usual OCPP backpressure.
"""

from __future__ import annotations

from collections import deque

import trio

from csms.services.metrics import Histogram, counter


class TurnAdmission:
    """Admits at most ``per_turn`` messages to handling per scheduler turn (0: no limit).

    Start :meth:`run` in a nursery; without it running, waiting readers are never let in.
    """

    def __init__(self, per_turn: int) -> None:
        self._per_turn = per_turn
        self._left = per_turn
        self._waiting: deque[trio.lowlevel.Task] = deque()
        self._pump: trio.lowlevel.Task | None = None  # set while the pump is parked
        self.delayed = 0  # messages that waited for a later turn (for /metrics)
        self.wait_seconds = Histogram(
            "csms_ocpp_admission_wait_seconds",
            "How long a delayed charger message or handshake waited for a scheduler turn (csms's CPU queue).")

    async def admit(self) -> None:
        """Return at once while this turn's budget lasts; otherwise wait for a later turn."""
        if self._left > 0 and not self._waiting:
            self._left -= 1
            return
        if self._per_turn <= 0:
            return
        task = trio.lowlevel.current_task()
        self._waiting.append(task)
        self.delayed += 1
        queued = trio.current_time()
        pump, self._pump = self._pump, None
        if pump is not None:
            trio.lowlevel.reschedule(pump)

        def abort(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
            self._waiting.remove(task)
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)
        self.wait_seconds.observe(trio.current_time() - queued)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Let waiting readers in, ``per_turn`` per turn, until cancelled."""
        task_status.started()
        try:
            await self._let_in()
        finally:
            # Stopped (the listener is closing): nobody is held back any more, so handshakes and messages
            # already read go on and meet the shutdown instead of waiting for its deadline.
            self._per_turn = 0
            while self._waiting:
                trio.lowlevel.reschedule(self._waiting.popleft())

    async def _let_in(self) -> None:
        if self._per_turn <= 0:
            await trio.sleep_forever()
        while True:
            # Once per turn while readers wait: one checkpoint per turn puts this task in every turn.
            self._left = self._per_turn
            while self._left > 0 and self._waiting:
                self._left -= 1
                trio.lowlevel.reschedule(self._waiting.popleft())
            if self._waiting:
                await trio.lowlevel.checkpoint()
                continue
            # Nobody waits: park until someone does, with the budget refilled for the turns meanwhile.
            self._left = self._per_turn
            self._pump = trio.lowlevel.current_task()

            def abort(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
                self._pump = None
                return trio.lowlevel.Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abort)  # woken in a reader's turn: runs in the next

    def render_metrics(self) -> list[str]:
        """The count of delayed messages in the Prometheus text format (for ``GET /metrics``)."""
        return [*counter("csms_ocpp_admission_delayed_total",
                         "Charger messages and handshakes that waited for a later scheduler turn.", self.delayed),
                *self.wait_seconds.render()]

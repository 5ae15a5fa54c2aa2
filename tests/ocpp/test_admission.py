"""The per-turn cap on charger messages handled (csms.ocpp.admission)."""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable

import trio
import trio.testing

from csms.ocpp.admission import TurnAdmission


class _Turns(trio.abc.Instrument):
    """Counts turns of the scheduler (one I/O check per turn)."""

    def __init__(self) -> None:
        self.turn = 0

    def before_io_wait(self, timeout: float) -> None:
        self.turn += 1


async def test_a_flood_is_let_in_per_turn_in_arrival_order() -> None:
    turns = _Turns()
    trio.lowlevel.add_instrument(turns)
    admission = TurnAdmission(3)
    admitted: list[tuple[int, int]] = []
    arrived: list[int] = []

    async def reader(n: int) -> None:
        arrived.append(n)
        await admission.admit()
        admitted.append((n, turns.turn))

    async with trio.open_nursery() as nursery:
        await nursery.start(admission.run)
        for n in range(10):  # all in this turn, as when many sockets become readable at once
            nursery.start_soon(reader, n)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    trio.lowlevel.remove_instrument(turns)
    # Let in by arrival: nobody gets a later turn than one who came after it (within a turn, Trio
    # runs the tasks it wakes in any order).
    turn_of = dict(admitted)
    assert sorted(turn_of) == sorted(arrived)
    assert [turn_of[n] for n in arrived] == sorted(turn_of[n] for n in arrived)
    per_turn = collections.Counter(turn for _, turn in admitted)
    assert max(per_turn.values()) <= 3
    assert len(per_turn) >= 4
    assert admission.delayed == 7
    # Every delayed message's wait is in the histogram operators read, and only theirs.
    assert admission.wait_seconds.count == 7
    lines = admission.render_metrics()
    assert "csms_ocpp_admission_delayed_total 7" in lines
    assert 'csms_ocpp_admission_wait_seconds_bucket{le="+Inf"} 7' in lines


async def test_within_the_budget_admission_never_yields() -> None:
    admission = TurnAdmission(5)
    with trio.testing.assert_no_checkpoints():
        for _ in range(5):
            await admission.admit()
    unlimited = TurnAdmission(0)
    with trio.testing.assert_no_checkpoints():
        for _ in range(1000):
            await unlimited.admit()
    assert unlimited.delayed == 0


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    admission = TurnAdmission(1)
    await admission.admit()  # the budget of this turn is used up
    done: list[str] = []

    async def reader(name: str, scope: trio.CancelScope | None = None) -> None:
        with scope or trio.CancelScope():
            await admission.admit()
            done.append(name)

    gone = trio.CancelScope()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader, "gone", gone)
        nursery.start_soon(reader, "kept")
        await trio.testing.wait_all_tasks_blocked()
        gone.cancel()  # its connection closed while it waited
        await trio.testing.wait_all_tasks_blocked()
        await nursery.start(admission.run)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert done == ["kept"]


async def test_stopping_lets_every_waiter_go_on() -> None:
    admission = TurnAdmission(1)
    done: list[int] = []

    async def reader(n: int) -> None:
        await admission.admit()
        done.append(n)

    with trio.fail_after(5):  # without the release the waiters would wait forever
        await _stop_with_waiters(admission, reader)
    assert sorted(done) == list(range(5))
    await admission.admit()  # and nobody waits from now on


async def _stop_with_waiters(admission: TurnAdmission, reader: Callable[[int], Awaitable[None]]) -> None:
    async with trio.open_nursery() as nursery:
        pump = trio.CancelScope()

        async def run_pump() -> None:
            with pump:
                await admission.run()

        for n in range(5):
            nursery.start_soon(reader, n)
        await trio.testing.wait_all_tasks_blocked()
        assert admission.delayed == 4  # no pump yet: all but the first wait
        nursery.start_soon(run_pump)
        pump.cancel()  # the listener closes before the pump got to them

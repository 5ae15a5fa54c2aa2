"""Command line entry of the charge-point simulator.

Examples::

    python -m simulators.charger --url ws://127.0.0.1:9000/ocpp/ --id SIM-1 --password secret
    python -m simulators.charger --url ws://127.0.0.1:9000/ocpp/ --count 50 --id-prefix SIM-
    python -m simulators.charger --url ws://127.0.0.1:9000/ocpp/ --id SIM-1 --demo-transaction TAG-1

All simulated chargers run in one ``trio.run`` under one nursery. ``--demo-transaction`` runs local
transactions on connector 1 in a loop (Authorize, StartTransaction, MeterValues for ``--demo-duration``
seconds, StopTransaction, then a ``--demo-pause``); ``--demo-once`` runs a single one.
"""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

import trio

from simulators.chargepoint import ChargePoint, ConnectorState
from simulators.ocppj import CallErrorReceived, SimulatorError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["CallErrorReceived", "ChargePoint", "ConnectorState", "main", "parse_args", "run_chargers"]

log = logging.getLogger("simulators.charger")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(prog="python -m simulators.charger", description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True, help="central system URL; the station id is appended")
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--id", default="SIM-1", help="station id of a single charger")
    who.add_argument("--count", type=int, help="simulate COUNT chargers, ids PREFIX1..PREFIXCOUNT")
    parser.add_argument("--id-prefix", default="SIM-", help="id prefix used with --count")
    parser.add_argument("--password", help="HTTP Basic password (the user name is the station id)")
    parser.add_argument("--connectors", type=int, default=2)
    parser.add_argument("--power-w", type=int, default=11000, help="charging power in W")
    parser.add_argument("--meter-interval", type=float, default=10.0, help="seconds between MeterValues")
    parser.add_argument("--response-timeout", type=float, default=30.0, help="seconds to wait for an answer")
    parser.add_argument("--demo-transaction", metavar="ID_TAG", help="run local transactions on connector 1")
    parser.add_argument("--demo-duration", type=float, default=60.0, help="seconds per demo transaction")
    parser.add_argument("--demo-pause", type=float, default=30.0, help="seconds between demo transactions")
    parser.add_argument("--demo-once", action="store_true", help="run only one demo transaction")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser.parse_args(argv)


async def demo_transactions(
    cp: ChargePoint, id_tag: str, duration_s: float, pause_s: float, once: bool
) -> None:
    """Run local transactions on connector 1: Authorize, start, charge for ``duration_s``, stop, pause."""
    while True:
        await cp.wait_connected()
        try:
            status = await cp.authorize(id_tag)
            if status == "Accepted":
                await cp.start_transaction(1, id_tag)
                await trio.sleep(duration_s)
                if cp.connectors[1].transaction_id is not None:  # the server may have stopped it meanwhile
                    await cp.stop_transaction(1, "Local")
            else:
                log.warning("%s demo idTag %s not accepted: %s", cp.station_id, id_tag, status)
        except (SimulatorError, trio.TooSlowError) as exc:
            log.warning("%s demo transaction failed: %r", cp.station_id, exc)
        if once:
            return
        await trio.sleep(pause_s)


async def run_chargers(args: argparse.Namespace) -> None:
    """Run every requested charger (and its demo loop) under one nursery until cancelled."""
    ids = [f"{args.id_prefix}{i}" for i in range(1, args.count + 1)] if args.count else [args.id]
    async with trio.open_nursery() as nursery:
        for station_id in ids:
            cp = ChargePoint(
                args.url,
                station_id,
                password=args.password,
                connectors=args.connectors,
                power_w=args.power_w,
                meter_interval_s=args.meter_interval,
                response_timeout_s=args.response_timeout,
            )
            nursery.start_soon(cp.run)
            if args.demo_transaction:
                nursery.start_soon(
                    demo_transactions, cp, args.demo_transaction, args.demo_duration, args.demo_pause,
                    args.demo_once,
                )


def main(argv: Sequence[str] | None = None) -> None:
    """CLI entry point: parse arguments, configure logging and run until Ctrl-C."""
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(message)s")
    try:
        trio.run(run_chargers, args)
    except* KeyboardInterrupt:  # trio wraps the interrupt in an exception group
        log.info("stopped")


if __name__ == "__main__":
    main()

"""The ``csms ledger`` commands: ``check`` the books and ``adjust`` a wallet (audited as ``cli``).

``csms ledger check`` prints a one-line summary when the ledger is sound (exit 0), or the summary and
one line per problem (exit 1). ``csms ledger adjust`` credits (positive amount) or debits (negative)
a user's wallet against the adjustments account, with the operator's OS account as the audited actor.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import uuid
from typing import TYPE_CHECKING

import trio

from csms.services import ledger
from csms.supervisor import database

if TYPE_CHECKING:
    from csms.config import Settings


def _user_id(raw: str) -> str:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a user id (a UUID)") from None


def _tyiyn(raw: str) -> int:
    try:
        amount = int(raw, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r}: the amount is an integer number of tyiyn") from None
    if amount == 0 or abs(amount) > ledger.MAX_ADJUSTMENT_TYIYN:
        raise argparse.ArgumentTypeError(
            f"{raw!r}: non-zero, at most {ledger.MAX_ADJUSTMENT_TYIYN} tyiyn (100,000 som) either way")
    return amount


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``csms ledger check`` and ``csms ledger adjust``."""
    actions = sub.add_parser("ledger", help="check the books, adjust a wallet").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    actions.add_parser("check", help="verify the ledger and every session's charge; exit 1 with the problems")
    adjust = actions.add_parser("adjust", help="credit or debit a user's wallet (recorded in the audit log)")
    adjust.add_argument("--user", required=True, type=_user_id, help="the user's id")
    adjust.add_argument("--amount", required=True, type=_tyiyn,
                        help="tyiyn (1 som = 100 tyiyn): positive credits, negative debits (--amount=-500)")
    adjust.add_argument("--reason", required=True, help="why (1-500 characters; kept in the audit log)")
    adjust.add_argument("--idempotency-key",
                        help="the same key again does not adjust twice (default: every run adjusts)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run a ``csms ledger`` command; returns the exit status."""
    if args.action == "check":
        return _check(settings)
    if args.action == "adjust":
        return _adjust(args, settings)
    raise AssertionError(args.action)


def _check(settings: Settings) -> int:
    async def main() -> ledger.LedgerReport:
        async with database(settings) as db:
            return await db.run(ledger.check_ledger)

    report = trio.run(main)
    print(report.render())
    return 0 if report.ok else 1


def _operator() -> str:
    """Who runs the command, for the audit log: the OS account name."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in some containers
        return "unknown"


def _adjust(args: argparse.Namespace, settings: Settings) -> int:
    actor = _operator()
    try:
        transfer_id = ledger.adjustment_transfer_id(f"cli:{actor}", args.idempotency_key)
    except ledger.InvalidAdjustment as exc:
        print(f"csms: {exc}", file=sys.stderr)
        return 2

    async def main() -> ledger.AdjustmentResult | str:
        async with database(settings) as db:
            # Refusals are returned, not raised, so they do not arrive wrapped in a nursery's group.
            try:
                return await db.run(lambda conn: ledger.adjust_balance(
                    conn, actor_kind="cli", actor_id=actor, user_id=args.user, amount_tyiyn=args.amount,
                    reason=args.reason, transfer_id=transfer_id))
            except ledger.InvalidAdjustment as exc:
                return f"invalid: {exc}"
            except ledger.UnknownUser:
                return f"no user {args.user}"
            except ledger.InsufficientFunds:
                return "refused: the wallet does not have that much available"
            except ledger.TransferIdConflict:
                return "refused: this idempotency key was already used for a different adjustment"

    outcome = trio.run(main)
    if isinstance(outcome, str):
        print(f"csms: {outcome}", file=sys.stderr)
        return 2 if outcome.startswith("invalid") else 1
    done = "adjusted" if outcome.applied else "already adjusted (same idempotency key), nothing changed"
    print(f"{done}: {args.amount:+d} tyiyn for user {args.user}, transfer {outcome.transfer_id}; "
          f"available {outcome.wallet.available} tyiyn")
    return 0

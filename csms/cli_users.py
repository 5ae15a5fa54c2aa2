"""``csms user``: create accounts (bootstrap the first admin) and set their status.

The password comes from standard input (``--password-stdin``), never from the command line, where
other users of the machine could read it in the process list. Bad arguments exit with status 2 and a
message saying what is wrong, like every other ``csms`` command.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from csms.services import accounts
from csms.store.users import find_user

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from csms.config import Settings
    from csms.store.db import Database
    from csms.store.users import User



def _checked(normalize: Callable[[str], str]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        try:
            return normalize(raw)
        except accounts.InvalidInput as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def add_parsers(sub: Any) -> None:
    """Add the ``user`` command and its actions to the ``csms`` parser's subcommands."""
    user = sub.add_parser("user", help="manage user accounts").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    create = user.add_parser("create", help="create an account (e.g. the first admin)")
    create.add_argument("--role", default="driver", choices=accounts.ROLES, help="default: driver")
    create.add_argument("--email", type=_checked(accounts.normalize_email), help="login email")
    create.add_argument("--phone", type=_checked(accounts.normalize_phone), help="login phone, E.164 (+996...)")
    create.add_argument("--name", default="", type=_checked(accounts.normalize_name), help="display name")
    create.add_argument("--password-stdin", action="store_true",
                        help="read the password from standard input (without it the account cannot log in "
                             "with a password)")
    status = user.add_parser("set-status", help="block, unblock or mark an account for deletion")
    status.add_argument("user", help="the user's id, email or phone")
    status.add_argument("status", choices=accounts.STATUSES)


def _fail(message: str, code: int = 2) -> int:
    print(f"csms: {message}", file=sys.stderr)
    return code


def run(args: argparse.Namespace, settings: Settings,
        with_db: Callable[[Settings, Callable[[Database], Awaitable[Any]]], Any]) -> int:
    """Run ``csms user <action>``; returns the exit status."""
    if args.action == "create":
        if args.email is None and args.phone is None:
            return _fail("give --email or --phone (or both)")
        password = None
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\n")
            try:
                accounts.check_password(password)
            except accounts.InvalidInput as exc:
                return _fail(str(exc))

        async def create(db: Database) -> User | str:
            try:
                return await accounts.create_account(db, role=args.role, phone=args.phone, email=args.email,
                                                     name=args.name, password=password)
            except accounts.IdentifierTaken as exc:
                return exc.field

        created = with_db(settings, create)
        if isinstance(created, str):
            return _fail(f"this {created} is already registered", 1)
        print(f"user {created.id} created ({created.role})")
        return 0

    async def set_status(db: Database) -> User | None:
        user = await db.run(find_user, args.user)
        if user is None:
            return None
        return await accounts.set_status(db, user.id, args.status, actor=("cli", "csms user set-status"))

    changed = with_db(settings, set_status)
    if changed is None:
        return _fail(f"no user {args.user!r}")
    print(f"user {changed.id} is {changed.status}")
    return 0

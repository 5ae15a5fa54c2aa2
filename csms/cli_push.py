"""``csms vapid``: create the VAPID key pair for web push, and show its public key.

``csms vapid generate`` writes a new P-256 private key (PEM, mode 0600) to ``--out``, or to
``CSMS_VAPID_PRIVATE_KEY_FILE``, or to ``$CSMS_DATA_DIR/vapid-private.pem``, and prints the public key
(base64url, what browsers take as ``applicationServerKey``). It refuses to replace an existing key
unless given ``--force``: every browser subscribed with the old key would stop receiving notifications.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from csms.services import push_keys

if TYPE_CHECKING:
    import argparse

    from csms.config import Settings


def add_parser(sub: Any) -> None:
    """Add the ``vapid`` command and its actions to the ``csms`` parser's subcommands."""
    vapid = sub.add_parser("vapid", help="web push keys (VAPID)").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    generate = vapid.add_parser("generate", help="write a new VAPID key pair and print its public key")
    generate.add_argument("--out", type=Path, help="where to write the private key (default: "
                          "CSMS_VAPID_PRIVATE_KEY_FILE, else $CSMS_DATA_DIR/vapid-private.pem)")
    generate.add_argument("--force", action="store_true",
                          help="replace an existing key (every browser must then subscribe again)")
    vapid.add_parser("public-key", help="print the public key of the configured VAPID key")


def _default_path(settings: Settings) -> Path:
    return settings.push.vapid_private_key_file or settings.data_dir / push_keys.DEFAULT_KEY_NAME


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run ``csms vapid <action>``; returns the exit status."""
    if args.action == "generate":
        path: Path = args.out or _default_path(settings)
        try:
            key = push_keys.write_new_key(path, replace=args.force)
        except FileExistsError:
            print(f"csms: {path} already exists; --force replaces it (every browser must then subscribe again)",
                  file=sys.stderr)
            return 1
        except OSError as exc:
            print(f"csms: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        print(push_keys.public_key_b64(key))
        print(f"VAPID private key written to {path} (mode 600). Set CSMS_VAPID_PRIVATE_KEY_FILE={path} and "
              "CSMS_VAPID_SUBJECT=mailto:<operator address>.", file=sys.stderr)
        return 0
    if args.action == "public-key":
        path = _default_path(settings)
        try:
            print(push_keys.public_key_b64(push_keys.load_key(path)))
        except push_keys.VapidKeyError as exc:
            print(f"csms: {exc} (create one with `csms vapid generate`)", file=sys.stderr)
            return 1
        return 0
    raise AssertionError(args.action)

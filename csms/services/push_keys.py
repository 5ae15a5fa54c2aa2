"""The VAPID key (RFC 8292): who we are to push services, and the signed JWT that proves it.

The key is a P-256 private key in a PEM file, created by ``csms vapid generate`` (production) or on
first use in the data directory (development). Browsers subscribe with its public half
(``applicationServerKey``, the ``vapidPublicKey`` query); a push service then accepts messages for
that subscription only when they are signed with this key. Replacing the key therefore silently
invalidates every stored subscription: ``csms vapid generate`` refuses to overwrite one unless told to.

Signing is py-vapid's; :class:`VapidSigner` caches the ``Authorization`` header per audience (a push
service's origin) until shortly before its JWT expires, so a burst of messages costs one signature.
"""

from __future__ import annotations

import base64
import os
import time
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

# RFC 8292 allows at most 24 hours; a shorter life limits what a leaked header allows.
JWT_LIFETIME_S = 12 * 3600
# A cached header is replaced once less than this is left, so none expires in flight or in a retry.
JWT_RENEW_BEFORE_S = 3600
DEFAULT_KEY_NAME = "vapid-private.pem"


class VapidKeyError(Exception):
    """The key file is missing, unreadable or not a P-256 private key."""


def b64url(data: bytes) -> str:
    """Unpadded base64url, as the Web Push specifications write keys."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def public_key_b64(key: ec.EllipticCurvePrivateKey) -> str:
    """The public key as browsers take it for ``applicationServerKey``: the uncompressed point, base64url."""
    raw = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return b64url(raw)


def load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """Read a P-256 private key from a PEM file.

    Raises:
        VapidKeyError: the file is missing or holds something else.
    """
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise VapidKeyError(f"cannot read the VAPID key {path}: {exc.strerror or exc}") from None
    except (ValueError, TypeError):
        raise VapidKeyError(f"{path} is not an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise VapidKeyError(f"{path} is not a P-256 (prime256v1) key, which VAPID needs")
    return key


def write_new_key(path: Path, *, replace: bool = False) -> ec.EllipticCurvePrivateKey:
    """Generate a key and write it to ``path`` with mode 0600.

    The key is written to a private temporary file and then linked into place, so it never exists
    with wider permissions and a concurrent reader never sees half a file.

    Raises:
        FileExistsError: ``path`` exists and ``replace`` is False.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # FileExistsError when another key is there (or another process won)
    finally:
        tmp.unlink(missing_ok=True)
    return key


def load_or_create(path: Path) -> ec.EllipticCurvePrivateKey:
    """The key at ``path``, created first if missing (development's data-dir key)."""
    if not path.exists():
        try:
            return write_new_key(path)
        except FileExistsError:
            pass  # another process created it at the same moment: use theirs
    return load_key(path)


class VapidSigner:
    """Signs VAPID headers with one key, caching them per audience.

    Args:
        key: the VAPID private key.
        subject: the ``sub`` claim (``mailto:`` or ``https:``).
        clock: seconds since the epoch (tests pass their own).
    """

    def __init__(self, key: ec.EllipticCurvePrivateKey, subject: str, *,
                 clock: Callable[[], float] = time.time) -> None:
        self._vapid = Vapid02(private_key=key)
        self.subject = subject
        self.public_key = public_key_b64(key)
        self._clock = clock
        self._cache: dict[str, tuple[str, int]] = {}  # audience -> (Authorization header, exp)
        self.signatures = 0  # JWTs signed (the rest came from the cache)

    def authorization(self, audience: str) -> str:
        """The ``Authorization: vapid t=<JWT>, k=<public key>`` value for a push service's origin."""
        now = int(self._clock())
        cached = self._cache.get(audience)
        if cached is not None and cached[1] - now > JWT_RENEW_BEFORE_S:
            return cached[0]
        exp = now + JWT_LIFETIME_S
        header = str(self._vapid.sign({"aud": audience, "sub": self.subject, "exp": exp})["Authorization"])
        self.signatures += 1
        if len(self._cache) > 1000:  # push services are a handful of origins; this only bounds memory
            self._cache.clear()
        self._cache[audience] = (header, exp)
        return header

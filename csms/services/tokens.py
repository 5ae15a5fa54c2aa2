"""Our own access tokens: ES256 JWTs that live 15 minutes, with the key id in the header.

The signing key is a P-256 private key in PEM. In development it is created on first use in the data
directory; production must be given one (``CSMS_JWT_PRIVATE_KEY_FILE``). The public half is published
as a JWKS (``/.well-known/jwks.json``) so other services can check our tokens; the key id is the key's
RFC 7638 thumbprint, so it changes exactly when the key does.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

if TYPE_CHECKING:
    from pathlib import Path

ACCESS_TOKEN_TTL_S = 15 * 60
ISSUER = "csms"
AUDIENCE = "csms-api"
ALGORITHM = "ES256"


class InvalidToken(Exception):
    """A token that is malformed, expired, or not signed by us."""


def _b64(n: int) -> str:
    return base64.urlsafe_b64encode(n.to_bytes(32, "big")).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class AccessClaims:
    """What a valid access token says: the user, their role, and when it expires (epoch seconds).

    ``session_id`` is the login session (refresh token family) it was issued for, so logging out
    revokes it too (``csms.services.session_revocation``); None for tokens issued without one.
    """

    user_id: str
    role: str
    expires_at: int
    token_id: str
    session_id: str | None = None


class TokenSigner:
    """Issues and verifies our access tokens with one ES256 key."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise ValueError("the JWT signing key must be a P-256 (ES256) key")
        self._private = private_key
        self._public = private_key.public_key()
        numbers = self._public.public_numbers()
        self._jwk = {"kty": "EC", "crv": "P-256", "x": _b64(numbers.x), "y": _b64(numbers.y)}
        thumbprint = json.dumps(self._jwk, sort_keys=True, separators=(",", ":")).encode()
        self.kid = base64.urlsafe_b64encode(hashlib.sha256(thumbprint).digest()).rstrip(b"=").decode()[:16]

    @classmethod
    def generate(cls) -> TokenSigner:
        """A signer with a fresh key (tests, first start in development)."""
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def from_file(cls, path: Path, *, create: bool) -> TokenSigner:
        """Load the PEM key at ``path``; with ``create``, write a new one there if it is missing."""
        if not path.exists():
            if not create:
                raise FileNotFoundError(f"JWT signing key {path} does not exist")
            signer = cls.generate()
            path.parent.mkdir(parents=True, exist_ok=True)
            pem = signer._private.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            # Created 0600 from the start: the key never exists with wider permissions.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
            return signer
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{path} is not an EC private key")
        return cls(key)

    def jwks(self) -> dict[str, Any]:
        """The public key set to publish at ``/.well-known/jwks.json``."""
        return {"keys": [{**self._jwk, "kid": self.kid, "use": "sig", "alg": ALGORITHM}]}

    def issue(self, user_id: str, role: str, *, now: float | None = None, ttl_s: int = ACCESS_TOKEN_TTL_S,
              session_id: str | None = None) -> str:
        """A signed access token for a user (``session_id``: the login session it belongs to, ``sid``)."""
        issued = int(time.time() if now is None else now)
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": user_id, "role": role, "iat": issued,
                  "exp": issued + ttl_s, "jti": uuid.uuid4().hex}
        if session_id is not None:
            claims["sid"] = session_id
        return jwt.encode(claims, self._private, algorithm=ALGORITHM, headers={"kid": self.kid})

    def verify(self, token: str) -> AccessClaims:
        """Check signature, algorithm, key id, issuer, audience and expiry.

        Raises:
            InvalidToken: anything is wrong (the reason is not exposed to clients).
        """
        try:
            header = jwt.get_unverified_header(token)
            if header.get("kid") != self.kid:
                raise InvalidToken("unknown key id")
            claims = jwt.decode(token, self._public, algorithms=[ALGORITHM], audience=AUDIENCE, issuer=ISSUER,
                                options={"require": ["exp", "iat", "sub", "iss", "aud"]})
        except jwt.PyJWTError as exc:
            raise InvalidToken(type(exc).__name__) from None
        sid = claims.get("sid")
        return AccessClaims(str(claims["sub"]), str(claims.get("role", "")), int(claims["exp"]),
                            str(claims.get("jti", "")), str(sid) if sid is not None else None)

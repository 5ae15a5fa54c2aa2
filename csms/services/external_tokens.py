"""Access tokens from an external identity provider: JWKS (RS256/ES256) and/or an HS256 shared secret.

When configured (``CSMS_EXTERNAL_JWT_*``), a bearer token that is not ours is checked here: signature,
algorithm, issuer, audience and expiry. Its ``(iss, sub)`` maps to one csms user, created as a driver
the first time it is seen (:func:`user_for`). Email and phone claims are deliberately not copied: an
identity provider may not have verified them, and adopting them could take over a local account.

Keys: the JWKS is fetched with ``httpx.AsyncClient`` (bounded by a timeout), cached for
``cache_ttl_s``, and fetched again when a token names a key id we do not know (the provider rotated
its keys), but at most once per ``min_refetch_s``, so a flood of tokens with made-up key ids cannot
turn csms into a load generator against the provider. A failed fetch keeps the keys we have.

Algorithm confusion is impossible by construction: an HS256 token is only ever checked against the
configured secret, and RS256/ES256 tokens only against a JWKS key of that same algorithm.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import jwt
import trio

from csms.services.tokens import InvalidToken
from csms.store import users as user_store

if TYPE_CHECKING:
    from collections.abc import Callable

    from csms.store.db import Database
    from csms.store.users import User

log = logging.getLogger(__name__)

ASYMMETRIC = ("RS256", "ES256")
LEEWAY_S = 30  # clock skew between us and the provider
MAX_JWKS_BYTES = 256 * 1024
MAX_SUBJECT = 255


@dataclass(frozen=True)
class ExternalIdentity:
    """Who a valid external token names."""

    issuer: str
    subject: str
    name: str = ""


class ExternalTokenVerifier:
    """Checks tokens of one external issuer.

    Args:
        issuer: the required ``iss`` claim.
        audience: the required ``aud`` claim (csms's client or API id at the provider).
        jwks_url: where the provider publishes its keys (RS256/ES256), or None.
        hs256_secret: a shared secret for HS256 tokens, or None.
        cache_ttl_s: how long fetched keys are trusted before they are fetched again.
        min_refetch_s: the least time between two fetches caused by unknown key ids.
        fetch_timeout_s: the bound on one JWKS fetch.
        clock: the Trio clock (tests may pass their own).
    """

    def __init__(self, *, issuer: str, audience: str, jwks_url: str | None = None, hs256_secret: str | None = None,
                 cache_ttl_s: float = 3600.0, min_refetch_s: float = 60.0, fetch_timeout_s: float = 5.0,
                 clock: Callable[[], float] = trio.current_time) -> None:
        if not jwks_url and not hs256_secret:
            raise ValueError("an external token verifier needs a JWKS URL or an HS256 secret")
        self.issuer = issuer
        self.audience = audience
        self.jwks_url = jwks_url
        self._secret = hs256_secret
        self.cache_ttl_s = cache_ttl_s
        self.min_refetch_s = min_refetch_s
        self.fetch_timeout_s = fetch_timeout_s
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = -math.inf  # last successful fetch
        self._attempted_at = -math.inf  # last fetch, successful or not
        self._lock: trio.Lock | None = None
        self.fetches = 0  # how many JWKS requests were made (diagnostics, tests)

    async def verify(self, token: str) -> ExternalIdentity:
        """Check ``token`` and return whom it names.

        Raises:
            InvalidToken: malformed, wrong algorithm, unknown key, bad signature, wrong issuer or
                audience, expired (the reason is not exposed to clients).
        """
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken(type(exc).__name__) from None
        alg = header.get("alg")
        key: Any
        if alg == "HS256" and self._secret:
            key = self._secret
        elif alg in ASYMMETRIC and self.jwks_url:
            kid = header.get("kid")
            key = await self._key(kid if isinstance(kid, str) else None, alg)
        else:
            raise InvalidToken("algorithm not accepted")
        try:
            claims = jwt.decode(token, key, algorithms=[alg], audience=self.audience, issuer=self.issuer,
                                leeway=LEEWAY_S, options={"require": ["exp", "iss", "aud", "sub"]})
        except jwt.PyJWTError as exc:
            raise InvalidToken(type(exc).__name__) from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not 1 <= len(subject) <= MAX_SUBJECT:
            raise InvalidToken("bad subject")
        name = claims.get("name")
        return ExternalIdentity(self.issuer, subject, name if isinstance(name, str) else "")

    async def _key(self, kid: str | None, alg: str) -> Any:
        key = self._lookup(kid, alg)
        if key is not None and self._clock() - self._fetched_at < self.cache_ttl_s:
            return key
        if self._lock is None:
            self._lock = trio.Lock()
        async with self._lock:
            # Another task may have fetched while this one waited.
            key = self._lookup(kid, alg)
            now = self._clock()
            stale = now - self._fetched_at >= self.cache_ttl_s
            if (key is None or stale) and now - self._attempted_at >= self.min_refetch_s:
                await self._fetch()
                key = self._lookup(kid, alg)
        if key is None:
            raise InvalidToken("unknown key id")
        return key

    def _lookup(self, kid: str | None, alg: str) -> Any:
        if kid is None:
            # A provider with one key may leave out the kid.
            candidates = [k for k in self._keys.values() if k.algorithm_name == alg]
            jwk = candidates[0] if len(candidates) == 1 else None
        else:
            jwk = self._keys.get(kid)
        if jwk is None or jwk.algorithm_name != alg:
            return None
        return jwk.key

    async def _fetch(self) -> None:
        assert self.jwks_url is not None
        self._attempted_at = self._clock()
        self.fetches += 1
        try:
            with trio.fail_after(self.fetch_timeout_s):
                async with httpx.AsyncClient(timeout=self.fetch_timeout_s, follow_redirects=False) as client:
                    response = await client.get(self.jwks_url, headers={"Accept": "application/json"})
            if response.status_code != 200:
                raise ValueError(f"HTTP {response.status_code}")
            if len(response.content) > MAX_JWKS_BYTES:
                raise ValueError("JWKS too large")
            key_set = jwt.PyJWKSet.from_dict(response.json())
        except (httpx.HTTPError, trio.TooSlowError, ValueError, jwt.PyJWTError) as exc:
            # The URL is configuration, not a secret; the body is not logged.
            log.warning("external identity provider: fetching %s failed (%s); keeping %d cached keys",
                        self.jwks_url, type(exc).__name__, len(self._keys))
            return
        self._keys = {k.key_id: k for k in key_set.keys
                      if k.key_id and k.algorithm_name in ASYMMETRIC and k.public_key_use in (None, "sig")}
        self._fetched_at = self._clock()
        log.info("external identity provider: %d signing keys loaded", len(self._keys))


async def user_for(db: Database, identity: ExternalIdentity) -> User:
    """The csms user of an external identity, created as an active driver on first sight."""
    return await db.run(user_store.find_or_create_external, identity.issuer, identity.subject, identity.name)

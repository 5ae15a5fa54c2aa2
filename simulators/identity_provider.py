"""A small OpenID-style identity provider for development and tests: serves a JWKS and mints tokens.

It stands in for a real provider (Auth0, Keycloak, Firebase...) when csms is configured to accept
external tokens (``CSMS_EXTERNAL_JWT_*``). It runs a real HTTP server:

- ``GET /.well-known/jwks.json``: the public keys (one RS256 and one ES256 key to start with);
- ``GET /.well-known/openid-configuration``: the issuer and the JWKS URL;
- ``POST /token`` with JSON ``{"sub": ..., "aud": ..., "alg": "RS256"|"ES256"|"HS256", "name": ...,
  "expires_in": 300}``: a signed token. No authentication: this is a simulator, bind it to localhost.

By hand::

    python -m simulators.identity_provider serve --port 8900 --hs256-secret "$(openssl rand -hex 32)"
    # prints the CSMS_EXTERNAL_JWT_* settings to give csms
    python -m simulators.identity_provider mint --url http://127.0.0.1:8900 --sub alice --aud csms
    # prints a token: curl -H "Authorization: Bearer $TOKEN" ...

Tests drive it in-process (:class:`IdentityProvider`): mint tokens with any issuer, audience, key or
expiry, rotate keys, count JWKS requests, or make the JWKS endpoint fail. It never imports csms.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import secrets
import sys
import time
from typing import Any

import httpx
import jwt
import trio
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypercorn.config import Config
from hypercorn.trio import serve
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from quart import Response, request
from quart_trio import QuartTrio

log = logging.getLogger("simulators.identity_provider")

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class IdentityProvider:
    """Keys, token minting and the HTTP app of the simulated provider.

    Args:
        issuer: the ``iss`` of minted tokens; None means the server's own URL once it listens.
        hs256_secret: a shared secret for HS256 tokens, or None.
    """

    def __init__(self, issuer: str | None = None, *, hs256_secret: str | None = None) -> None:
        self.issuer = issuer
        self.hs256_secret = hs256_secret
        self.keys: dict[str, tuple[str, PrivateKey]] = {}  # kid -> (alg, private key)
        self.jwks_requests = 0
        self.jwks_status = 200  # fault injection: answer the JWKS with this status
        self.url: str | None = None
        self.add_key("RS256")
        self.add_key("ES256")

    def add_key(self, alg: str) -> str:
        """Create and publish a new signing key for ``alg`` (RS256 or ES256); return its kid."""
        key: PrivateKey
        if alg == "RS256":
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif alg == "ES256":
            key = ec.generate_private_key(ec.SECP256R1())
        else:
            raise ValueError(f"unsupported algorithm {alg}")
        kid = f"{alg.lower()}-{secrets.token_hex(4)}"
        self.keys[kid] = (alg, key)
        return kid

    def rotate(self, alg: str) -> str:
        """Replace every ``alg`` key by a new one (a provider's key rotation); return the new kid."""
        for kid in [k for k, (a, _) in self.keys.items() if a == alg]:
            del self.keys[kid]
        return self.add_key(alg)

    def kid_for(self, alg: str) -> str:
        """The kid of the newest published key for ``alg``."""
        return [k for k, (a, _) in self.keys.items() if a == alg][-1]

    def jwks(self) -> dict[str, Any]:
        """The published key set (public halves only)."""
        keys = []
        for kid, (alg, key) in self.keys.items():
            exporter = RSAAlgorithm if alg == "RS256" else ECAlgorithm
            jwk = json.loads(exporter.to_jwk(key.public_key()))
            keys.append({**jwk, "kid": kid, "alg": alg, "use": "sig"})
        return {"keys": keys}

    def mint(self, subject: str, *, audience: str, alg: str = "RS256", issuer: str | None = None,
             expires_in: int = 300, name: str | None = None, kid: str | None = None,
             key: Any = None, secret: str | None = None) -> str:
        """A signed token. Every part can be chosen, wrong ones included, to test a verifier.

        Args:
            kid: the header's key id (defaults to the newest key for ``alg``).
            key: sign with this private key instead of a published one (forgeries).
            secret: HS256 with this secret instead of the configured one.
        """
        now = int(time.time())
        claims: dict[str, Any] = {"iss": issuer or self.issuer, "aud": audience, "sub": subject,
                                  "iat": now, "exp": now + expires_in}
        if name is not None:
            claims["name"] = name
        if alg == "HS256":
            signing = secret or self.hs256_secret
            if not signing:
                raise ValueError("HS256 needs a secret")
            return jwt.encode(claims, signing, algorithm="HS256")
        kid = kid or self.kid_for(alg)
        if key is None:
            # A made-up kid (to test unknown keys) is signed with the current key of the algorithm.
            key = self.keys[kid if kid in self.keys else self.kid_for(alg)][1]
        return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})

    def app(self) -> QuartTrio:
        """The HTTP app serving the JWKS, the discovery document and token minting."""
        app = QuartTrio("identity_provider")

        @app.get("/.well-known/jwks.json")
        async def jwks() -> Response:
            self.jwks_requests += 1
            if self.jwks_status != 200:
                return Response("unavailable", status=self.jwks_status)
            return Response(json.dumps(self.jwks()), content_type="application/json")

        @app.get("/.well-known/openid-configuration")
        async def discovery() -> dict[str, Any]:
            return {"issuer": self.issuer, "jwks_uri": f"{self.url}/.well-known/jwks.json",
                    "id_token_signing_alg_values_supported": ["RS256", "ES256", "HS256"]}

        @app.post("/token")
        async def token() -> tuple[dict[str, Any], int]:
            body = await request.get_json(force=True, silent=True) or {}
            try:
                minted = self.mint(str(body["sub"]), audience=str(body["aud"]), alg=str(body.get("alg", "RS256")),
                                   expires_in=int(body.get("expires_in", 300)), name=body.get("name"))
            except (KeyError, ValueError) as exc:
                return {"error": "invalid_request", "detail": str(exc)}, 400
            return {"access_token": minted, "token_type": "Bearer"}, 200

        return app

    async def serve(self, host: str = "127.0.0.1", port: int = 0, *,
                    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ``task_status.started(base_url)`` once listening."""
        config = Config()
        config.bind = [f"{host}:{port}"]
        config.accesslog = None
        config.errorlog = logging.getLogger("simulators.identity_provider.http")
        async with trio.open_nursery() as nursery:
            binds: list[str] = await nursery.start(lambda task_status: serve(self.app(), config,
                                                                             task_status=task_status))
            self.url = binds[0]
            if self.issuer is None:
                self.issuer = self.url
            task_status.started(self.url)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m simulators.identity_provider", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("serve", help="serve the JWKS and /token")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8900)
    run.add_argument("--issuer", help="the iss claim (default: the server's URL)")
    run.add_argument("--hs256-secret", help="also mint HS256 tokens with this shared secret (32+ characters)")
    mint = sub.add_parser("mint", help="ask a running provider for a token and print it")
    mint.add_argument("--url", default="http://127.0.0.1:8900")
    mint.add_argument("--sub", required=True, help="the user's id at the provider")
    mint.add_argument("--aud", required=True, help="the audience csms expects (CSMS_EXTERNAL_JWT_AUDIENCE)")
    mint.add_argument("--alg", default="RS256", choices=["RS256", "ES256", "HS256"])
    mint.add_argument("--name", help="a display name claim")
    mint.add_argument("--expires-in", type=int, default=3600)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command line entry; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "mint":
        response = httpx.post(f"{args.url.rstrip('/')}/token", timeout=10, json={
            "sub": args.sub, "aud": args.aud, "alg": args.alg, "name": args.name, "expires_in": args.expires_in})
        if response.status_code != 200:
            print(f"identity provider: {response.text}", file=sys.stderr)
            return 1
        print(response.json()["access_token"])
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    provider = IdentityProvider(args.issuer, hs256_secret=args.hs256_secret)

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            url = await nursery.start(provider.serve, args.host, args.port)
            print(f"CSMS_EXTERNAL_JWT_ISSUER={provider.issuer}\nCSMS_EXTERNAL_JWKS_URL={url}/.well-known/jwks.json\n"
                  "CSMS_EXTERNAL_JWT_AUDIENCE=<the --aud you mint with>", flush=True)
            if provider.hs256_secret:
                print("CSMS_EXTERNAL_JWT_HS256_SECRET=<the --hs256-secret you passed>", flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        trio.run(run)
    return 0


if __name__ == "__main__":
    sys.exit(main())

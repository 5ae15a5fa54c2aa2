"""A local Web Push service (RFC 8030) that checks and decrypts what csms sends, for developers and tests.

It plays the part of a browser vendor's push service *and* of the browser behind each subscription:
it hands out subscriptions for which it holds the private keys, so it can decrypt every message and
show what a browser's service worker would receive. It runs a real HTTP server:

- ``POST /subscriptions`` (JSON, optional ``{"applicationServerKey": "<VAPID public key>"}``) creates a
  subscription and answers ``{"id", "endpoint", "keys": {"p256dh", "auth"}}``, exactly what a web app
  sends to ``subscribePush``. With an ``applicationServerKey`` it accepts only messages signed with it
  (403 otherwise), like browsers' services do.
- ``POST /push/<id>``: the push endpoint. It checks the VAPID ``Authorization: vapid t=<JWT>,
  k=<key>`` (ES256 signature against ``k``, ``aud`` = its own origin, ``exp`` in the future and at
  most 24 h ahead, ``sub`` a ``mailto:`` or ``https:`` contact: 401 otherwise), the ``TTL``,
  ``Urgency`` and ``Topic`` headers (400), ``Content-Encoding: aes128gcm`` (415) and the 4 KB limit
  (413), then **decrypts** the body (RFC 8291; 400 if it cannot) and records it: 201.
- ``GET /messages[?subscription=<id>]``: what was received, oldest first, decrypted
  (``payload``, and ``json`` when it is JSON); ``DELETE /messages`` forgets them.
  ``GET /refusals``: requests it refused, with the reason.
- ``PUT /subscriptions/<id>/behaviour`` with ``{"status": 404|410|429|500, "times": N, "retryAfter": S}``
  answers that status to the next N pushes (all of them without ``times``), or ``{"hang": true}`` never
  answers; ``DELETE`` restores normal service. ``DELETE /subscriptions/<id>``: later pushes get 410.
- ``GET /``: a page listing the notifications received, refreshed every 2 s.

By hand (``./dev run`` starts one on port 8090)::

    python -m simulators.push_service serve --port 8090          # prints each notification it receives
    python -m simulators.push_service subscribe --service http://127.0.0.1:8090 \\
        --graphql http://127.0.0.1:8000/graphql --token "$ACCESS_TOKEN"   # subscribes that user

It never imports csms, so it can catch the server's mistakes.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import html
import json
import logging
import re
import secrets
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import http_ece
import httpx
import jwt
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Response, request
from quart_trio import QuartTrio

log = logging.getLogger("simulators.push_service")

MAX_BODY = 4096  # RFC 8030: services must accept at least 4 KB; this one accepts exactly that
MAX_JWT_LIFETIME_S = 24 * 3600  # RFC 8292
URGENCIES = ("very-low", "low", "normal", "high")
_TOPIC = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def b64url(data: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    """Decode base64url with or without padding."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Subscription:
    """One subscription and the browser keys behind it."""

    id: str
    origin: str
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes
    application_server_key: str | None = None
    behaviour: dict[str, Any] | None = None
    attempts: int = 0  # push requests to it, answered or not

    @property
    def endpoint(self) -> str:
        """The push endpoint URL."""
        return f"{self.origin}/push/{self.id}"

    def as_json(self) -> dict[str, Any]:
        """What PushSubscription.toJSON() gives a web app (plus the id)."""
        public = self.private_key.public_key().public_bytes(serialization.Encoding.X962,
                                                            serialization.PublicFormat.UncompressedPoint)
        return {"id": self.id, "endpoint": self.endpoint, "keys": {"p256dh": b64url(public), "auth": b64url(self.auth)}}


class Refused(Exception):
    """A push request the service refuses with ``status``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class PushService:
    """The subscriptions, what was received and refused, and the HTTP app.

    Args:
        echo: print each received notification on standard output (the CLI does).
    """

    echo: bool = False
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    received: list[dict[str, Any]] = field(default_factory=list)
    refusals: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def subscribe(self, origin: str, application_server_key: str | None = None) -> Subscription:
        """Create a subscription whose endpoint is on ``origin``."""
        sub = Subscription(secrets.token_urlsafe(16), origin.rstrip("/"), ec.generate_private_key(ec.SECP256R1()),
                           secrets.token_bytes(16), application_server_key)
        self.subscriptions[sub.id] = sub
        return sub

    def check_vapid(self, sub: Subscription, authorization: str) -> dict[str, Any]:
        """The VAPID claims, if the Authorization header is a valid signature for this subscription."""
        scheme, _, params = authorization.partition(" ")
        if scheme.lower() != "vapid":
            raise Refused(401, "Authorization scheme is not vapid")
        parts = dict(p.strip().split("=", 1) for p in params.split(",") if "=" in p)
        if "t" not in parts or "k" not in parts:
            raise Refused(401, "Authorization lacks t= or k=")
        try:
            key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(parts["k"]))
        except ValueError:
            raise Refused(401, "k= is not a P-256 public key") from None
        if sub.application_server_key is not None and parts["k"].rstrip("=") != sub.application_server_key.rstrip("="):
            raise Refused(403, "signed with another key than the subscription's applicationServerKey")
        try:
            claims: dict[str, Any] = jwt.decode(parts["t"], key=key, algorithms=["ES256"], audience=sub.origin,
                                                options={"require": ["exp", "aud", "sub"]})
        except jwt.PyJWTError as exc:
            raise Refused(401, f"VAPID JWT rejected: {type(exc).__name__}: {exc}") from None
        if claims["exp"] > time.time() + MAX_JWT_LIFETIME_S:
            raise Refused(401, "VAPID JWT expires more than 24 hours ahead")
        if not str(claims["sub"]).startswith(("mailto:", "https:")):
            raise Refused(401, "VAPID sub is not a mailto: or https: contact")
        return claims

    def accept(self, sub: Subscription, headers: dict[str, str], body: bytes) -> dict[str, Any]:
        """Check and decrypt one push message; the record of it. Raises :class:`Refused`."""
        claims = self.check_vapid(sub, headers.get("authorization", ""))
        ttl = headers.get("ttl", "")
        if not ttl.isdigit():
            raise Refused(400, "TTL header missing or not a number")
        urgency = headers.get("urgency", "normal")
        if urgency not in URGENCIES:
            raise Refused(400, f"Urgency {urgency!r} is not one of {URGENCIES}")
        topic = headers.get("topic")
        if topic is not None and not _TOPIC.match(topic):
            raise Refused(400, "Topic must be 1-32 base64url characters")
        if headers.get("content-encoding") != "aes128gcm":
            raise Refused(415, "Content-Encoding must be aes128gcm")
        if len(body) > MAX_BODY:
            raise Refused(413, f"body over {MAX_BODY} bytes")
        try:
            plain = http_ece.decrypt(body, private_key=sub.private_key, auth_secret=sub.auth, version="aes128gcm")
        except Exception as exc:  # http_ece raises several types for a bad body
            raise Refused(400, f"cannot decrypt: {type(exc).__name__}") from None
        text = plain.decode("utf-8", errors="replace")
        try:
            doc: Any = json.loads(text)
        except ValueError:
            doc = None
        return {"id": len(self.received) + 1, "subscription": sub.id, "endpoint": sub.endpoint,
                "receivedAt": time.time(), "ttl": int(ttl), "urgency": urgency, "topic": topic,
                "vapid": {"sub": claims["sub"], "aud": claims["aud"], "exp": claims["exp"]},
                "payload": text, "json": doc}

    async def push(self, sub_id: str, headers: dict[str, str], body: bytes) -> Response:
        """Handle ``POST /push/<id>``."""
        sub = self.subscriptions.get(sub_id)
        if sub is None:
            status = 410 if sub_id in self.deleted else 404
            self.refusals.append({"subscription": sub_id, "status": status, "reason": "no such subscription"})
            return Response("", status=status)
        sub.attempts += 1
        behaviour = sub.behaviour
        if behaviour is not None:
            if behaviour.get("times") is not None:
                behaviour["times"] -= 1
                if behaviour["times"] <= 0:
                    sub.behaviour = None
            if behaviour.get("hang"):
                await trio.sleep_forever()
            status = int(behaviour.get("status", 500))
            self.refusals.append({"subscription": sub_id, "status": status, "reason": "told to"})
            extra = {"Retry-After": str(behaviour["retryAfter"])} if behaviour.get("retryAfter") is not None else {}
            return Response("", status=status, headers=extra)
        try:
            record = self.accept(sub, headers, body)
        except Refused as exc:
            self.refusals.append({"subscription": sub_id, "status": exc.status, "reason": exc.reason})
            return Response(exc.reason, status=exc.status)
        self.received.append(record)
        if self.echo:
            note = record["json"] if isinstance(record["json"], dict) else {}
            print(f"push → {sub_id[:8]}: {note.get('title', record['payload'])} — {note.get('body', '')} "
                  f"({note.get('url', '')})", flush=True)
        return Response("", status=201, headers={"Location": f"/messages/{record['id']}"})

    def app(self) -> QuartTrio:
        """The HTTP app."""
        app = QuartTrio("push_service")

        @app.post("/subscriptions")
        async def create() -> tuple[dict[str, Any], int]:
            body = await request.get_json(force=True, silent=True) or {}
            key = body.get("applicationServerKey")
            sub = self.subscribe(request.host_url.rstrip("/"), str(key) if key else None)
            return sub.as_json(), 201

        @app.get("/subscriptions")
        async def listing() -> Response:
            subs = [{**s.as_json(), "attempts": s.attempts} for s in self.subscriptions.values()]
            return Response(json.dumps({"subscriptions": subs}), content_type="application/json")

        @app.delete("/subscriptions/<sub_id>")
        async def forget(sub_id: str) -> tuple[str, int]:
            if self.subscriptions.pop(sub_id, None) is None:
                return "", 404
            self.deleted.add(sub_id)
            return "", 204

        @app.route("/subscriptions/<sub_id>/behaviour", methods=["PUT", "DELETE"])
        async def behave(sub_id: str) -> tuple[str, int]:
            sub = self.subscriptions.get(sub_id)
            if sub is None:
                return "", 404
            sub.behaviour = None if request.method == "DELETE" else dict(await request.get_json(force=True) or {})
            return "", 204

        @app.post("/push/<sub_id>")
        async def push(sub_id: str) -> Response:
            headers = {k.lower(): v for k, v in request.headers.items()}
            return await self.push(sub_id, headers, await request.get_data())

        @app.route("/messages", methods=["GET", "DELETE"])
        async def messages() -> Response:
            if request.method == "DELETE":
                self.received.clear()
                return Response("", status=204)
            wanted = request.args.get("subscription")
            items = [m for m in self.received if wanted is None or m["subscription"] == wanted]
            return Response(json.dumps({"messages": items}), content_type="application/json")

        @app.get("/refusals")
        async def refusals() -> Response:
            return Response(json.dumps({"refusals": self.refusals}), content_type="application/json")

        @app.get("/")
        async def page() -> Response:
            return Response(self.render_page(), content_type="text/html; charset=utf-8")

        return app

    def render_page(self) -> str:
        """The notifications received, newest first, as a browser's tray might show them."""
        rows = []
        for m in reversed(self.received):
            note = m["json"] if isinstance(m["json"], dict) else {"title": m["payload"]}
            at = time.strftime("%H:%M:%S", time.gmtime(m["receivedAt"]))
            rows.append(f"<li><small>{at} UTC · {html.escape(m['subscription'][:8])} · "
                        f"{html.escape(str(note.get('kind', '')))}</small><br><b>{html.escape(str(note.get('title')))}"
                        f"</b><br>{html.escape(str(note.get('body', '')))}<br><code>"
                        f"{html.escape(str(note.get('url', '')))}</code></li>")
        items = "".join(rows) or "<li>No notifications yet.</li>"
        return ("<!doctype html><meta charset=utf-8><meta http-equiv=refresh content=2><title>push service</title>"
                f"<h1>Notifications ({len(self.received)})</h1><ul>{items}</ul>"
                f"<p>{len(self.subscriptions)} subscriptions · {len(self.refusals)} refused requests "
                "(<a href=/refusals>why</a>)</p>")

    async def serve(self, host: str = "127.0.0.1", port: int = 0, *,
                    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ``task_status.started(base_url)`` once listening."""
        config = Config()
        config.bind = [f"{host}:{port}"]
        config.accesslog = None
        config.errorlog = logging.getLogger("simulators.push_service.http")
        config.graceful_timeout = 0.5
        async with trio.open_nursery() as nursery:
            binds: list[str] = await nursery.start(lambda task_status: serve(self.app(), config,
                                                                             task_status=task_status))
            self.url = binds[0]
            task_status.started(self.url)


def subscribe_user(service: str, graphql: str, token: str, user_agent: str = "push_service simulator") -> str:
    """Create a subscription on a running push service and register it with csms for the token's user."""
    with httpx.Client(timeout=10) as http:
        key = http.post(graphql, json={"query": "{ vapidPublicKey }"}).json()["data"]["vapidPublicKey"]
        sub = http.post(f"{service.rstrip('/')}/subscriptions", json={"applicationServerKey": key}).json()
        mutation = ("mutation($s: PushSubscriptionInput!, $ua: String) { subscribePush(subscription: $s, "
                    "userAgent: $ua) { id } }")
        variables = {"s": {"endpoint": sub["endpoint"], "keys": sub["keys"]}, "ua": user_agent}
        answer = http.post(graphql, headers={"Authorization": f"Bearer {token}"},
                           json={"query": mutation, "variables": variables})
        body = answer.json()
        if body.get("errors"):
            raise RuntimeError(f"subscribePush failed: {body['errors'][0].get('message')}")
        return str(sub["endpoint"])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m simulators.push_service", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("serve", help="run the push service, printing each notification it receives")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8090)
    run.add_argument("--quiet", action="store_true", help="do not print notifications")
    join = sub.add_parser("subscribe", help="subscribe a csms user (by access token) on a running push service")
    join.add_argument("--service", default="http://127.0.0.1:8090")
    join.add_argument("--graphql", default="http://127.0.0.1:8000/graphql")
    join.add_argument("--token", required=True, help="the user's access token (from the login mutation)")
    show = sub.add_parser("messages", help="print the notifications a running push service received")
    show.add_argument("--service", default="http://127.0.0.1:8090")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command line entry; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "subscribe":
        try:
            print(subscribe_user(args.service, args.graphql, args.token))
        except (httpx.HTTPError, RuntimeError, KeyError, ValueError) as exc:
            print(f"push service: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.command == "messages":
        print(json.dumps(httpx.get(f"{args.service.rstrip('/')}/messages", timeout=10).json(), indent=2))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    service = PushService(echo=not args.quiet)

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            url = await nursery.start(service.serve, args.host, args.port)
            print(f"push service on {url} (notifications: {url}/)", flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        trio.run(run)
    return 0


if __name__ == "__main__":
    sys.exit(main())

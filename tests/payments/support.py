"""Helpers for the payment tests: the client operations of graphql/payments.graphql, waiting, LISTEN.

Webhooks are posted by the sandbox provider. The few tests that post one by hand (replays, forged
signatures, concurrent deliveries) build it here the way the provider does, over real HTTP.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg
import trio

from csms.store import events, ledger
from csms.store import invoices as invoice_store
from tests.api.conftest import document
from tests.payments.conftest import MERCHANT, WEBHOOK_SECRET

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

    import httpx

    from csms.store.db import Database
    from csms.store.invoices import Invoice

DOCUMENT = document("payments.graphql")
WEBHOOK_PATH = "/webhooks/payments/odengi"


async def op(client: httpx.AsyncClient, operation: str, variables: dict[str, Any] | None = None, *,
             token: str | None = None, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Run one operation of graphql/payments.graphql; returns the whole response body."""
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    response = await client.post("/graphql", headers=sent, json={"query": DOCUMENT, "operationName": operation,
                                                                  "variables": variables or {}})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def top_up(client: httpx.AsyncClient, token: str, amount: int, key: str | None = None) -> dict[str, Any]:
    """``topUp`` that must succeed; returns the invoice."""
    body = await op(client, "TopUp", {"amountTyiyn": amount}, token=token,
                    headers={"Idempotency-Key": key} if key else None)
    assert "errors" not in body, body
    invoice: dict[str, Any] = body["data"]["topUp"]
    return invoice


def codes(body: dict[str, Any]) -> list[str]:
    """The ``extensions.code`` of every error in a response."""
    return [e.get("extensions", {}).get("code") for e in body.get("errors", [])]


async def available(db: Database, user_id: str) -> int:
    """A wallet's spendable balance."""
    return await db.run(ledger.wallet_available, user_id)


async def invoice(db: Database, invoice_id: str) -> Invoice:
    """The stored invoice."""
    row = await db.run(invoice_store.get_invoice, invoice_id)
    assert row is not None
    return row


async def wait_until(check: Callable[[], Awaitable[bool]], *, timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``check`` every 20 ms until it is true; fail after ``timeout`` seconds."""
    with trio.move_on_after(timeout):
        while not await check():
            await trio.sleep(0.02)
        return
    raise AssertionError(f"timed out waiting for {what}")


async def wait_status(db: Database, invoice_id: str, status: str, timeout: float = 10.0) -> Invoice:
    """Wait until the invoice has ``status``; returns it."""

    async def reached() -> bool:
        return (await invoice(db, invoice_id)).status == status

    await wait_until(reached, timeout=timeout, what=f"invoice {invoice_id} to be {status}")
    return await invoice(db, invoice_id)


def signed_webhook(event: dict[str, Any], *, secret: str = WEBHOOK_SECRET,
                   timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
    """A webhook body and headers as the provider signs them: HMAC-SHA256 over ``timestamp.body``."""
    body = json.dumps(event, separators=(",", ":")).encode()
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return body, {"Content-Type": "application/json", "X-Odengi-Timestamp": stamp,
                  "X-Odengi-Signature": f"v1={signature}"}


def approval(order_id: str, provider_invoice_id: str, amount: int, payment_id: str | None = None,
             event_id: str | None = None) -> dict[str, Any]:
    """An ``approved`` webhook event for our invoice ``order_id``."""
    return {"event_id": event_id or f"evt_{secrets.token_hex(8)}", "merchant_id": MERCHANT,
            "invoice_id": provider_invoice_id, "order_id": order_id, "status": "approved",
            "payment_id": payment_id or f"pay_{secrets.token_hex(8)}", "amount": amount, "currency": "KGS",
            "occurred_at": datetime.now(UTC).isoformat()}


async def post_webhook(client: httpx.AsyncClient, body: bytes, headers: dict[str, str]) -> httpx.Response:
    """POST a webhook to the node (over real HTTP, from 127.0.0.1)."""
    return await client.post(WEBHOOK_PATH, content=body, headers=headers)


async def event_count(db: Database) -> int:
    """Webhook events the node accepted."""
    return await db.run(invoice_store.count_events, "odengi")


@contextmanager
def listening(db_url: str) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """LISTEN on csms's event channel for the block; the callable returns the events received so far."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"LISTEN {events.CHANNEL}")
        received: list[dict[str, Any]] = []

        def drain() -> list[dict[str, Any]]:
            received.extend(json.loads(n.payload) for n in conn.notifies(timeout=0.05))
            return list(received)

        yield drain

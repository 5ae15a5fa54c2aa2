"""Helpers for the web push tests: subscribing a user through the API on the local push service, reading
what the push service decrypted, and the texts a driver or owner should see.

Expected amounts are formatted here with ``decimal`` (an independent way to the same text), so a test
checks csms's integer formatting instead of repeating it.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

import httpx
import trio

from tests.charging.support import gql

if TYPE_CHECKING:
    from simulators.push_service import PushService

SUBSCRIBE = """mutation($s: PushSubscriptionInput!, $ua: String) {
    subscribePush(subscription: $s, userAgent: $ua) { id endpointOrigin userAgent createdAt lastUsedAt } }"""
MY_SUBSCRIPTIONS = "{ myPushSubscriptions { id endpointOrigin userAgent } }"
UNSUBSCRIBE = "mutation($e: String!) { unsubscribePush(endpoint: $e) }"
SEND_TEST = "mutation { sendTestPush }"


def som_text(tyiyn: int) -> str:
    """What a notification says for an amount: two decimals, thousands with commas."""
    return f"{(Decimal(tyiyn) / 100).quantize(Decimal('0.01')):,} som"


def kwh_text(wh: int) -> str:
    """What a notification says for energy: one decimal, rounded half up."""
    return f"{(Decimal(wh) / 1000).quantize(Decimal('0.1'), rounding=ROUND_HALF_UP):,} kWh"


async def new_subscription(service: PushService, application_server_key: str | None = None) -> dict[str, Any]:
    """A browser subscription from the push service: ``{"id", "endpoint", "keys"}``."""
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(f"{service.url}/subscriptions",
                                   json={"applicationServerKey": application_server_key})
        assert response.status_code == 201, response.text
        sub: dict[str, Any] = response.json()
        return sub


async def subscribe(api: httpx.AsyncClient, token: str, service: PushService,
                    user_agent: str = "test browser") -> dict[str, Any]:
    """Subscribe the token's user as a web app would; returns the push service's subscription."""
    key = (await gql(api, "{ vapidPublicKey }"))["data"]["vapidPublicKey"]
    sub = await new_subscription(service, key)
    result = await gql(api, SUBSCRIBE, {"s": {"endpoint": sub["endpoint"], "keys": sub["keys"]}, "ua": user_agent},
                       token=token)
    assert "errors" not in result, result
    return sub


async def messages(service: PushService, subscription_id: str | None = None) -> list[dict[str, Any]]:
    """What the push service received and decrypted (oldest first), over its HTTP listing."""
    async with httpx.AsyncClient(timeout=10) as http:
        params = {"subscription": subscription_id} if subscription_id else {}
        response = await http.get(f"{service.url}/messages", params=params)
        assert response.status_code == 200
        found: list[dict[str, Any]] = response.json()["messages"]
        return found


async def wait_messages(service: PushService, subscription_id: str, count: int, *, kind: str | None = None,
                        timeout: float = 10.0) -> list[dict[str, Any]]:
    """Poll until the subscription received ``count`` messages (of ``kind``, if given); returns them."""
    with trio.fail_after(timeout):
        while True:
            found = [m for m in await messages(service, subscription_id)
                     if kind is None or (m["json"] or {}).get("kind") == kind]
            if len(found) >= count:
                return found
            await trio.sleep(0.05)


def notes(received: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The decrypted JSON documents of received messages."""
    return [m["json"] for m in received]


async def behave(service: PushService, subscription_id: str, **behaviour: Any) -> None:
    """Tell the push service how to answer pushes to a subscription (``status``, ``times``, ``retryAfter``,
    ``hang``); no arguments restores normal service."""
    async with httpx.AsyncClient(timeout=10) as http:
        url = f"{service.url}/subscriptions/{subscription_id}/behaviour"
        response = await (http.put(url, json=behaviour) if behaviour else http.delete(url))
        assert response.status_code == 204


async def attempts(service: PushService, subscription_id: str) -> int:
    """How many push requests reached a subscription's endpoint."""
    async with httpx.AsyncClient(timeout=10) as http:
        subs = (await http.get(f"{service.url}/subscriptions")).json()["subscriptions"]
    return int(next(s["attempts"] for s in subs if s["id"] == subscription_id))

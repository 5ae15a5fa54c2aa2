"""The push area of the GraphQL API over HTTP: the public VAPID key, subscribe / unsubscribe / test with
access checks, the validation codes (each refusal stores nothing), and the upsert rules."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import pytest

from csms.services.push_keys import load_key, public_key_b64
from csms.services.push_subscriptions import PushInputError, check_endpoint
from csms.store.apikeys import create_api_key
from tests.charging.support import codes, gql, rows
from tests.conftest import make_user
from tests.push.support import (
    MY_SUBSCRIPTIONS,
    SEND_TEST,
    SUBSCRIBE,
    UNSUBSCRIBE,
    new_subscription,
    subscribe,
    wait_messages,
)

if TYPE_CHECKING:
    from pathlib import Path

    import httpx

    from simulators.push_service import PushService
    from tests.conftest import Node


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def count(node: Node) -> int:
    [(n,)] = await rows(node.db, "SELECT count(*) FROM push_subscriptions")
    return int(n)


async def test_vapid_public_key_is_public_and_matches_the_key_file(pnode: Node, api: httpx.AsyncClient,
                                                                   vapid_key_file: Path) -> None:
    result = await gql(api, "{ vapidPublicKey }")
    assert result["data"]["vapidPublicKey"] == public_key_b64(load_key(vapid_key_file))
    assert len(base64.urlsafe_b64decode(result["data"]["vapidPublicKey"] + "=")) == 65


async def test_who_may_subscribe(pnode: Node, api: httpx.AsyncClient, push_service: PushService) -> None:
    sub = await new_subscription(push_service)
    variables = {"s": {"endpoint": sub["endpoint"], "keys": sub["keys"]}}
    admin_key = await pnode.db.run(create_api_key, "ops")
    for operation, args in ((SUBSCRIBE, variables), (UNSUBSCRIBE, {"e": sub["endpoint"]}), (SEND_TEST, {}),
                            (MY_SUBSCRIPTIONS, {})):
        assert codes(await gql(api, operation, args)) == ["UNAUTHENTICATED"]
        # An admin API key acts for no user: it has no browsers.
        assert codes(await gql(api, operation, args, token=admin_key)) == ["FORBIDDEN"]
    assert await count(pnode) == 0
    for role in ("driver", "owner", "admin"):
        _, token = await make_user(pnode.db, role)
        mine = await subscribe(api, token, push_service, f"{role} browser")
        devices = (await gql(api, MY_SUBSCRIPTIONS, token=token))["data"]["myPushSubscriptions"]
        assert [(d["userAgent"], d["endpointOrigin"]) for d in devices] == [(f"{role} browser", push_service.url)]
        assert mine["endpoint"] not in str(devices)  # the capability URL is never echoed
    assert await count(pnode) == 3


def bad_inputs(sub: dict[str, Any]) -> list[tuple[str, dict[str, Any], str]]:
    keys, endpoint = sub["keys"], sub["endpoint"]
    off_curve = b64(b"\x04" + b"\x01" * 64)
    return [
        ("plain http to another host", {"endpoint": "http://push.example.com/x", "keys": keys}, "INVALID_PUSH_ENDPOINT"),
        ("not a URL", {"endpoint": "push service", "keys": keys}, "INVALID_PUSH_ENDPOINT"),
        ("ftp", {"endpoint": "ftp://push.example.com/x", "keys": keys}, "INVALID_PUSH_ENDPOINT"),
        ("credentials", {"endpoint": "https://u:p@push.example.com/x", "keys": keys}, "INVALID_PUSH_ENDPOINT"),
        ("fragment", {"endpoint": "https://push.example.com/x#y", "keys": keys}, "INVALID_PUSH_ENDPOINT"),
        ("bad port", {"endpoint": "https://push.example.com:99999/x", "keys": keys}, "INVALID_PUSH_ENDPOINT"),
        ("too long", {"endpoint": "https://push.example.com/" + "x" * 2048, "keys": keys}, "INVALID_PUSH_ENDPOINT"),
        ("empty", {"endpoint": "", "keys": keys}, "INVALID_PUSH_ENDPOINT"),
        ("short p256dh", {"endpoint": endpoint, "keys": {**keys, "p256dh": b64(b"\x04" * 33)}}, "INVALID_PUSH_KEYS"),
        ("p256dh off the curve", {"endpoint": endpoint, "keys": {**keys, "p256dh": off_curve}}, "INVALID_PUSH_KEYS"),
        ("p256dh not base64url", {"endpoint": endpoint, "keys": {**keys, "p256dh": "+/" * 43}}, "INVALID_PUSH_KEYS"),
        ("auth of 15 bytes", {"endpoint": endpoint, "keys": {**keys, "auth": b64(b"a" * 15)}}, "INVALID_PUSH_KEYS"),
        ("auth empty", {"endpoint": endpoint, "keys": {**keys, "auth": ""}}, "INVALID_PUSH_KEYS"),
    ]


async def test_bad_subscriptions_get_typed_codes_and_store_nothing(pnode: Node, api: httpx.AsyncClient,
                                                                   push_service: PushService) -> None:
    _, token = await make_user(pnode.db)
    sub = await new_subscription(push_service)
    for label, subscription, code in bad_inputs(sub):
        result = await gql(api, SUBSCRIBE, {"s": subscription}, token=token)
        assert codes(result) == [code], label
    too_long_agent = await gql(api, SUBSCRIBE, {"s": {"endpoint": sub["endpoint"], "keys": sub["keys"]},
                                                "ua": "x" * 301}, token=token)
    assert codes(too_long_agent) == ["BAD_USER_INPUT"]
    assert codes(await gql(api, UNSUBSCRIBE, {"e": "x" * 2049}, token=token)) == ["INVALID_PUSH_ENDPOINT"]
    assert await count(pnode) == 0
    # Padded base64url keys are accepted and stored unpadded.
    padded = {"endpoint": sub["endpoint"], "keys": {"p256dh": sub["keys"]["p256dh"] + "=",
                                                    "auth": sub["keys"]["auth"] + "=="}}
    assert "errors" not in await gql(api, SUBSCRIBE, {"s": padded}, token=token)
    assert await rows(pnode.db, "SELECT p256dh, auth FROM push_subscriptions") == [
        (sub["keys"]["p256dh"], sub["keys"]["auth"])]


def test_production_endpoints_must_be_public_https_push_services() -> None:
    public = "https://fcm.googleapis.com/fcm/send/abc"
    assert check_endpoint(public, production=True) == public
    for endpoint in ("http://127.0.0.1:8090/push/x", "https://127.0.0.1/push/x", "https://10.1.2.3/x",
                     "https://[::1]/x", "https://localhost/x", "https://push.internal/x", "https://pushbox/x"):
        with pytest.raises(PushInputError) as refused:
            check_endpoint(endpoint, production=True)
        assert refused.value.code == "INVALID_PUSH_ENDPOINT", endpoint
    # Development allows plain http to loopback only (the local push service).
    assert check_endpoint("http://127.0.0.1:8090/push/x", production=False)
    assert check_endpoint("http://localhost:8090/push/x", production=False)
    allowed = ("fcm.googleapis.com", "push.services.mozilla.com")
    assert check_endpoint(public, production=True, allowed_hosts=allowed)
    assert check_endpoint("https://updates.push.services.mozilla.com/wpush/v2/x", production=True,
                          allowed_hosts=allowed)
    with pytest.raises(PushInputError):
        check_endpoint("https://evil-fcm.googleapis.com.example/x", production=True, allowed_hosts=allowed)


async def test_subscribe_is_an_upsert_and_an_endpoint_moves_to_its_new_user(
        pnode: Node, api: httpx.AsyncClient, push_service: PushService) -> None:
    first_id, first = await make_user(pnode.db)
    second_id, second = await make_user(pnode.db)
    sub = await subscribe(api, first, push_service, "v1")
    again = {"s": {"endpoint": sub["endpoint"], "keys": sub["keys"]}, "ua": "v2"}
    one = (await gql(api, SUBSCRIBE, again, token=first))["data"]["subscribePush"]
    two = (await gql(api, SUBSCRIBE, again, token=first))["data"]["subscribePush"]
    assert one["id"] == two["id"] and two["userAgent"] == "v2"
    assert await rows(pnode.db, "SELECT user_id::text FROM push_subscriptions") == [(first_id,)]
    # Another account logs in on the same browser: the endpoint is theirs now, never both users'.
    assert "errors" not in await gql(api, SUBSCRIBE, again, token=second)
    assert await rows(pnode.db, "SELECT user_id::text FROM push_subscriptions") == [(second_id,)]
    assert (await gql(api, MY_SUBSCRIPTIONS, token=first))["data"]["myPushSubscriptions"] == []
    # The first user cannot remove it any more; its owner can, once.
    assert (await gql(api, UNSUBSCRIBE, {"e": sub["endpoint"]}, token=first))["data"]["unsubscribePush"] is False
    assert (await gql(api, UNSUBSCRIBE, {"e": sub["endpoint"]}, token=second))["data"]["unsubscribePush"] is True
    assert (await gql(api, UNSUBSCRIBE, {"e": sub["endpoint"]}, token=second))["data"]["unsubscribePush"] is False
    assert await count(pnode) == 0


async def test_a_user_keeps_at_most_ten_browsers(pnode: Node, api: httpx.AsyncClient,
                                                 push_service: PushService) -> None:
    _, token = await make_user(pnode.db)
    for i in range(11):
        await subscribe(api, token, push_service, f"browser {i}")
    devices = (await gql(api, MY_SUBSCRIPTIONS, token=token))["data"]["myPushSubscriptions"]
    assert sorted(d["userAgent"] for d in devices) == sorted(f"browser {i}" for i in range(1, 11))


async def test_send_test_push(pnode: Node, api: httpx.AsyncClient, push_service: PushService) -> None:
    _, token = await make_user(pnode.db)
    assert codes(await gql(api, SEND_TEST, token=token)) == ["NO_PUSH_SUBSCRIPTION"]
    phone = await subscribe(api, token, push_service)
    assert (await gql(api, SEND_TEST, token=token))["data"]["sendTestPush"] == 1
    [message] = await wait_messages(push_service, phone["id"], 1)
    assert message["json"] == {"kind": "test", "title": "Test notification",
                               "body": "Push notifications work on this device.", "url": "/", "tag": "test"}
    for _ in range(3):  # five calls a minute, the refused first one included
        assert "errors" not in await gql(api, SEND_TEST, token=token)
    limited = await gql(api, SEND_TEST, token=token)
    assert codes(limited) == ["RATE_LIMITED"]
    assert limited["errors"][0]["extensions"]["retryAfterSeconds"] >= 1

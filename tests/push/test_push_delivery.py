"""Delivery against a push service that misbehaves: gone subscriptions are deleted, 429 and 5xx are retried
(Retry-After honoured), a service that is down or hangs never stops charging or billing, a full queue drops
and counts without logging endpoints, and subscriptions unused for 90 days are pruned."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import httpx
import trio

from csms.services.tariffs import Price, energy_cost
from simulators.push_service import PushService
from tests.charging.support import STOP, credit, gql, rows, setup_station, started, wait_session
from tests.conftest import charger, make_user, running_node
from tests.ledger_check import assert_ledger_clean
from tests.push.conftest import push_settings
from tests.push.support import (
    MY_SUBSCRIPTIONS,
    SEND_TEST,
    attempts,
    behave,
    messages,
    subscribe,
    wait_messages,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    import pytest

    from tests.conftest import Node


async def wait_for(predicate: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Poll an async predicate until it is true."""
    with trio.fail_after(timeout):
        while not await predicate():
            await trio.sleep(0.05)


async def subscription_count(node: Node, user_id: str) -> int:
    [(count,)] = await rows(node.db, "SELECT count(*) FROM push_subscriptions WHERE user_id = %s", user_id)
    return int(count)


async def test_404_and_410_delete_the_subscription(pnode: Node, api: httpx.AsyncClient,
                                                   push_service: PushService) -> None:
    user_id, token = await make_user(pnode.db)
    gone = await subscribe(api, token, push_service, "old phone")
    unknown = await subscribe(api, token, push_service, "old laptop")
    kept = await subscribe(api, token, push_service, "new phone")
    await behave(push_service, gone["id"], status=410)
    await behave(push_service, unknown["id"], status=404)
    assert (await gql(api, SEND_TEST, token=token))["data"]["sendTestPush"] == 3
    await wait_messages(push_service, kept["id"], 1)

    async def pruned() -> bool:
        return await subscription_count(pnode, user_id) == 1

    await wait_for(pruned)
    devices = (await gql(api, MY_SUBSCRIPTIONS, token=token))["data"]["myPushSubscriptions"]
    assert [d["userAgent"] for d in devices] == ["new phone"]
    # Each was tried once: a gone subscription is not retried.
    assert (await attempts(push_service, gone["id"]), await attempts(push_service, unknown["id"])) == (1, 1)


async def test_429_waits_for_retry_after_then_delivers(pnode: Node, api: httpx.AsyncClient,
                                                       push_service: PushService) -> None:
    _, token = await make_user(pnode.db)
    phone = await subscribe(api, token, push_service)
    await behave(push_service, phone["id"], status=429, retryAfter=1, times=1)
    began = trio.current_time()
    await gql(api, SEND_TEST, token=token)
    [message] = await wait_messages(push_service, phone["id"], 1)
    assert trio.current_time() - began >= 1.0
    assert message["json"]["kind"] == "test"
    assert await attempts(push_service, phone["id"]) == 2
    # A Retry-After beyond CSMS_PUSH_MAX_RETRY_AFTER gives the message up at once.
    assert pnode.csms.push is not None
    failed = pnode.csms.push.sender.failed
    await behave(push_service, phone["id"], status=429, retryAfter=3600)
    await gql(api, SEND_TEST, token=token)

    async def given_up() -> bool:
        assert pnode.csms.push is not None
        return pnode.csms.push.sender.failed == failed + 1

    await wait_for(given_up)
    assert await attempts(push_service, phone["id"]) == 3


async def test_server_errors_are_retried_three_times(pnode: Node, api: httpx.AsyncClient,
                                                     push_service: PushService) -> None:
    user_id, token = await make_user(pnode.db)
    phone = await subscribe(api, token, push_service)
    await behave(push_service, phone["id"], status=500, times=3)
    await gql(api, SEND_TEST, token=token)
    await wait_messages(push_service, phone["id"], 1)
    assert await attempts(push_service, phone["id"]) == 4  # the first try and three retries
    assert pnode.csms.push is not None
    sender = pnode.csms.push.sender
    failed = sender.failed
    await behave(push_service, phone["id"], status=503)
    await gql(api, SEND_TEST, token=token)

    async def given_up() -> bool:
        return sender.failed == failed + 1

    await wait_for(given_up)
    assert await attempts(push_service, phone["id"]) == 8
    assert len(await messages(push_service, phone["id"])) == 1
    assert await subscription_count(pnode, user_id) == 1  # a failing service does not cost the subscription


async def test_push_service_down_or_hanging_never_stops_charging(pnode: Node, api: httpx.AsyncClient,
                                                                 push_service: PushService) -> None:
    owner_id, owner_token = await make_user(pnode.db, "owner")
    await setup_station(pnode, "DOWN-1", per_kwh=900, owner_id=owner_id)
    driver_id, token = await make_user(pnode.db)
    await credit(pnode.db, driver_id, 300_000)
    # The driver's push service stops answering connections; the owner's accepts and never answers.
    async with trio.open_nursery() as nursery:
        doomed = PushService()
        await nursery.start(doomed.serve)
        await subscribe(api, token, doomed)
        nursery.cancel_scope.cancel()
    hanging = await subscribe(api, owner_token, push_service)
    await behave(push_service, hanging["id"], hang=True)
    async with charger(pnode, "DOWN-1", power_w=100_000, meter_interval_s=0.05):
        s = await started(api, token, "DOWN-1", 1, limit=100_000)
        await wait_session(api, token, s["id"], status="charging", energy_above=10)
        await gql(api, STOP, {"id": s["id"]}, token=token)
        done = await wait_session(api, token, s["id"], status="completed")
    assert done["chargedTyiyn"] == energy_cost(done["energyWh"], Price(900, 0)) > 0
    await assert_ledger_clean(pnode.db)
    assert pnode.csms.push is not None
    sender = pnode.csms.push.sender

    async def retried() -> bool:
        return sender.retries >= 2

    await wait_for(retried)  # it did try, and keeps trying in the background
    assert sender.sent == 0


async def test_full_queue_drops_counts_and_logs_no_endpoint(db_url: str, vapid_key_file: Path,
                                                            push_service: PushService,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    async with running_node(push_settings(db_url, vapid_key_file, queue_size=1, senders=1)) as node, \
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.ready.http_port}", timeout=15) as api:
        _, token = await make_user(node.db)
        subs = [await subscribe(api, token, push_service, f"browser {i}") for i in range(3)]
        for sub in subs:
            await behave(push_service, sub["id"], hang=True)
        with caplog.at_level(logging.INFO):
            queued = (await gql(api, SEND_TEST, token=token))["data"]["sendTestPush"]
            assert node.csms.push is not None
            assert queued + node.csms.push.sender.dropped == 3
            assert node.csms.push.sender.dropped >= 1
        assert "push queue full: dropped a test notification" in caplog.text
        for sub in subs:
            assert sub["endpoint"] not in caplog.text and sub["id"] not in caplog.text


async def test_unused_subscriptions_are_pruned(db_url: str, vapid_key_file: Path, push_service: PushService) -> None:
    async with running_node(push_settings(db_url, vapid_key_file, maintenance_interval_s=0.1)) as node, \
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.ready.http_port}", timeout=15) as api:
        user_id, token = await make_user(node.db)
        stale = await subscribe(api, token, push_service, "stale")
        used = await subscribe(api, token, push_service, "used")
        await rows(node.db, """UPDATE push_subscriptions SET last_used_at = now() - interval '91 days'
                               WHERE user_agent = 'stale' RETURNING 1""")
        await rows(node.db, """UPDATE push_subscriptions SET last_used_at = now() - interval '89 days'
                               WHERE user_agent = 'used' RETURNING 1""")
        await behave(push_service, stale["id"], status=500)  # never delivered, so never refreshed
        await gql(api, SEND_TEST, token=token)
        await wait_messages(push_service, used["id"], 1)

        async def settled() -> bool:
            found = await rows(node.db, """SELECT user_agent, last_used_at > now() - interval '1 minute'
                                           FROM push_subscriptions WHERE user_id = %s""", user_id)
            return found == [("used", True)]

        # The delivery refreshed "used" (written by maintenance), and "stale" went after 90 days.
        await wait_for(settled)

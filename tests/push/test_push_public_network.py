"""Push endpoints come from browsers: in production csms connects only to public addresses, checking
the address it resolved and then using that address (no window for DNS rebinding)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
import pytest
import trio
from cryptography.hazmat.primitives.asymmetric import ec

from csms.config import PushSettings
from csms.services.public_network import is_public, public_only_transport
from csms.services.push import PushService as CsmsPush
from csms.services.push_keys import VapidSigner
from csms.services.push_sender import Delivery, PushSender
from tests.push.conftest import FAST_PUSH, SUBJECT
from tests.push.support import attempts, new_subscription, wait_messages

if TYPE_CHECKING:
    from csms.store.db import Database
    from simulators.push_service import PushService

SETTINGS = replace(PushSettings(vapid_subject=SUBJECT), **FAST_PUSH)


@pytest.mark.parametrize(("address", "public"), [
    ("8.8.8.8", True), ("2001:4860:4860::8888", True),
    ("127.0.0.1", False), ("10.1.2.3", False), ("172.16.0.1", False), ("192.168.1.1", False),
    ("169.254.169.254", False),  # cloud metadata services
    ("100.64.0.1", False),  # carrier-grade NAT
    ("0.0.0.0", False), ("224.0.0.1", False), ("192.0.2.1", False),  # unspecified, multicast, documentation
    ("::1", False), ("fc00::1", False), ("fe80::1%eth0", False),
    ("::ffff:10.0.0.1", False), ("::ffff:8.8.8.8", True),  # IPv4-mapped: judged by the IPv4 address
])
def test_only_public_internet_addresses_are_public(address: str, public: bool) -> None:
    assert is_public(address) is public


async def _delivery(push_service: PushService, host: str | None = None) -> Delivery:
    """A subscription at the push service, named ``host`` (the service takes its origin from Host)."""
    if host is None:
        sub = await new_subscription(push_service)
    else:
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.post(f"{push_service.url}/subscriptions", json={},
                                       headers={"Host": f"{host}:{urlsplit(push_service.url).port}"})
            sub = response.json()
        assert urlsplit(sub["endpoint"]).hostname == host
    return Delivery(sub["id"], sub["endpoint"], sub["keys"]["p256dh"], sub["keys"]["auth"],
                    b'{"kind":"test"}', "normal", "test", "test")


async def _outcome(sender: PushSender, delivery: Delivery) -> str:
    async with trio.open_nursery() as nursery:
        await nursery.start(sender.run)
        assert sender.enqueue(delivery)
        with trio.fail_after(10):
            while sender.sent + sender.failed + sender.gone == 0:
                await trio.sleep(0.02)
        nursery.cancel_scope.cancel()
    return "sent" if sender.sent else "failed" if sender.failed else "gone"


def _signer() -> VapidSigner:
    return VapidSigner(ec.generate_private_key(ec.SECP256R1()), SUBJECT)


async def test_a_production_node_refuses_an_endpoint_on_a_private_address(db: Database,
                                                                          push_service: PushService) -> None:
    # The simulated push service listens on 127.0.0.1: a private address, as an attacker's name could
    # resolve to. Refused without a request, and not retried (the answer would not change).
    push = CsmsPush(db, SETTINGS, ec.generate_private_key(ec.SECP256R1()), None, public_only=True)
    delivery = await _delivery(push_service)
    assert await _outcome(push.sender, delivery) == "failed"
    assert push.sender.retries == 0
    assert await attempts(push_service, delivery.subscription_id) == 0


async def test_a_public_name_that_resolves_to_a_private_address_is_refused(db: Database,
                                                                           push_service: PushService) -> None:
    resolved: list[str] = []

    async def rebinding_dns(host: str, _port: int) -> list[str]:
        resolved.append(host)
        return ["127.0.0.1"]

    transport = public_only_transport(httpx.Limits(max_connections=2), rebinding_dns)
    delivery = await _delivery(push_service, "push.example.com")
    sender = PushSender(db, SETTINGS, _signer(), transport=transport)
    assert await _outcome(sender, delivery) == "failed"
    assert resolved == ["push.example.com"]
    assert await attempts(push_service, delivery.subscription_id) == 0


async def test_the_address_checked_is_the_address_connected_to(db: Database, push_service: PushService) -> None:
    # Only the addresses the guard resolved are tried, in order, skipping refused ones; the request
    # still names the endpoint's host (the push service checks the VAPID audience against it).
    # Loopback stands in for a public address here.
    async def dns(host: str, _port: int) -> list[str]:
        assert host == "push.example.com"
        return ["10.9.9.9", "127.0.0.1"]

    transport = public_only_transport(httpx.Limits(max_connections=2), dns, allow=lambda a: a == "127.0.0.1")
    delivery = await _delivery(push_service, "push.example.com")
    sender = PushSender(db, SETTINGS, _signer(), transport=transport)
    assert await _outcome(sender, delivery) == "sent"
    [message] = await wait_messages(push_service, delivery.subscription_id, 1)
    assert message["json"] == {"kind": "test"}

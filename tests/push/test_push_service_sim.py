"""The local push service is the tests' oracle, so it must refuse what a real push service refuses:
a bad or foreign VAPID signature, a wrong audience, an expired or over-long JWT, missing or malformed
headers, a body over 4 KB, a body it cannot decrypt, unknown and deleted subscriptions."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from pywebpush import WebPusher

from csms.services.push_keys import VapidSigner, public_key_b64
from tests.push.support import behave, new_subscription

if TYPE_CHECKING:
    from simulators.push_service import PushService

KEY = ec.generate_private_key(ec.SECP256R1())
SIGNER = VapidSigner(KEY, "mailto:ops@example.com")


def encrypt(sub: dict[str, Any], text: bytes = b'{"title":"hi"}') -> bytes:
    return bytes(WebPusher({"endpoint": sub["endpoint"], "keys": sub["keys"]}).encode(text, "aes128gcm")["body"])


async def post(sub: dict[str, Any], body: bytes, *, authorization: str | None = None,
               **headers: str) -> httpx.Response:
    origin = sub["endpoint"].split("/push/")[0]
    base = {"Authorization": authorization or SIGNER.authorization(origin), "TTL": "60",
            "Content-Encoding": "aes128gcm"}
    base.update({k.replace("_", "-"): v for k, v in headers.items()})
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.post(sub["endpoint"], content=body, headers={k: v for k, v in base.items() if v})


async def test_accepts_a_valid_message_and_decrypts_it(push_service: PushService) -> None:
    sub = await new_subscription(push_service, public_key_b64(KEY))
    response = await post(sub, encrypt(sub), Urgency="high", Topic="abc_DEF-1")
    assert response.status_code == 201
    [record] = push_service.received
    assert (record["payload"], record["json"], record["urgency"], record["topic"], record["ttl"]) == (
        '{"title":"hi"}', {"title": "hi"}, "high", "abc_DEF-1", 60)


async def test_refuses_what_a_real_push_service_refuses(push_service: PushService) -> None:
    sub = await new_subscription(push_service, public_key_b64(KEY))
    other = await new_subscription(push_service)
    origin = sub["endpoint"].split("/push/")[0]
    foreign = VapidSigner(ec.generate_private_key(ec.SECP256R1()), "mailto:x@example.com")
    expired = VapidSigner(KEY, "mailto:ops@example.com", clock=lambda: time.time() - 13 * 3600)
    too_long = jwt.encode({"aud": origin, "sub": "mailto:ops@example.com", "exp": int(time.time()) + 25 * 3600},
                          KEY, algorithm="ES256")
    no_sub = jwt.encode({"aud": origin, "exp": int(time.time()) + 600}, KEY, algorithm="ES256")
    k = public_key_b64(KEY)
    cases: list[tuple[str, dict[str, Any], bytes, int]] = [
        ("another key than applicationServerKey", {"authorization": foreign.authorization(origin)}, encrypt(sub), 403),
        ("wrong audience", {"authorization": SIGNER.authorization("http://push.example.com")}, encrypt(sub), 401),
        ("expired", {"authorization": expired.authorization(origin)}, encrypt(sub), 401),
        ("exp over 24 h ahead", {"authorization": f"vapid t={too_long},k={k}"}, encrypt(sub), 401),
        ("no sub claim", {"authorization": f"vapid t={no_sub},k={k}"}, encrypt(sub), 401),
        ("bearer scheme", {"authorization": f"Bearer {too_long}"}, encrypt(sub), 401),
        ("no TTL", {"TTL": ""}, encrypt(sub), 400),
        ("bad urgency", {"Urgency": "urgent"}, encrypt(sub), 400),
        ("bad topic", {"Topic": "x" * 33}, encrypt(sub), 400),
        ("old aesgcm encoding", {"Content_Encoding": "aesgcm"}, encrypt(sub), 415),
        ("over 4 KB", {}, encrypt(sub, b"x" * 4096), 413),
        ("encrypted for another browser", {}, encrypt(other), 400),
    ]
    for label, headers, body, status in cases:
        response = await post(sub, body, **headers)
        assert response.status_code == status, (label, response.text)
    assert push_service.received == []
    assert len(push_service.refusals) == len(cases)


async def test_unknown_deleted_and_told_subscriptions(push_service: PushService) -> None:
    sub = await new_subscription(push_service)
    async with httpx.AsyncClient(timeout=10) as http:
        assert (await http.post(f"{push_service.url}/push/nope", content=b"x")).status_code == 404
        await behave(push_service, sub["id"], status=429, retryAfter=7, times=1)
        told = await post(sub, encrypt(sub))
        assert (told.status_code, told.headers["retry-after"]) == (429, "7")
        assert (await post(sub, encrypt(sub))).status_code == 201
        assert (await http.delete(f"{push_service.url}/subscriptions/{sub['id']}")).status_code == 204
        assert (await post(sub, encrypt(sub))).status_code == 410
        page = (await http.get(push_service.url + "/")).text
    assert "Notifications (1)" in page and "hi" in page

"""The ``invoiceUpdated`` subscription over graphql-transport-ws: a driver watches the QR invoice get paid."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.api.ws_client import WsClient, error_codes
from tests.conftest import make_user
from tests.payments.support import DOCUMENT, top_up

if TYPE_CHECKING:
    import httpx

    from simulators.payment_provider import PaymentSandbox
    from tests.conftest import Node


async def _subscribe(ws: WsClient, invoice_id: str) -> None:
    await ws.send_json({"id": "i", "type": "subscribe", "payload": {
        "query": DOCUMENT, "operationName": "InvoiceUpdated", "variables": {"id": invoice_id}}})


async def test_invoice_updated_until_paid(pnode: Node, api: httpx.AsyncClient, sandbox: PaymentSandbox) -> None:
    _, token = await make_user(pnode.db)
    created = await top_up(api, token, 30_000)
    async with WsClient.connect(pnode.graphql_url.replace("http://", "ws://")) as ws:
        await ws.init({"Authorization": f"Bearer {token}"})
        await _subscribe(ws, created["id"])
        first = (await ws.next_data("i"))["invoiceUpdated"]
        assert (first["id"], first["status"], first["creditedTyiyn"]) == (created["id"], "PENDING", 0)
        await ws.subscribe("b", "subscription { balanceChanged { availableTyiyn heldTyiyn } }")
        assert await ws.next_data("b") == {"balanceChanged": {"availableTyiyn": 0, "heldTyiyn": 0}}
        sandbox.approve(created["id"])
        # One message on each subscription, in either order.
        seen: dict[str, dict[str, object]] = {}
        while len(seen) < 2:
            message = await ws.receive_json()
            assert message["type"] == "next" and "errors" not in message["payload"], message
            seen[message["id"]] = message["payload"]["data"]
    paid = seen["i"]["invoiceUpdated"]
    assert (paid["status"], paid["creditedTyiyn"], paid["flags"]) == ("PAID", 30_000, [])  # type: ignore[index]
    assert seen["b"] == {"balanceChanged": {"availableTyiyn": 30_000, "heldTyiyn": 0}}


async def test_invoice_updated_is_for_its_owner(pnode: Node, api: httpx.AsyncClient) -> None:
    _, token = await make_user(pnode.db)
    created = await top_up(api, token, 1_000)
    _, other = await make_user(pnode.db)
    ws_url = pnode.graphql_url.replace("http://", "ws://")
    for payload, invoice_id, code in [({"Authorization": f"Bearer {other}"}, created["id"], "FORBIDDEN"),
                                      ({}, created["id"], "UNAUTHENTICATED"),
                                      ({"Authorization": f"Bearer {token}"}, "nope", "NOT_FOUND")]:
        async with WsClient.connect(ws_url) as ws:
            await ws.init(payload)
            await _subscribe(ws, invoice_id)
            assert error_codes(await ws.receive_json()) == [code]
    _, admin = await make_user(pnode.db, "admin")
    async with WsClient.connect(ws_url) as ws:
        await ws.init({"Authorization": f"Bearer {admin}"})
        await _subscribe(ws, created["id"])
        assert (await ws.next_data("i"))["invoiceUpdated"]["status"] == "PENDING"

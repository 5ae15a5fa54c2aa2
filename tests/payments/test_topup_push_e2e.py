"""Issue #4 end to end: a driver tops up by QR through the sandbox provider, the signed webhook credits
the wallet, the driver's open ``balanceChanged`` subscription sees the credit, and the browser gets a
"payment confirmed" web push, decrypted by the local push service exactly as a browser would.

Every part is real: the csms node, the sandbox provider's HTTP API and pay page, its signed webhook,
the graphql-transport-ws socket, and the push service that checks the VAPID signature and decrypts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import trio

from csms.config import PushSettings
from tests.api.ws_client import WsClient
from tests.conftest import make_user
from tests.ledger_check import assert_ledger_clean
from tests.payments.conftest import payment_node
from tests.payments.support import top_up, wait_status

# The push tests' fixtures are used here as well: a real push service and a session VAPID key.
from tests.push.conftest import FAST_PUSH, SUBJECT, push_service, vapid_key_file  # noqa: F401
from tests.push.support import notes, subscribe, wait_messages

if TYPE_CHECKING:
    from pathlib import Path

    from simulators.payment_provider import PaymentSandbox
    from simulators.push_service import PushService


async def test_top_up_credits_once_with_balance_event_and_push(
    db_url: str, sandbox: PaymentSandbox, push_service: PushService, vapid_key_file: Path  # noqa: F811
) -> None:
    push = PushSettings(vapid_private_key_file=vapid_key_file, vapid_subject=SUBJECT, **FAST_PUSH)
    async with payment_node(db_url, sandbox, settings={"push": push}) as node, \
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.ready.http_port}", timeout=15) as api:
        _, token = await make_user(node.db)
        phone = await subscribe(api, token, push_service)
        created = await top_up(api, token, 123_450)

        async with WsClient.connect(node.graphql_url.replace("http://", "ws://")) as ws:
            await ws.init({"Authorization": f"Bearer {token}"})
            await ws.subscribe("b", "subscription { balanceChanged { availableTyiyn heldTyiyn } }")
            assert await ws.next_data("b") == {"balanceChanged": {"availableTyiyn": 0, "heldTyiyn": 0}}

            # The payer presses Approve on the provider's pay page; the provider sends its signed webhook,
            # and (a common provider habit) sends it again.
            sandbox.faults.duplicate = True
            at_provider = sandbox.find(created["id"])
            async with httpx.AsyncClient(timeout=10) as http:
                approved = await http.post(f"{sandbox.url}/sandbox/invoices/{at_provider.invoice_id}/approve",
                                           json={})
                assert approved.status_code == 200, approved.text
            paid = await wait_status(node.db, created["id"], "paid")
            assert paid.credited_tyiyn == 123_450

            with trio.fail_after(10):
                while True:
                    data = await ws.next_data("b")
                    if data["balanceChanged"]["availableTyiyn"] == 123_450:
                        break
            assert data == {"balanceChanged": {"availableTyiyn": 123_450, "heldTyiyn": 0}}

        received = await wait_messages(push_service, phone["id"], 1, kind="payment_confirmed")
        assert notes(received) == [{
            "kind": "payment_confirmed", "title": "Payment confirmed",
            "body": "1,234.50 som added. Balance: 1,234.50 som.", "url": "/wallet", "tag": f"invoice-{created['id']}",
        }]
        me = (await api.post("/graphql", json={"query": "{ me { balanceTyiyn } }"},
                             headers={"Authorization": f"Bearer {token}"})).json()
        assert me == {"data": {"me": {"balanceTyiyn": 123_450}}}
        # The duplicate webhook credited nothing more and pushed nothing more.
        await trio.sleep(0.5)
        assert len([m for m in notes(await wait_messages(push_service, phone["id"], 1))
                    if m["kind"] == "payment_confirmed"]) == 1
        await assert_ledger_clean(node.db)

"""Every money-moving mutation reads ``Idempotency-Key`` the same way (``csms.api.idempotency_keys``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.api.conftest import error_codes, gql
from tests.conftest import make_user

if TYPE_CHECKING:
    import httpx

    from tests.conftest import Node

UUID = "00000000-0000-0000-0000-000000000001"
MONEY_MOVING = {
    "topUp": "mutation { topUp(amountTyiyn: 100) { id } }",
    "refundTopUp": f'mutation {{ refundTopUp(invoiceId: "{UUID}", amountTyiyn: 1, reason: "r") {{ applied }} }}',
    "startCharging": 'mutation { startCharging(input: {stationId: "CP-1", connectorId: 1, limitTyiyn: 100}) { id } }',
    "stopCharging": f'mutation {{ stopCharging(sessionId: "{UUID}") {{ id }} }}',
    "adjustBalance": f'mutation {{ adjustBalance(userId: "{UUID}", amountTyiyn: 1, reason: "r") {{ applied }} }}',
}


@pytest.mark.parametrize("field", sorted(MONEY_MOVING))
@pytest.mark.parametrize("key", ["k" * 201, ""])
async def test_malformed_keys_are_refused_the_same_way(pnode: Node, api: httpx.AsyncClient, field: str,
                                                       key: str) -> None:
    _, admin = await make_user(pnode.db, "admin")  # an admin user may call every one of them
    response = await api.post("/graphql", json={"query": MONEY_MOVING[field]},
                                 headers={"Authorization": f"Bearer {admin}", "Idempotency-Key": key})
    body = response.json()
    assert error_codes(body) == ["BAD_USER_INPUT"], body
    assert "Idempotency-Key" in body["errors"][0]["message"]
    # Without the bad header the same call gets past the key (and fails for its own reasons, if any).
    plain = await gql(api, MONEY_MOVING[field], token=admin)
    assert "BAD_USER_INPUT" not in error_codes(plain) or "Idempotency-Key" not in str(plain)

"""Who may call each field of the wallet area: every caller kind against every field."""

from __future__ import annotations

from typing import TYPE_CHECKING

from csms.store import ledger
from csms.store.apikeys import create_api_key
from tests.api.conftest import error_codes, gql
from tests.conftest import make_user
from tests.ledger_check import assert_ledger_clean

if TYPE_CHECKING:
    import httpx

    from csms.store.db import Database

PERIOD = 'from: "2026-01-01T00:00:00Z", to: "2027-01-01T00:00:00Z"'
FIELDS = {
    "myWallet": "{ myWallet { availableTyiyn } }",
    "myWalletHistory": "{ myWalletHistory { pageInfo { hasNextPage } } }",
    "wallet": "query($u: ID!) { wallet(userId: $u) { availableTyiyn history { pageInfo { hasNextPage } } } }",
    "auditLog": "{ auditLog { pageInfo { hasNextPage } } }",
    "myRevenue": f"{{ myRevenue({PERIOD}) {{ revenueTyiyn sessions }} }}",
    "adjustBalance": 'mutation($u: ID!) { adjustBalance(userId: $u, amountTyiyn: 1, reason: "x") { applied } }',
}
OK = None
# field -> caller -> expected error code (None: allowed)
EXPECTED = {
    "myWallet": {"anonymous": "UNAUTHENTICATED", "bad token": "UNAUTHENTICATED", "driver": OK, "owner": OK,
                 "owner key": OK, "admin user": OK, "admin key": "FORBIDDEN"},
    "myWalletHistory": {"anonymous": "UNAUTHENTICATED", "bad token": "UNAUTHENTICATED", "driver": OK, "owner": OK,
                        "owner key": OK, "admin user": OK, "admin key": "FORBIDDEN"},
    "wallet": {"anonymous": "UNAUTHENTICATED", "bad token": "UNAUTHENTICATED", "driver": "FORBIDDEN",
               "owner": "FORBIDDEN", "owner key": "FORBIDDEN", "admin user": OK, "admin key": OK},
    "auditLog": {"anonymous": "UNAUTHENTICATED", "bad token": "UNAUTHENTICATED", "driver": "FORBIDDEN",
                 "owner": "FORBIDDEN", "owner key": "FORBIDDEN", "admin user": OK, "admin key": OK},
    "myRevenue": {"anonymous": "UNAUTHENTICATED", "bad token": "UNAUTHENTICATED", "driver": "FORBIDDEN",
                  "owner": OK, "owner key": OK, "admin user": OK, "admin key": "BAD_USER_INPUT"},
    "adjustBalance": {"anonymous": "UNAUTHENTICATED", "bad token": "UNAUTHENTICATED", "driver": "FORBIDDEN",
                      "owner": "FORBIDDEN", "owner key": "FORBIDDEN", "admin user": OK, "admin key": OK},
}


async def test_every_field_checks_who_is_asking(client: httpx.AsyncClient, db: Database, token: str) -> None:
    target, _ = await make_user(db)
    _, driver = await make_user(db, "driver")
    owner_id, owner = await make_user(db, "owner")
    _, admin = await make_user(db, "admin")
    owner_key = await db.run(create_api_key, "owner dashboard", role="owner", user_id=owner_id)
    callers: dict[str, str | None] = {"anonymous": None, "bad token": "not-a-token", "driver": driver,
                                      "owner": owner, "owner key": owner_key, "admin user": admin, "admin key": token}
    failures = []
    for field, query in FIELDS.items():
        for caller, credential in callers.items():
            result = await gql(client, query, {"u": target} if "$u" in query else None, token=credential)
            expected = EXPECTED[field][caller]
            got = error_codes(result) or [None]
            if got != [expected] or (expected is None and not result["data"]):
                failures.append(f"{field} as {caller}: expected {expected}, got {got}")
    assert failures == []
    # Exactly the two admins' adjustments went through.
    assert await db.run(ledger.wallet_available, target) == 2
    await assert_ledger_clean(db)

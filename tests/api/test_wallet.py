"""The wallet area through the real app over HTTP: adjustments, wallets, history, revenue, audit log."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from csms.store import ledger
from tests.api.conftest import document, error_codes
from tests.conftest import TEST_SIGNER, make_user
from tests.ledger_check import assert_ledger_clean
from tests.ledger_scenarios import fund, insert_session, owner_account

if TYPE_CHECKING:
    import httpx

    from csms.store.db import Conn, Database

DOC = document("wallet.graphql")


async def call(client: httpx.AsyncClient, operation: str, variables: dict[str, Any] | None = None, *,
               token: str | None = None, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Run one operation of graphql/wallet.graphql, with optional extra HTTP headers."""
    sent = dict(headers or {})
    if token:
        sent["Authorization"] = f"Bearer {token}"
    response = await client.post("/graphql", json={"query": DOC, "variables": variables or {},
                                                   "operationName": operation}, headers=sent)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def adjust(client: httpx.AsyncClient, token: str, user_id: str, amount: int, reason: str = "goodwill",
                 key: str | None = None) -> dict[str, Any]:
    return await call(client, "AdjustBalance", {"userId": user_id, "amountTyiyn": amount, "reason": reason},
                      token=token, headers={"Idempotency-Key": key} if key is not None else None)


async def test_adjust_then_read_the_wallet_history_and_audit_log(client: httpx.AsyncClient, db: Database,
                                                                  token: str) -> None:
    user, user_token = await make_user(db)
    credit = await adjust(client, token, user, 5_000, "welcome bonus")
    assert "errors" not in credit, credit
    payload = credit["data"]["adjustBalance"]
    assert payload["applied"] is True
    assert payload["wallet"] == {"userId": user, "availableTyiyn": 5_000, "heldTyiyn": 0, "postedTyiyn": 5_000}
    debit = await adjust(client, token, user, -1_200, "charged twice by mistake")
    assert debit["data"]["adjustBalance"]["wallet"]["availableTyiyn"] == 3_800

    admin_view = await call(client, "Wallet", {"userId": user}, token=token)
    wallet = admin_view["data"]["wallet"]
    assert wallet["availableTyiyn"] == 3_800
    entries = [e["node"] for e in wallet["history"]["edges"]]
    assert [(e["kind"], e["amountTyiyn"], e["settled"], e["counterparty"], e["reason"]) for e in entries] == [
        ("TRANSFER", -1_200, True, "ADJUSTMENTS", "charged twice by mistake"),
        ("TRANSFER", 5_000, True, "ADJUSTMENTS", "welcome bonus"),
    ]
    assert entries[0]["id"] == debit["data"]["adjustBalance"]["transferId"]
    # The driver sees the same, as their own.
    mine = await call(client, "MyWalletHistory", token=user_token)
    assert [e["node"] for e in mine["data"]["myWalletHistory"]["edges"]] == entries

    log = await call(client, "AuditLog", token=token)
    records = [e["node"] for e in log["data"]["auditLog"]["edges"]]
    assert [(r["actorKind"], r["action"], r["target"], r["detail"]["amount_tyiyn"]) for r in records] == [
        ("api_key", "ledger.adjust", user, -1_200), ("api_key", "ledger.adjust", user, 5_000)]
    assert records[0]["detail"]["reason"] == "charged twice by mistake"
    await assert_ledger_clean(db)


async def test_an_admin_user_adjusts_as_themself(client: httpx.AsyncClient, db: Database) -> None:
    admin, admin_token = await make_user(db, "admin")
    user, _ = await make_user(db)
    result = await adjust(client, admin_token, user, 300)
    assert result["data"]["adjustBalance"]["wallet"]["availableTyiyn"] == 300
    log = await call(client, "AuditLog", token=admin_token)
    node = log["data"]["auditLog"]["edges"][0]["node"]
    assert (node["actorKind"], node["actorId"]) == ("user", admin)
    await assert_ledger_clean(db)


async def test_an_idempotency_key_makes_a_retry_harmless(client: httpx.AsyncClient, db: Database,
                                                         token: str) -> None:
    user, _ = await make_user(db)
    first = await adjust(client, token, user, 2_000, key="retry-me")
    again = await adjust(client, token, user, 2_000, key="retry-me")
    assert first["data"]["adjustBalance"]["applied"] is True
    assert again["data"]["adjustBalance"]["applied"] is False
    assert again["data"]["adjustBalance"]["transferId"] == first["data"]["adjustBalance"]["transferId"]
    assert again["data"]["adjustBalance"]["wallet"]["availableTyiyn"] == 2_000
    reused = await adjust(client, token, user, 3_000, key="retry-me")
    assert error_codes(reused) == ["IDEMPOTENCY_KEY_REUSED"]
    # Another key, and no key at all, are new adjustments.
    await adjust(client, token, user, 1, key="another")
    await adjust(client, token, user, 1)
    await adjust(client, token, user, 1)
    assert await db.run(ledger.wallet_available, user) == 2_003
    log = await call(client, "AuditLog", token=token)
    assert len(log["data"]["auditLog"]["edges"]) == 4
    await assert_ledger_clean(db)


REFUSALS: list[tuple[dict[str, Any], str]] = [
    ({"amountTyiyn": 0}, "BAD_USER_INPUT"),
    ({"amountTyiyn": 10_000_001}, "BAD_USER_INPUT"),
    ({"amountTyiyn": -10_000_001}, "BAD_USER_INPUT"),
    ({"reason": ""}, "BAD_USER_INPUT"),
    ({"reason": "  "}, "BAD_USER_INPUT"),
    ({"reason": "r" * 501}, "BAD_USER_INPUT"),
    ({"userId": "not-a-uuid"}, "BAD_USER_INPUT"),
    ({"userId": str(uuid.UUID(int=1))}, "NOT_FOUND"),
    ({"amountTyiyn": -501}, "INSUFFICIENT_BALANCE"),
]


async def test_refused_adjustments_change_nothing(client: httpx.AsyncClient, db: Database, token: str) -> None:
    user, _ = await make_user(db)
    await db.run(fund, user, 500)
    for variables, code in REFUSALS:
        sent = {"userId": user, "amountTyiyn": 100, "reason": "test"} | variables
        result = await call(client, "AdjustBalance", sent, token=token)
        assert error_codes(result) == [code], variables
        assert result["data"] is None
    # Not Longs at all: the schema refuses them before any resolver runs.
    for amount in (1.5, "100", True, 2**53):
        result = await call(client, "AdjustBalance", {"userId": user, "amountTyiyn": amount, "reason": "r"},
                            token=token)
        assert "errors" in result, amount
        assert result.get("data") is None
    assert await db.run(ledger.wallet_available, user) == 500
    assert await db.run(lambda conn: conn.execute("SELECT count(*) FROM audit_log").fetchone()) == (0,)
    await assert_ledger_clean(db)


async def test_an_idempotency_key_that_is_too_long(client: httpx.AsyncClient, db: Database,
                                                              token: str) -> None:
    user, _ = await make_user(db)
    assert error_codes(await adjust(client, token, user, 5, key="k" * 201)) == ["BAD_USER_INPUT"]


async def test_my_wallet_counts_holds_and_history_pages_through_every_kind(client: httpx.AsyncClient,
                                                                           db: Database) -> None:
    driver, driver_token = await make_user(db)
    other, _ = await make_user(db)
    _, revenue = await owner_account(db)

    def scenario(conn: Conn) -> None:
        fund(conn, driver, 20_000)
        fund(conn, other, 1_000)  # not the driver's: never in their history
        wallet = ledger.user_account(conn, driver)
        ledger.hold(conn, "h1", wallet, revenue, 6_000, reason="charging")
        ledger.post(conn, "p1", "h1", 4_321, reason="charging")
        ledger.hold(conn, "h2", wallet, revenue, 3_000, reason="charging")
        ledger.void(conn, "v2", "h2", reason="charger did not start")
        ledger.hold(conn, "h3", wallet, revenue, 5_000, reason="charging")

    await db.run(scenario)
    mine = await call(client, "MyWallet", token=driver_token)
    assert mine["data"]["myWallet"] == {"userId": driver, "availableTyiyn": 20_000 - 4_321 - 5_000,
                                        "heldTyiyn": 5_000, "postedTyiyn": 20_000 - 4_321}
    seen: list[dict[str, Any]] = []
    after = None
    pages = 0
    while True:
        page = await call(client, "MyWalletHistory", {"first": 2, "after": after}, token=driver_token)
        connection = page["data"]["myWalletHistory"]
        seen += [e["node"] for e in connection["edges"]]
        pages += 1
        if not connection["pageInfo"]["hasNextPage"]:
            break
        after = connection["pageInfo"]["endCursor"]
    assert pages == 3
    # One transaction wrote all six at the same instant, so within it the order is by id.
    by_id = {e["id"]: e for e in seen}
    assert len(seen) == len(by_id) == 6
    assert [(by_id[i]["kind"], by_id[i]["amountTyiyn"], by_id[i]["settled"], by_id[i]["holdId"])
            for i in ("h1", "p1", "h2", "v2", "h3")] == [
        ("HOLD", -6_000, False, None), ("POST", -4_321, True, "h1"), ("HOLD", -3_000, False, None),
        ("VOID", 3_000, False, "h2"), ("HOLD", -5_000, False, None)]
    assert {by_id[i]["counterparty"] for i in ("h1", "p1", "v2")} == {"OWNER_REVENUE"}
    assert sum(e["amountTyiyn"] for e in seen if e["settled"]) == mine["data"]["myWallet"]["postedTyiyn"]
    times = [(e["createdAt"], e["id"]) for e in seen]
    assert times == sorted(times, reverse=True)
    await assert_ledger_clean(db)


async def test_history_arguments_are_checked(client: httpx.AsyncClient, db: Database) -> None:
    _, driver_token = await make_user(db)
    for variables in ({"first": 0}, {"first": 101}, {"after": "garbage"}, {"after": "d2g6bm90LWEtdGltZXxp"}):
        result = await call(client, "MyWalletHistory", variables, token=driver_token)
        assert error_codes(result) == ["BAD_USER_INPUT"], variables
    empty = await call(client, "MyWalletHistory", token=driver_token)
    assert empty["data"]["myWalletHistory"] == {"edges": [], "pageInfo": {"hasNextPage": False, "endCursor": None}}
    fresh = await call(client, "MyWallet", token=driver_token)
    assert fresh["data"]["myWallet"]["availableTyiyn"] == 0


async def test_audit_log_pages(client: httpx.AsyncClient, db: Database, token: str) -> None:
    user, _ = await make_user(db)
    for amount in (1, 2, 3):
        await adjust(client, token, user, amount)
    first = await call(client, "AuditLog", {"first": 2}, token=token)
    connection = first["data"]["auditLog"]
    assert [e["node"]["detail"]["amount_tyiyn"] for e in connection["edges"]] == [3, 2]
    assert connection["pageInfo"]["hasNextPage"] is True
    rest = await call(client, "AuditLog", {"first": 2, "after": connection["pageInfo"]["endCursor"]}, token=token)
    assert [e["node"]["detail"]["amount_tyiyn"] for e in rest["data"]["auditLog"]["edges"]] == [1]
    assert rest["data"]["auditLog"]["pageInfo"]["hasNextPage"] is False
    bad = await call(client, "AuditLog", {"after": "bm9wZQ=="}, token=token)
    assert error_codes(bad) == ["BAD_USER_INPUT"]


async def test_owner_revenue(client: httpx.AsyncClient, db: Database, token: str) -> None:
    owner, revenue = await owner_account(db)
    owner_token = TEST_SIGNER.issue(owner, "owner")
    driver, _ = await make_user(db)

    def scenario(conn: Conn) -> None:
        fund(conn, driver, 100_000)
        insert_session(conn, user_id=driver, revenue_account=revenue, energy_wh=10_000, price_per_kwh=1_000,
                       hold=20_000, charged=10_000, settle=10_000)
        insert_session(conn, user_id=driver, revenue_account=revenue, energy_wh=2_500, price_per_kwh=1_000,
                       hold=20_000, charged=2_500, settle=2_500)
        insert_session(conn, user_id=driver, revenue_account=revenue, status="failed", settle=0)
        insert_session(conn, user_id=driver, revenue_account=revenue, status="charging")
        # A credit that is not a session (say, a goodwill payment to the owner) is revenue too.
        ledger.transfer(conn, "bonus", ledger.system_account(conn, ledger.ADJUSTMENTS), revenue, 77)

    await db.run(scenario)
    now = datetime.now(UTC)
    period = {"from": (now - timedelta(days=1)).isoformat(), "to": (now + timedelta(days=1)).isoformat()}
    mine = await call(client, "MyRevenue", period, token=owner_token)
    assert "errors" not in mine, mine
    assert mine["data"]["myRevenue"]["revenueTyiyn"] == 12_577
    assert mine["data"]["myRevenue"]["sessions"] == 2
    assert mine["data"]["myRevenue"]["ownerId"] == owner
    # Their own id is fine; an admin names any owner.
    assert (await call(client, "MyRevenue", period | {"ownerId": owner}, token=owner_token))["data"]
    by_admin = await call(client, "MyRevenue", period | {"ownerId": owner}, token=token)
    assert by_admin["data"]["myRevenue"] == mine["data"]["myRevenue"]
    earlier = {"from": "2020-01-01T00:00:00Z", "to": "2020-02-01T00:00:00"}
    empty = await call(client, "MyRevenue", earlier, token=owner_token)
    assert (empty["data"]["myRevenue"]["revenueTyiyn"], empty["data"]["myRevenue"]["sessions"]) == (0, 0)
    assert empty["data"]["myRevenue"]["to"] == "2020-02-01T00:00:00+00:00"

    other_owner, _ = await make_user(db, "owner")
    refusals = [
        (owner_token, period | {"ownerId": other_owner}, "FORBIDDEN"),
        (token, period, "BAD_USER_INPUT"),  # an admin API key is nobody's owner
        (token, period | {"ownerId": str(uuid.UUID(int=7))}, "NOT_FOUND"),
        (token, period | {"ownerId": "x"}, "BAD_USER_INPUT"),
        (owner_token, {"from": period["to"], "to": period["from"]}, "BAD_USER_INPUT"),
    ]
    for who, variables, code in refusals:
        assert error_codes(await call(client, "MyRevenue", variables, token=who)) == [code], variables
    await assert_ledger_clean(db)



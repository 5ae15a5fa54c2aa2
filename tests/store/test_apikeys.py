"""Operator API keys in the store: format, verification, revocation, last_used_at throttling."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from csms.store.apikeys import create_api_key, list_api_keys, parse_token, revoke_api_key, verify_api_key

if TYPE_CHECKING:
    import psycopg

    from csms.store.db import Database


async def test_create_and_verify(db: Database) -> None:
    token = await db.run(create_api_key, "ops laptop")
    parsed = parse_token(token)
    assert parsed is not None
    prefix, secret = parsed
    assert token == f"csms_{prefix}_{secret}"
    assert len(prefix) == 8
    assert len(secret) == 43
    info = await db.run(verify_api_key, token)
    assert info is not None
    assert info.name == "ops laptop"
    assert info.role == "admin"
    assert info.prefix == prefix
    assert info.last_used_at is not None

    def stored(conn: psycopg.Connection[Any]) -> tuple[Any, ...]:
        row = conn.execute("SELECT prefix, secret_sha256 FROM api_keys").fetchone()
        assert row is not None
        return tuple(row)

    row = await db.run(stored)
    assert row[0] == prefix
    assert secret.encode() not in bytes(row[1])


@pytest.mark.parametrize("token", ["", "csms", "csms__", "x" * 1000, "csms_abc_def", "csms_ABCDEFGH_" + "é" * 43])
async def test_malformed_tokens_are_rejected_quietly(db: Database, token: str) -> None:
    assert await db.run(verify_api_key, token) is None


async def test_revoke(db: Database) -> None:
    token = await db.run(create_api_key, "temp")
    parsed = parse_token(token)
    assert parsed is not None
    assert await db.run(revoke_api_key, parsed[0]) is True
    assert await db.run(revoke_api_key, parsed[0]) is True  # idempotent
    assert await db.run(revoke_api_key, "nope") is False
    assert await db.run(verify_api_key, token) is None
    [key] = await db.run(list_api_keys)
    assert key.revoked_at is not None


async def test_last_used_at_written_at_most_once_a_minute(db: Database) -> None:
    token = await db.run(create_api_key, "busy")
    first = await db.run(verify_api_key, token)
    second = await db.run(verify_api_key, token)
    assert first is not None
    assert second is not None
    assert second.last_used_at == first.last_used_at

    def age(conn: psycopg.Connection[Any]) -> None:
        conn.execute("UPDATE api_keys SET last_used_at = last_used_at - interval '2 minutes'")

    await db.run(age)
    third = await db.run(verify_api_key, token)
    assert third is not None
    assert third.last_used_at is not None
    assert first.last_used_at is not None
    assert third.last_used_at >= first.last_used_at  # refreshed from the aged value


async def test_name_is_checked(db: Database) -> None:
    with pytest.raises(ValueError, match="1 to 100"):
        await db.run(create_api_key, "  ")

"""graphql-core's concurrent gather, replaced for Trio (csms.api.trio_gather)."""

from __future__ import annotations

import pytest
import trio

import graphql
from csms.api import trio_gather
from graphql import graphql as execute_graphql


def make_schema(log: list[str]) -> graphql.GraphQLSchema:
    async def slow(_root: object, _info: object) -> str:
        log.append("slow started")
        await trio.sleep(0.05)
        log.append("slow done")
        return "slow"

    async def fast(_root: object, _info: object) -> str:
        log.append("fast started")
        return "fast"

    async def boom(_root: object, _info: object) -> str:
        await trio.sleep(0)
        raise ValueError("boom")

    async def items(_root: object, _info: object) -> list[object]:
        async def item(i: int) -> int:
            await trio.sleep(0.01 * (3 - i))  # finish in reverse order; results must keep list order
            return i

        return [item(i) for i in range(3)]

    return graphql.GraphQLSchema(
        graphql.GraphQLObjectType(
            "Query",
            {
                "slow": graphql.GraphQLField(graphql.GraphQLString, resolve=slow),
                "fast": graphql.GraphQLField(graphql.GraphQLString, resolve=fast),
                "boom": graphql.GraphQLField(graphql.GraphQLString, resolve=boom),
                "items": graphql.GraphQLField(graphql.GraphQLList(graphql.GraphQLInt), resolve=items),
            },
        )
    )


@pytest.fixture(autouse=True)
def _installed() -> None:
    trio_gather.install()


def test_install_is_idempotent() -> None:
    trio_gather.install()
    trio_gather.install()
    assert trio_gather.installed()


async def test_sibling_fields_run_concurrently_and_list_keeps_order() -> None:
    log: list[str] = []
    result = await execute_graphql(make_schema(log), "{ slow fast items }")
    assert result.errors is None
    assert result.data == {"slow": "slow", "fast": "fast", "items": [0, 1, 2]}
    # fast started before slow finished: the siblings really ran side by side.
    assert log.index("fast started") < log.index("slow done")


async def test_error_in_one_field_is_located_and_siblings_still_resolve() -> None:
    result = await execute_graphql(make_schema([]), "{ fast boom items }")
    assert result.data == {"fast": "fast", "boom": None, "items": [0, 1, 2]}
    assert result.errors is not None
    [error] = result.errors
    assert error.message == "boom"
    assert error.path == ["boom"]


async def test_first_error_cancels_the_rest() -> None:
    cancelled = trio.Event()

    async def waits_forever() -> None:
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()

    async def fails() -> None:
        await trio.sleep(0)
        raise KeyError("first")

    with pytest.raises(KeyError):
        await trio_gather.trio_gather_with_cancel(waits_forever(), fails())
    assert cancelled.is_set()


async def test_outer_cancellation_passes_through() -> None:
    with trio.move_on_after(0.01) as scope:
        await trio_gather.trio_gather_with_cancel(trio.sleep_forever(), trio.sleep_forever())
    assert scope.cancelled_caught

"""Make graphql-core run concurrent resolvers under Trio.

graphql-core 3.3 awaits sibling async fields, and the async items of a list, through
``graphql.pyutils.gather_with_cancel``, which is ``asyncio.gather`` over ``asyncio.ensure_future``. Under
Trio there is no asyncio loop, the gather raises, and the whole query answers ``data: null``. This
module replaces that one function with a nursery-based gather of the same contract: results in order,
and the first failure cancels the others before it propagates.

graphql-core and strawberry are pinned in ``pyproject.toml`` because this reaches into graphql-core's
internals; :func:`install` fails loudly if the names it patches have moved. ``tests/api`` holds the
regression test (two sibling async fields and a list of async fields).

graphql-core's other asyncio uses (abort signals, ``@defer``/``@stream``, ``settle_in_background``)
are not reached by the plain queries csms runs: no abort signal is passed, incremental delivery is
not enabled, and ``settle_in_background`` closes the pending coroutines when no asyncio loop runs.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import sniffio
import trio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

# Every place that holds a reference to graphql-core's gather: the executor imported the name into its
# own namespace, so patching the defining module alone would change nothing.
_TARGETS = ("graphql.execution.executor", "graphql.pyutils", "graphql.pyutils.gather_with_cancel")
_NAME = "gather_with_cancel"

_original: Callable[..., Awaitable[list[Any]]] | None = None


def _first_leaf(group: BaseExceptionGroup[Exception]) -> Exception:
    """The first plain exception inside a (possibly nested) exception group."""
    first = group.exceptions[0]
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first


async def trio_gather_with_cancel(*awaitables: Awaitable[Any]) -> list[Any]:
    """Await ``awaitables`` concurrently in a Trio nursery and return their results in order.

    Same contract as graphql-core's ``gather_with_cancel``: when one awaitable raises, the others are
    cancelled (the nursery does that) and the error propagates as a bare exception, because
    graphql-core turns it into a located ``GraphQLError`` and would not understand a group.

    Under asyncio (a tool that drives the schema outside the server) the original gather is used.

    Raises:
        Exception: the first error raised by an awaitable.
        BaseExceptionGroup: when the group holds a ``BaseException`` such as ``trio.Cancelled``, so
            that the enclosing cancel scope still sees its own cancellation.
    """
    if _original is not None and sniffio.current_async_library() != "trio":
        return await _original(*awaitables)
    results: list[Any] = [None] * len(awaitables)

    async def run_one(index: int, awaitable: Awaitable[Any]) -> None:
        results[index] = await awaitable

    try:
        async with trio.open_nursery() as nursery:
            for index, awaitable in enumerate(awaitables):
                nursery.start_soon(run_one, index, awaitable)
    except BaseExceptionGroup as group:
        plain, other = group.split(Exception)
        if other is None and plain is not None:
            # Several resolvers may fail before the cancellation lands; graphql-core reports one.
            raise _first_leaf(plain) from None
        raise
    return results


def install() -> None:
    """Replace graphql-core's ``gather_with_cancel`` with :func:`trio_gather_with_cancel`.

    Idempotent; called by ``create_app`` (and safe to call from tests or tools).

    Raises:
        RuntimeError: graphql-core no longer has the patched names (an upgrade moved them).
    """
    global _original
    import graphql.execution.executor
    import graphql.pyutils.gather_with_cancel  # noqa: F401

    for module_name in _TARGETS:
        module = sys.modules[module_name]
        current = getattr(module, _NAME, None)
        if current is None or not callable(current):
            raise RuntimeError(f"{module_name}.{_NAME} not found: graphql-core changed, review trio_gather")
        if current is trio_gather_with_cancel:
            continue
        if _original is None:
            _original = current
        setattr(module, _NAME, trio_gather_with_cancel)


def installed() -> bool:
    """True when every reference to graphql-core's gather points at the Trio version."""
    return all(getattr(sys.modules.get(name), _NAME, None) is trio_gather_with_cancel for name in _TARGETS)

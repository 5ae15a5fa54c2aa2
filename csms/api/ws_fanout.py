"""One subscription update for many subscribers: executed once and serialized once per document.

When a thousand drivers watch one charging session, each change used to be executed as GraphQL and
encoded as JSON a thousand times, once per subscriber, so the last subscriber got it 0.3-1.5 s late
(issue #3's benchmark). Here the work is done once per (event, document, variables), and every
subscriber's socket gets the same bytes:

- A subscription resolver yields :func:`share`\\ (value): the *same* wrapper object to every subscriber
  of one change (``csms.api.subscriptions`` builds it inside the events hub's shared read, so all the
  subscribers of that read get one object). It may carry the receive time of the charger message
  behind the change, for the latency metrics.
- :class:`SharingExecutor`, the schema's graphql-core executor, unwraps it and remembers each
  execution result on it, keyed by the operation's source text, operation name and variables. The
  next subscriber with the same document and variables gets that result without executing anything.
- :func:`next_message` encodes a result's ``next`` message, reusing the JSON of a shared result.
- On the WebSocket, :class:`DirectDelivery` goes one step further: the subscription resolver hands it
  each shared update, and it puts the shared bytes on the socket itself. strawberry's per-result steps
  (the result-stream wrappers, the extensions' result hooks, a per-event executor copy), which cost
  more than the execution they wrap, are skipped for updates; the first result, errors, and any update
  that cannot be shared still take the usual way (the resolver yields them).

Sharing is opt-in and only sound for values whose GraphQL fields do not depend on who asks
(``ChargingSession``, station statuses, balances): the subscription resolver has already checked that
the subscriber may see the object, and nothing in the result differs between subscribers. A result
with errors is never shared, nor sent directly: it is yielded, so that the schema's extensions (error
masking) process it as usual.
"""

from __future__ import annotations

import json
import weakref
from inspect import isawaitable
from typing import TYPE_CHECKING, Any, TypeVar

from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from csms.api import ws_protocol as proto
from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import OperationType

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from graphql.pyutils import AwaitableOrValue
    from strawberry.types import ExecutionResult

    from csms.services.metrics import LiveMetrics


T = TypeVar("T")
ShareKey = tuple[str, str | None, str]
# Where a WebSocket operation's context (ApiContext.extra) carries its DirectDelivery.
DIRECT_DELIVERY = "csms.ws_fanout.direct"


class SharedEvent:
    """A subscription update shared by its subscribers (create it with :func:`share`).

    Attributes:
        value: what the resolver yields (the GraphQL object).
        received_at: when csms received the charger message behind the change (epoch seconds), if any.
    """

    __slots__ = ("__weakref__", "_json", "_results", "received_at", "value")

    def __init__(self, value: object, received_at: float | None = None) -> None:
        self.value = value
        self.received_at = received_at
        self._results: dict[ShareKey, GraphQLExecutionResult] = {}
        self._json: dict[int, str] = {}  # id(result.data) → the `payload` JSON of a `next` message

    def payload_json(self, data: dict[str, Any]) -> str:
        """The ``next`` payload for one of this event's results, encoded on first use."""
        text = self._json.get(id(data))
        if text is None:
            text = self._json[id(data)] = json.dumps({"data": data}, separators=(",", ":"))
        return text


# Finds the shared event of a result's data. Weak values: an entry goes with its event; while the event
# lives it holds the data, so an id here is never reused by another object.
_by_data: weakref.WeakValueDictionary[int, SharedEvent] = weakref.WeakValueDictionary()


def share(value: T, *, received_at: float | None = None) -> T:
    """Wrap a subscription resolver's value so that its subscribers share one execution.

    Typed as returning ``value``'s type because that is what GraphQL executes: the schema's
    :class:`SharingExecutor` unwraps the :class:`SharedEvent` before any field sees it.
    """
    return SharedEvent(value, received_at)  # type: ignore[return-value]


def shared_event(result: ExecutionResult) -> SharedEvent | None:
    """The shared event a strawberry result was executed for, or None (not shared, or with errors)."""
    if result.errors or result.extensions or not isinstance(result.data, dict):
        return None
    return _by_data.get(id(result.data))


def next_message(op_id: str, result: ExecutionResult) -> tuple[str, float | None]:
    """``next`` for operation ``op_id``, and the receive time of the change it shows (if stamped)."""
    event = shared_event(result)
    if event is None:
        return proto.next_message(op_id, result), None
    assert isinstance(result.data, dict)
    return proto.next_message_with_payload(op_id, event.payload_json(result.data)), event.received_at


class DirectDelivery:
    """Puts shared updates of one subscription straight on its WebSocket (see the module docstring).

    Args:
        op_id: the operation's id in the ``graphql-transport-ws`` protocol.
        send: sends one text message on the socket (it handles a broken socket itself).
        metrics: where the age of each update sent is recorded.
    """

    def __init__(self, op_id: str, send: Callable[[str], Awaitable[None]], metrics: LiveMetrics | None) -> None:
        self.op_id = op_id
        self._send = send
        self._metrics = metrics
        self.executor: SharingExecutor | None = None  # the operation's executor, once it exists

    async def deliver(self, value: object) -> bool:
        """Send ``value`` (from :func:`share`) if it can be sent directly; False: yield it instead."""
        executor = self.executor
        if not isinstance(value, SharedEvent) or executor is None:
            return False
        result = executor.result_for(value)
        if isawaitable(result):
            result = await result
        if not isinstance(result, GraphQLExecutionResult) or result.errors or not isinstance(result.data, dict):
            return False
        await self._send(proto.next_message_with_payload(self.op_id, value.payload_json(result.data)))
        if self._metrics is not None:
            self._metrics.update_sent(value.received_at)
        return True


def direct_delivery(extra: dict[str, object]) -> DirectDelivery | None:
    """The :class:`DirectDelivery` of a context's ``extra``: present on WebSocket subscriptions only."""
    direct = extra.get(DIRECT_DELIVERY)
    return direct if isinstance(direct, DirectDelivery) else None


class SharingExecutor(StrawberryGraphQLCoreExecutionContext):
    """strawberry's graphql-core executor, executing a :class:`SharedEvent` once per document."""

    _shared: SharedEvent | None = None
    _share_key: ShareKey | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A subscription over our WebSocket: its DirectDelivery executes updates with this executor.
        extra = getattr(self.context_value, "extra", None)
        direct = direct_delivery(extra) if isinstance(extra, dict) else None
        if direct is not None and self.operation.operation is OperationType.SUBSCRIPTION:
            direct.executor = self

    def result_for(self, event: SharedEvent) -> AwaitableOrValue[Any]:
        """This operation's result for a shared event: the one an identical operation got, or a new one."""
        if self._share_key is None:
            self._share_key = self._key()
        cached = event._results.get(self._share_key)
        if cached is not None:
            return cached
        return self.build_per_event_executor(event).execute_operation(False)

    def build_per_event_executor(self, payload: Any) -> SharingExecutor:
        """The per-event executor; a :class:`SharedEvent` is unwrapped and remembered for sharing."""
        if not isinstance(payload, SharedEvent):
            executor: SharingExecutor = super().build_per_event_executor(payload)  # type: ignore[assignment]
            return executor
        if self._share_key is None:
            self._share_key = self._key()
        executor = super().build_per_event_executor(payload.value)  # type: ignore[assignment]
        executor._shared = payload
        return executor

    def execute_operation(self, serially: bool | None = None) -> AwaitableOrValue[Any]:
        """Execute, or reuse the result another subscriber's identical operation got for this event."""
        shared, key = self._shared, self._share_key
        if shared is None or key is None or not key[0]:
            return super().execute_operation(serially)
        cached = shared._results.get(key)
        if cached is not None:
            return cached
        result = super().execute_operation(serially)
        if isinstance(result, GraphQLExecutionResult) and not result.errors and isinstance(result.data, dict):
            shared._results[key] = result
            _by_data[id(result.data)] = shared
        return result

    def _key(self) -> ShareKey:
        """The document's source text, the operation name and the coerced variables, canonically."""
        loc = self.operation.loc
        source = loc.source.body if loc is not None else ""  # no source text: never shared
        name = self.operation.name.value if self.operation.name else None
        variables = json.dumps(self.variable_values.coerced, sort_keys=True, separators=(",", ":"), default=repr)
        return source, name, variables


__all__ = ["DIRECT_DELIVERY", "DirectDelivery", "SharedEvent", "SharingExecutor", "direct_delivery", "next_message",
           "share", "shared_event"]

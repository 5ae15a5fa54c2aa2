"""Rate limits on every mutation, applied by one schema extension so no mutation can be left out.

Every root field of a mutation operation is counted before it runs (its permission check and resolver
included), per client address (``client_key``) and, when the caller is authenticated, per caller:

- the critical mutations in :data:`CRITICAL` (logging in, registering, paying, starting a charge) each
  have their own budget of ``CSMS_CRITICAL_RATE_LIMIT`` per minute (default 10);
- all other mutations share a budget of ``CSMS_MUTATION_RATE_LIMIT`` per minute (default 60).

Over the limit the field fails with ``RATE_LIMITED`` and ``extensions.retryAfterSeconds``; nothing
else runs. ``login`` and ``register`` keep their own finer limits as well (per login name).
Webhooks are limited per IP in ``csms.api.webhooks``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from strawberry.extensions import SchemaExtension

from csms.api.context import ApiContext
from csms.api.ratelimits import client_key, enforce_rate_limit
from graphql import OperationType

if TYPE_CHECKING:
    from collections.abc import Callable

    from graphql import GraphQLResolveInfo

CRITICAL = frozenset({"login", "register", "topUp", "startCharging"})


def policy_for(field_name: str, context: ApiContext) -> tuple[str, int]:
    """``(policy name prefix, requests per minute)`` for a mutation field."""
    limits = context.require_services().settings.rate_limits
    if field_name in CRITICAL:
        return f"mutation:{field_name}", limits.critical_per_minute
    return "mutation:other", limits.mutation_per_minute


def enforce_mutation_limits(context: ApiContext, field_name: str) -> None:
    """Count one call of mutation ``field_name`` for the client's address and for the caller.

    Raises:
        RateLimitedError: ``RATE_LIMITED`` with ``retryAfterSeconds``.
    """
    prefix, limit = policy_for(field_name, context)
    enforce_rate_limit(context, f"{prefix}:ip", client_key(context), limit=limit)
    principal = context.principal
    if principal is not None:
        enforce_rate_limit(context, f"{prefix}:caller", f"{principal.kind}:{principal.subject}", limit=limit)


class MutationRateLimits(SchemaExtension):
    """Applies :func:`enforce_mutation_limits` to every root field of every mutation."""

    def resolve(self, _next: Callable[..., Any], root: Any, info: GraphQLResolveInfo[Any], *args: Any,
                **kwargs: Any) -> Any:
        context = info.context
        if (info.path.prev is None and info.operation.operation is OperationType.MUTATION
                and isinstance(context, ApiContext) and context.services is not None):
            enforce_mutation_limits(context, info.field_name)
        return _next(root, info, *args, **kwargs)

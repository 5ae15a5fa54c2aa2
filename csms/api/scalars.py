"""Custom scalars.

``Long``: money (tyiyn) and energy (Wh) are 64-bit in the database, and GraphQL's ``Int`` is 32-bit
(2,147,483,647 tyiyn is only 21 million som; a meter register passes 2.1 GWh). ``Long`` is a JSON
integer up to 2^53 - 1, the largest a JavaScript client reads exactly. Every money and energy field
uses it.
"""

from __future__ import annotations

from typing import NewType

import strawberry

MAX_SAFE = 2**53 - 1


def _parse(value: object) -> int:
    # bool is an int in Python; a client sending true for an amount is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int) or not -MAX_SAFE <= value <= MAX_SAFE:
        raise ValueError("Long must be an integer between -(2^53 - 1) and 2^53 - 1")
    return value


def _serialize(value: int) -> int:
    return _parse(value)


# For type checkers and at runtime Long is an int; the schema maps it to the GraphQL scalar below
# (StrawberryConfig.scalar_map in csms.api.schema: passing a class to strawberry.scalar() is deprecated
# and warns, which the test suite treats as an error).
Long = NewType("Long", int)

LONG_SCALAR = strawberry.scalar(
    name="Long",
    serialize=_serialize,
    parse_value=_parse,
    description="A 64-bit integer sent as a JSON number, limited to ±(2^53 - 1) (exact in JavaScript). "
    "Used for money (tyiyn) and energy (Wh).",
)

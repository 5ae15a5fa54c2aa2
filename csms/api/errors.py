"""The errors the GraphQL API returns on purpose, each with its ``extensions.code``.

Clients branch on the code, never on the message. Anything else a resolver raises is unexpected: the
schema masks it as ``INTERNAL_SERVER_ERROR`` with a generic message and logs the real error (see
``schema.MaskUnexpectedErrors``), so SQL and tracebacks never reach a client.
"""

from __future__ import annotations

from graphql import GraphQLError


class ApiError(GraphQLError):
    """Base of the API's deliberate errors; ``code`` goes to ``extensions.code``."""

    code = "INTERNAL_SERVER_ERROR"
    default_message = "Internal server error."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.default_message, extensions={"code": self.code})


class BadUserInput(ApiError):
    """An argument is out of range or malformed (``BAD_USER_INPUT``)."""

    code = "BAD_USER_INPUT"
    default_message = "Invalid argument."


class Unauthenticated(ApiError):
    """No valid credential came with the request (``UNAUTHENTICATED``)."""

    code = "UNAUTHENTICATED"
    default_message = "Authentication required: send 'Authorization: Bearer <API key>'."


class Forbidden(ApiError):
    """The caller is known but lacks the role this field needs (``FORBIDDEN``)."""

    code = "FORBIDDEN"
    default_message = "Not allowed."


INTERNAL_ERROR_CODE = ApiError.code
INTERNAL_ERROR_MESSAGE = ApiError.default_message


class NotFound(ApiError):
    """The object does not exist, or the caller may not know that it does (``NOT_FOUND``)."""

    code = "NOT_FOUND"
    default_message = "Not found."


class DomainError(ApiError):
    """A refusal with its own code (``INSUFFICIENT_BALANCE``, ``STATION_OFFLINE``...), named where raised."""

    def __init__(self, code: str, message: str, **extensions: object) -> None:
        super().__init__(message)
        self.extensions = {"code": code, **extensions}

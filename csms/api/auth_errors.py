"""The typed errors of accounts and authentication, and the mapping from the account services' exceptions.

Codes (``extensions.code``):

- ``INVALID_CREDENTIALS``: login failed. One code and one message whatever was wrong (unknown user,
  wrong password, no password), so the answer tells nothing about which accounts exist.
- ``PHONE_TAKEN`` / ``EMAIL_TAKEN``: another account has this phone or email (``register``).
- ``BAD_USER_INPUT``: a malformed phone, email or name, or a weak password; ``extensions.field``
  names the argument.
- ``INVALID_REFRESH_TOKEN``: unknown, expired, revoked or reused refresh token (log in again).
- ``CSRF_FAILED``: a mutation authenticated by cookies lacks a valid ``X-CSRF-Token`` header.
- ``RATE_LIMITED``: too many attempts; ``extensions.retryAfterSeconds`` says when to try again.
- ``ACCOUNT_BLOCKED`` / ``ACCOUNT_PENDING_DELETION``: the account may not pay or charge.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING

from csms.api.errors import BadUserInput, DomainError, NotFound
from csms.services import accounts, logins

if TYPE_CHECKING:
    from collections.abc import Iterator

INVALID_CREDENTIALS_MESSAGE = "The login or the password is wrong."


class CsrfFailed(DomainError):
    """``CSRF_FAILED``: send the ``csrfToken`` in an ``X-CSRF-Token`` header with cookie-authenticated mutations."""

    def __init__(self) -> None:
        super().__init__("CSRF_FAILED", "Missing or wrong X-CSRF-Token header (required with cookie sessions).")


class RateLimitedError(DomainError):
    """``RATE_LIMITED`` with ``retryAfterSeconds`` (whole seconds, at least 1)."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__("RATE_LIMITED", f"Too many attempts; try again in {retry_after_s} s.",
                         retryAfterSeconds=retry_after_s)


@contextmanager
def account_errors() -> Iterator[None]:
    """Translate the account services' exceptions into the API's typed errors.

    Use it around calls to ``csms.services.accounts`` and ``csms.services.logins``, and around any
    service call that runs :func:`csms.services.accounts.ensure_can_transact`::

        with account_errors():
            await start_session(...)
    """
    try:
        yield
    except accounts.InvalidInput as exc:
        error = BadUserInput(str(exc))
        error.extensions = {**(error.extensions or {}), "field": exc.field}
        raise error from None
    except accounts.IdentifierTaken as exc:
        raise DomainError(f"{exc.field.upper()}_TAKEN", f"This {exc.field} is already registered.") from None
    except logins.InvalidCredentials:
        raise DomainError("INVALID_CREDENTIALS", INVALID_CREDENTIALS_MESSAGE) from None
    except logins.InvalidRefreshToken:
        raise DomainError("INVALID_REFRESH_TOKEN", "The session has ended; log in again.") from None
    except accounts.AccountBlocked:
        raise DomainError("ACCOUNT_BLOCKED", "This account is blocked; contact support.") from None
    except accounts.AccountPendingDeletion:
        raise DomainError("ACCOUNT_PENDING_DELETION", "This account is being deleted.") from None
    except accounts.UnknownAccount:
        raise NotFound("No such account.") from None

"""Accounts and sessions: register, login, refresh, logout, account deletion, and ``me``.

Two client styles share these mutations:

- **Bearer** (mobile apps, scripts): the payload carries ``accessToken`` and ``refreshToken``; send
  ``Authorization: Bearer <accessToken>`` and call ``refresh(refreshToken: ...)`` before it expires.
- **Cookies** (the browser PWA): pass ``cookie: true``. The tokens go into HttpOnly cookies and are null
  in the payload; ``csrfToken`` comes back instead and must be sent as ``X-CSRF-Token`` with every
  later mutation. ``refresh(cookie: true)`` and ``logout(cookie: true)`` read the refresh cookie.

Login and registration are rate-limited per client IP and, for login, per login name
(``CSMS_LOGIN_RATE_LIMIT``, ``CSMS_REGISTER_RATE_LIMIT``). Error codes: ``csms.api.auth_errors``.
"""

from __future__ import annotations

import hashlib

import strawberry
from strawberry import Info

from csms.api.access import LOGGED_IN, PUBLIC
from csms.api.account_types import Account, AuthPayload, LoginInput, RegisterInput
from csms.api.auth_errors import account_errors
from csms.api.context import ApiContext  # noqa: TC001 (strawberry reads resolver annotations at runtime)
from csms.api.errors import BadUserInput, Forbidden
from csms.api.ratelimits import client_key, enforce_rate_limit
from csms.services import accounts, logins
from csms.services.clock import utcnow
from csms.store import users as user_store


def _policy(context: ApiContext) -> logins.LoginPolicy:
    auth = context.require_services().settings.auth
    return logins.LoginPolicy(refresh_ttl_s=auth.refresh_token_days * 86400, reuse_grace_s=auth.refresh_reuse_grace_s)


def _payload(context: ApiContext, session: logins.AuthSession, cookie: bool) -> AuthPayload:
    """The mutation's answer; in cookie mode the tokens go into cookies instead."""
    browser = context.browser
    if not cookie:
        if browser is not None:
            browser.no_store()
        return AuthPayload.from_session(session, cookie=False, csrf_token=None)
    if browser is None:
        raise BadUserInput("Cookie mode needs an HTTP request.")
    csrf = browser.csrf_for(session.user.id)
    browser.set_session(session, csrf, utcnow())
    return AuthPayload.from_session(session, cookie=True, csrf_token=csrf)


async def resolve_register(info: Info[ApiContext, None], input: RegisterInput, cookie: bool = False) -> AuthPayload:
    """Create a driver account and log it in."""
    ctx = info.context
    services = ctx.require_services()
    enforce_rate_limit(ctx, "register:ip", client_key(ctx), limit=services.settings.auth.register_rate_limit)
    with account_errors():
        session = await logins.register(services.db, services.signer, _policy(ctx), phone=input.phone,
                                        email=input.email, name=input.name, password=input.password)
    return _payload(ctx, session, cookie)


async def resolve_login(info: Info[ApiContext, None], input: LoginInput, cookie: bool = False) -> AuthPayload:
    """Log in by phone or email and password."""
    ctx = info.context
    services = ctx.require_services()
    limit = services.settings.auth.login_rate_limit
    enforce_rate_limit(ctx, "login:ip", client_key(ctx), limit=limit)
    with account_errors():
        phone, email = logins.login_identifier(phone=input.phone, email=input.email)
    # Hashed so the limiter's memory holds no phone numbers or emails.
    enforce_rate_limit(ctx, "login:identifier", hashlib.sha256((phone or email or "").encode()).hexdigest(),
                       limit=limit)
    with account_errors():
        session = await logins.login(services.db, services.signer, _policy(ctx), phone=phone, email=email,
                                     password=input.password)
    return _payload(ctx, session, cookie)


async def resolve_refresh(info: Info[ApiContext, None], refresh_token: str | None = None,
                          cookie: bool = False) -> AuthPayload:
    """Trade a refresh token (the argument, or in cookie mode the cookie) for a new session."""
    ctx = info.context
    services = ctx.require_services()
    browser = ctx.browser
    token = refresh_token or (browser.refresh_token if cookie and browser is not None else None)
    if token is None and not cookie:
        raise BadUserInput("refreshToken is required (or use cookie: true).")
    with account_errors():
        try:
            session = await logins.refresh(services.db, services.signer, _policy(ctx), token or "",
                                           services.revocations)
        except logins.InvalidRefreshToken:
            if cookie and browser is not None:
                browser.clear()  # dead credentials: stop the browser from sending them
            raise
    return _payload(ctx, session, cookie)


async def resolve_logout(info: Info[ApiContext, None], refresh_token: str | None = None,
                         cookie: bool = False) -> bool:
    """End the session of a refresh token (every token descended from the same login)."""
    ctx = info.context
    browser = ctx.browser
    token = refresh_token or (browser.refresh_token if cookie and browser is not None else None)
    if token is None and not cookie:
        raise BadUserInput("refreshToken is required (or use cookie: true).")
    await logins.logout(ctx.db, token or "", ctx.services.revocations if ctx.services is not None else None)
    if cookie and browser is not None:
        browser.clear()
    return True


async def resolve_request_deletion(info: Info[ApiContext, None]) -> Account:
    """Ask for the caller's account to be deleted; logs out every device."""
    ctx = info.context
    principal = ctx.require()
    if principal.kind == "api_key" or principal.user_id is None:
        raise Forbidden("Only the account's user may ask for its deletion.")
    with account_errors():
        user = await accounts.request_deletion(ctx.db, principal.user_id)
    if ctx.browser is not None and ctx.browser.uses_cookies:
        ctx.browser.clear()
    return Account.from_user(user)


async def resolve_me(info: Info[ApiContext, None]) -> Account | None:
    """The caller's account (null for an admin API key, which is nobody's)."""
    principal = info.context.require()
    if principal.user_id is None:
        return None
    user = await info.context.db.run(user_store.get_user, principal.user_id)
    return Account.from_user(user) if user is not None else None


async def resolve_csrf_token(info: Info[ApiContext, None]) -> str | None:
    """The CSRF token of the browser's cookie session (null without one); repairs a missing CSRF cookie."""
    browser = info.context.browser
    if browser is None:
        return None
    user_id = await browser.user_id()
    if user_id is None:
        return None
    token = browser.csrf_for(user_id)
    browser.set_csrf(token, _policy(info.context).refresh_ttl_s)
    browser.no_store()
    return token


@strawberry.type
class AccountQuery:
    me: Account | None = strawberry.field(
        resolver=resolve_me, permission_classes=LOGGED_IN,
        description="The logged-in user, with the wallet balance. Null for admin API keys.")
    csrf_token: str | None = strawberry.field(
        resolver=resolve_csrf_token, permission_classes=PUBLIC,
        description="Cookie sessions: the token to send as `X-CSRF-Token` with mutations (null without a session).")


@strawberry.type
class AccountMutation:
    register: AuthPayload = strawberry.field(
        resolver=resolve_register, permission_classes=PUBLIC,
        description="Create a driver account and log in. `cookie: true` for browser cookie mode. "
                    "Errors: PHONE_TAKEN, EMAIL_TAKEN, BAD_USER_INPUT, RATE_LIMITED.")
    login: AuthPayload = strawberry.field(
        resolver=resolve_login, permission_classes=PUBLIC,
        description="Log in by phone or email. `cookie: true` for browser cookie mode. "
                    "Errors: INVALID_CREDENTIALS, BAD_USER_INPUT, RATE_LIMITED.")
    refresh: AuthPayload = strawberry.field(
        resolver=resolve_refresh, permission_classes=PUBLIC,
        description="A new session for a refresh token, which is replaced (use the new one next time). "
                    "Reusing a replaced token ends the session. Errors: INVALID_REFRESH_TOKEN.")
    logout: bool = strawberry.field(
        resolver=resolve_logout, permission_classes=PUBLIC,
        description="End the session of a refresh token; always true. Access tokens expire on their own.")
    request_account_deletion: Account = strawberry.field(
        resolver=resolve_request_deletion, permission_classes=LOGGED_IN,
        description="Mark the caller's account for deletion and log out every device. It can no longer pay "
                    "or charge (ACCOUNT_PENDING_DELETION).")


QUERIES: list[type] = [AccountQuery]
MUTATIONS: list[type] = [AccountMutation]
SUBSCRIPTIONS: list[type] = []

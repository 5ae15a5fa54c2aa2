"""Serve the API app with hypercorn on Trio, as one supervised service."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from csms.api import hypercorn_send

if TYPE_CHECKING:
    from quart_trio import QuartTrio

    from csms.config import Settings

log = logging.getLogger(__name__)


def hypercorn_config(settings: Settings, *, access_log: bool = False) -> Config:
    """hypercorn settings for the API.

    The access log is off by default: GET /graphql carries queries in the URL and a future login
    flow could put secrets there, so logging every request line is opt-in.
    """
    config = Config()
    config.bind = [f"{settings.http_host}:{settings.http_port}"]
    config.accesslog = logging.getLogger("csms.api.access") if access_log else None
    config.errorlog = logging.getLogger("csms.api.http")
    config.graceful_timeout = settings.shutdown_grace_s
    return config


async def serve_api(
    app: QuartTrio,
    settings: Settings,
    *,
    access_log: bool = False,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``settings.http_host:http_port`` until cancelled.

    Calls ``task_status.started(binds)`` once the socket listens, with the bound addresses as
    ``http://host:port`` strings (useful with port 0, which lets the OS pick a free port).

    Cancellation is a graceful stop: the listener closes, in-flight requests get
    ``settings.shutdown_grace_s`` to finish, then the function returns (the cancellation propagates).
    """
    config = hypercorn_config(settings, access_log=access_log)
    hypercorn_send.install()
    stop = trio.Event()
    server_scope = trio.CancelScope(shield=True)

    async def run_server(*, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
        # Shielded: cancelling serve_api must become hypercorn's graceful shutdown (stop accepting,
        # let requests finish), not an abrupt cancel of every connection. The deadline below bounds it.
        with server_scope:
            await serve(app, config, shutdown_trigger=stop.wait, task_status=task_status)

    async with trio.open_nursery() as nursery:
        services = app.extensions.get("csms.services")
        if services is not None:
            # Closes open WebSockets whose login session another node revoked (session_revocation).
            nursery.start_soon(services.revocations.sweep)
        binds: list[str] = await nursery.start(run_server)
        log.info("API listening on %s", ", ".join(binds))
        task_status.started(binds)
        try:
            await trio.sleep_forever()
        finally:
            stop.set()
            # hypercorn gives requests graceful_timeout; one more second covers its lifespan shutdown.
            server_scope.deadline = trio.current_time() + config.graceful_timeout + 1.0

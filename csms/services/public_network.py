"""Outgoing HTTP to public internet addresses only: the guard for URLs that users supply.

A web push subscription's endpoint comes from a browser, so a driver chooses where csms POSTs.
:func:`csms.services.push_subscriptions.check_endpoint` refuses IP literals and local names when the
subscription is stored, but a public name can resolve to a private address (a cloud metadata service,
the database's host), then or later (DNS rebinding). So in production the push sender connects through
:class:`PublicOnlyBackend`: it resolves the name itself, keeps only public addresses, and connects to
one of those addresses, so the address checked is the address used. TLS still verifies the
certificate against the name, because httpcore takes the server name from the URL, not from the
address connected to.

A proxy from the environment (``HTTPS_PROXY``) is not guarded here: the proxy resolves the name, and
egress policy is then the proxy's job.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import TYPE_CHECKING

import httpcore
import httpx
import trio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

    Resolver = Callable[[str, int], Awaitable[list[str]]]


class NonPublicAddress(Exception):
    """The host resolved to no public address, so nothing was connected to.

    Not an httpcore error on purpose: httpx passes it through unchanged, so callers can tell a refusal
    (final) from a network error (worth retrying).
    """


def is_public(address: str) -> bool:
    """Whether an IP address is on the public internet (not private, loopback, link-local, shared,
    reserved or multicast; an IPv4-mapped IPv6 address is judged by its IPv4 address)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 scope id is not part of the address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to, in the resolver's order, without repeats."""
    infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class PublicOnlyBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that connects only to addresses ``allow`` accepts.

    Args:
        inner: the backend that makes the connections (httpcore's own).
        resolver: name resolution (the system's; tests give a fixed table).
        allow: which addresses may be connected to (:func:`is_public`).
    """

    def __init__(self, inner: httpcore.AsyncNetworkBackend, resolver: Resolver = resolve,
                 allow: Callable[[str], bool] = is_public) -> None:
        self._inner = inner
        self._resolve = resolver
        self._allow = allow

    # httpcore's interface dictates the signatures, timeout included.
    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,  # noqa: ASYNC109
                          local_address: str | None = None,
                          socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        """Resolve ``host``, then connect to the first allowed address that answers."""
        try:
            with trio.fail_after(timeout if timeout is not None else float("inf")):
                addresses = await self._resolve(host, port)
        except trio.TooSlowError:
            raise httpcore.ConnectTimeout(f"resolving {host} took too long") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None
        allowed = [address for address in addresses if self._allow(address)]
        if not allowed:
            raise NonPublicAddress(f"{host} resolves to no public address")
        failure: httpcore.ConnectError | None = None
        for address in allowed:
            try:
                return await self._inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                                     socket_options=socket_options)
            except httpcore.ConnectError as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(self, path: str, timeout: float | None = None,  # noqa: ASYNC109
                                  socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
                                  ) -> httpcore.AsyncNetworkStream:
        """Never: a Unix socket is not a public address."""
        raise NonPublicAddress("a Unix socket is not a public address")

    async def sleep(self, seconds: float) -> None:
        """The inner backend's sleep (httpcore uses it between connection retries)."""
        await self._inner.sleep(seconds)


def public_only_transport(limits: httpx.Limits, resolver: Resolver = resolve,
                          allow: Callable[[str], bool] = is_public) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose connections go only to addresses ``allow`` accepts.

    httpx has no public way to give its connection pool a network backend, so the pool's backend is
    wrapped after construction (httpx and httpcore are pinned; a test fails if this stops working).
    """
    transport = httpx.AsyncHTTPTransport(limits=limits)
    pool = transport._pool
    inner = getattr(pool, "_network_backend", None)
    if not isinstance(inner, httpcore.AsyncNetworkBackend):
        raise RuntimeError("this httpx/httpcore version cannot guard outgoing connections")
    pool._network_backend = PublicOnlyBackend(inner, resolver, allow)
    return transport

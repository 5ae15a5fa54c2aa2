"""The client's IP address, also behind reverse proxies we trust (``CSMS_TRUSTED_PROXIES``).

Behind a proxy every request comes from the proxy's address, so per-IP rate limits would throttle all
users together. When the peer is a trusted proxy, the client is the right-most ``X-Forwarded-For``
entry that is not itself a trusted proxy: entries to its left were written by the client and prove
nothing. With no trusted proxies (the default) the header is ignored, so clients cannot spoof it.
"""

from __future__ import annotations

import ipaddress

from csms.config import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ClientAddress:
    """Finds a request's client address given the trusted proxies (addresses or CIDR networks)."""

    def __init__(self, trusted_proxies: tuple[str, ...] = ()) -> None:
        try:
            self._trusted: tuple[Network, ...] = tuple(ipaddress.ip_network(p, strict=False) for p in trusted_proxies)
        except ValueError as exc:
            raise ConfigError(f"CSMS_TRUSTED_PROXIES: {exc}") from None

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._trusted)

    def client_ip(self, peer: str, forwarded_for: str | None) -> str:
        """The client's address for a request from ``peer`` with this ``X-Forwarded-For`` header."""
        if not self._trusted or not forwarded_for or not self._is_trusted(peer):
            return peer
        hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
        for hop in reversed(hops):
            if not self._is_trusted(hop):
                try:
                    return str(ipaddress.ip_address(hop))
                except ValueError:
                    return peer  # garbage from an untrusted hop: fall back to what we know
        return hops[0] if hops else peer

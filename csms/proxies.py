"""The client's address behind reverse proxies: `X-Forwarded-For`, believed only from proxies we trust.

Anyone can send `X-Forwarded-For`; only a proxy in `CSMS_TRUSTED_PROXIES` (addresses or networks)
speaks for the client. Each proxy appends the address it was connected from, so the chain is read
from the right: past every trusted proxy, the first address that is not one is the client. What lies
to its left was written by the client and is ignored.

Werkzeug's ProxyFix counts hops instead (`x_for=N`: the N-th address from the right). That needs every
request to cross the same number of proxies; a charger connecting directly beside apps that come
through nginx, or a second proxy added later, would let a client choose its own address with the
header, or put every client behind the proxy's. A list of trusted proxies stays right for both.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[Network, ...]:
    """`10.0.0.1, 192.168.0.0/16, ::1` → networks; a malformed entry raises ValueError (config)."""
    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in text.split(",") if item.strip())


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def client_address(peer: str, forwarded_for: str | None, trusted: Iterable[Network]) -> str:
    """The address of the client: `peer` unless it is a trusted proxy, else the right-most address of
    `forwarded_for` that is not a trusted proxy (the left-most when all are). An entry that is not an
    address ends the walk at the last trusted hop."""
    networks = tuple(trusted)

    def is_trusted(address) -> bool:
        return address is not None and any(address in network for network in networks)

    if not forwarded_for or not is_trusted(_address(peer)):
        return peer
    client = peer
    for hop in reversed(forwarded_for.split(",")):
        address = _address(hop)
        if address is None:  # not written by a proxy of ours: the last trusted hop is all we know
            return client
        client = str(address)
        if not is_trusted(address):
            return client
    return client


def forwarded_scheme(forwarded_proto: str | None) -> str | None:
    """`https` or `http` from the `X-Forwarded-Proto` written by the proxy nearest us (the right-most
    value; `wss`/`ws` as some proxies spell a WebSocket upgrade); None when absent or unknown."""
    if not forwarded_proto:
        return None
    nearest = forwarded_proto.split(",")[-1].strip().lower()
    return {"https": "https", "wss": "https", "http": "http", "ws": "http"}.get(nearest)


class TrustedProxies:
    """WSGI middleware: `REMOTE_ADDR` becomes the client's address for everything behind it (the login
    limiter, chargers' logged addresses); the proxy's own address stays in `csms.proxy_addr`. A
    trusted proxy's `X-Forwarded-Proto` becomes `wsgi.url_scheme`: a charger whose TLS the proxy
    ended connected securely (security profile 2, csms.ocpp.gateway)."""

    def __init__(self, wsgi_app: Callable[..., Any], trusted: Iterable[Network]):
        self.wsgi_app = wsgi_app
        self.trusted = tuple(trusted)

    def _is_trusted(self, peer: str) -> bool:
        address = _address(peer)
        return address is not None and any(address in network for network in self.trusted)

    def __call__(self, environ: dict, start_response: Callable[..., Any]):
        peer = environ.get("REMOTE_ADDR", "")
        client = client_address(peer, environ.get("HTTP_X_FORWARDED_FOR"), self.trusted)
        if client != peer:
            environ["csms.proxy_addr"] = peer
            environ["REMOTE_ADDR"] = client
        scheme = forwarded_scheme(environ.get("HTTP_X_FORWARDED_PROTO"))
        if scheme is not None and self._is_trusted(peer):
            environ["wsgi.url_scheme"] = scheme
        return self.wsgi_app(environ, start_response)

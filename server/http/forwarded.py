"""Who is on the other end of a request, as jobcast should believe it: the client's address and
the scheme it used, read through the reverse proxies the deployment trusts.

`X-Forwarded-For` and `X-Forwarded-Proto` are anyone's to send, so they are believed only from a
peer in `JOBCAST_TRUSTED_PROXIES`. The client is then the rightmost address of `X-Forwarded-For`
that is not a trusted proxy (what the last trusted hop saw), and the scheme the nearest proxy's
`X-Forwarded-Proto`. `JOBCAST_HTTPS` says the deployment is served over HTTPS whatever a request's
own scheme (a TLS terminator that sends no header).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from aiohttp import web

from jobcast.server.keys import SETTINGS

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Client:
    address: str
    scheme: str

    @property
    def secure(self) -> bool:
        return self.scheme == "https"


class TrustedProxies:
    """The networks of `JOBCAST_TRUSTED_PROXIES`, and what a request's peer says through them."""

    def __init__(self, spec: str, https: bool = False) -> None:
        self.https = https
        self.networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(part.strip(), strict=False) for part in spec.split(",") if part.strip()
        )

    def trusts(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.strip().strip("[]"))
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def client(self, request: web.Request) -> Client:
        peer = request.remote or ""
        scheme = request.scheme
        if self.networks and self.trusts(peer):
            hops = [h.strip() for h in ",".join(request.headers.getall("X-Forwarded-For", [])).split(",")]
            hops = [h for h in hops if h]
            peer = next((h for h in reversed(hops) if not self.trusts(h)), hops[0] if hops else peer)
            protos = request.headers.get("X-Forwarded-Proto", "").split(",")
            forwarded = protos[-1].strip().lower()
            if forwarded in ("http", "https"):
                scheme = forwarded
        return Client(peer, "https" if self.https else scheme)


CLIENT = web.RequestKey("client", Client)
PROXIES = web.AppKey("trusted_proxies", TrustedProxies)


def client_of(request: web.Request) -> Client:
    """The request's client, as the trusted proxies say (worked out once per request)."""
    known = request.get(CLIENT)
    if known is None:
        proxies = request.app.get(PROXIES)
        if proxies is None:  # an app that set none up: the request's own peer and scheme
            settings = request.app[SETTINGS]
            proxies = TrustedProxies(settings.trusted_proxies, settings.https)
        known = request[CLIENT] = proxies.client(request)
    return known

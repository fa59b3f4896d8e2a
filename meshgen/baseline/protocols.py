"""The protocol of a Service port, as Istio decides it: the one reading the planner and every backend share.

istiod's rule (``kube.ConvertProtocol`` and ``protocol.Parse`` in istio.io/istio ``pkg/config``):

1. ``protocol: UDP`` is UDP, whatever the name says;
2. ``appProtocol``, if set, is read instead of the port name; there ``kubernetes.io/h2c`` is HTTP/2,
   ``kubernetes.io/ws`` HTTP and ``kubernetes.io/wss`` HTTPS;
3. a name (or appProtocol) starting ``grpc-web`` is gRPC-Web; otherwise the part before the first ``-``, in any
   case, names the protocol: ``http``, ``http2``, ``https``, ``grpc``, ``tcp``, ``tls``, ``mongo``, ``mysql``,
   ``redis``, ``udp``, ``http_proxy``;
4. anything else (no name, ``web``, ``metrics``) is unknown, and Istio *sniffs* it: a connection that starts like
   HTTP is routed by the VirtualService's ``http`` routes, anything else by its ``tcp`` routes. Except on the
   well-known server-first ports 25, 53, 3306 and 27017, where an unknown port is plain TCP.

What follows for routing: only HTTP ports and sniffed ports ever apply ``http`` routes, so only they can carry a
routing key. TCP, TLS, HTTPS, Mongo, MySQL and Redis ports are opaque (``tcp`` and ``tls`` routes, one
destination per connection); UDP is not proxied at all.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

# Ports where istiod never sniffs an unnamed port (server-first protocols: the client would wait forever).
_WELL_KNOWN_TCP = frozenset({25, 53, 3306, 27017})
_GRPC_WEB = "grpc-web"


class Protocol(enum.StrEnum):
    """Istio's protocol names (``protocol.Instance``)."""

    GRPC = "GRPC"
    GRPC_WEB = "GRPC-Web"
    HTTP = "HTTP"
    HTTP_PROXY = "HTTP_PROXY"
    HTTP2 = "HTTP2"
    HTTPS = "HTTPS"
    TCP = "TCP"
    TLS = "TLS"
    UDP = "UDP"
    MONGO = "Mongo"
    REDIS = "Redis"
    MYSQL = "MySQL"
    UNKNOWN = "UnsupportedProtocol"  # not declared: sniffed

    @property
    def is_http(self) -> bool:
        """Carried over HTTP: every request is routed by the ``http`` routes."""
        return self in (Protocol.HTTP, Protocol.HTTP2, Protocol.HTTP_PROXY, Protocol.GRPC, Protocol.GRPC_WEB)

    @property
    def is_http2(self) -> bool:
        """Called upstream over HTTP/2."""
        return self in (Protocol.HTTP2, Protocol.GRPC, Protocol.GRPC_WEB)

    @property
    def is_sniffed(self) -> bool:
        """Not declared: HTTP is detected per connection and routed by ``http`` routes, the rest as TCP."""
        return self is Protocol.UNKNOWN

    @property
    def routes_requests(self) -> bool:
        """Whether ``http`` routes (and so a routing key) apply on the port: HTTP, or sniffed as HTTP."""
        return self.is_http or self.is_sniffed

    @property
    def is_opaque(self) -> bool:
        """A byte stream to Istio (``tcp``/``tls`` routes, one destination per connection): no request to key."""
        return self in (Protocol.TCP, Protocol.HTTPS, Protocol.TLS, Protocol.MONGO, Protocol.REDIS, Protocol.MYSQL)

    @property
    def is_tls(self) -> bool:
        """Opaque and TLS (``tls`` routes by SNI apply)."""
        return self in (Protocol.HTTPS, Protocol.TLS)


class Reading(NamedTuple):
    """A port's protocol and what decided it, for messages (``appProtocol 'mysql'``, ``name prefix 'tcp'``)."""

    protocol: Protocol
    reason: str


def read_port(port: int, name: str | None, protocol: str | None = None, app_protocol: str | None = None) -> Reading:
    """The protocol Istio gives a Service port (``protocol`` is the Kubernetes one, TCP when absent), and why."""
    if (protocol or "TCP").upper() == "UDP":
        return Reading(Protocol.UDP, "protocol UDP")
    if app_protocol is not None:
        text, source = app_protocol, "appProtocol"
        standard = {"kubernetes.io/h2c": Protocol.HTTP2, "kubernetes.io/ws": Protocol.HTTP,
                    "kubernetes.io/wss": Protocol.HTTPS}.get(app_protocol)
        if standard is not None:
            return Reading(standard, f"appProtocol {app_protocol!r}")
    else:
        text, source = name or "", "name prefix"
    if text[:len(_GRPC_WEB)].lower() == _GRPC_WEB:
        return Reading(Protocol.GRPC_WEB, f"{source} {text[:len(_GRPC_WEB)]!r}")
    prefix = text.split("-", 1)[0]
    found = _PARSE.get(prefix.lower())
    if found is not None:
        return Reading(found, f"{source} {prefix!r}" if source == "name prefix" else f"{source} {text!r}")
    if port in _WELL_KNOWN_TCP:
        return Reading(Protocol.TCP, f"well-known port {port} with no known protocol")
    described = f"{source} {text!r}" if text else "no name"
    return Reading(Protocol.UNKNOWN, f"{described}: no known protocol, so Istio sniffs it")


def port_protocol(port: int, name: str | None, protocol: str | None = None,
                  app_protocol: str | None = None) -> Protocol:
    """The protocol Istio gives a Service port (see :func:`read_port`)."""
    return read_port(port, name, protocol, app_protocol).protocol


_PARSE = {
    "tcp": Protocol.TCP, "udp": Protocol.UDP, "grpc": Protocol.GRPC, "grpc-web": Protocol.GRPC_WEB,
    "http": Protocol.HTTP, "http_proxy": Protocol.HTTP_PROXY, "http2": Protocol.HTTP2, "https": Protocol.HTTPS,
    "tls": Protocol.TLS, "mongo": Protocol.MONGO, "redis": Protocol.REDIS, "mysql": Protocol.MYSQL,
}

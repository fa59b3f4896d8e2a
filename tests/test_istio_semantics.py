"""Istio's readings of the baseline, each stated as istiod's source states it: a port's protocol
(``kube.ConvertProtocol``), which mesh VirtualService serves a host (creation order, exportTo groups, exact over
wildcard) and how a delegate's routes merge into their root (``MergeHTTPRoutes``)."""

from __future__ import annotations

from typing import Any

import pytest

from meshgen.baseline import delegation, precedence
from meshgen.baseline.model import Baseline, ObjectKey, Resource
from meshgen.baseline.protocols import Protocol, read_port


@pytest.mark.parametrize(("port", "name", "protocol", "app_protocol", "expected"), [
    (80, "http", None, None, Protocol.HTTP),
    (80, "HTTP-web", None, None, Protocol.HTTP),  # the prefix is read in any case
    (80, "http2", None, None, Protocol.HTTP2),
    (80, "grpc-api", None, None, Protocol.GRPC),
    (80, "grpc-web", None, None, Protocol.GRPC_WEB),  # read before the prefix split: it contains '-'
    (80, "grpc-web-ui", None, None, Protocol.GRPC_WEB),
    (443, "https", None, None, Protocol.HTTPS),
    (9000, "tcp-other", None, None, Protocol.TCP),
    (9000, "tls", None, None, Protocol.TLS),
    (27018, "mongo", None, None, Protocol.MONGO),
    (6379, "redis", None, None, Protocol.REDIS),
    (3307, "mysql-primary", None, None, Protocol.MYSQL),
    (53, "dns", "UDP", None, Protocol.UDP),  # protocol UDP wins over everything
    (53, "http", "UDP", "http", Protocol.UDP),
    (8080, "web", None, None, Protocol.UNKNOWN),  # no known prefix: sniffed
    (8080, None, None, None, Protocol.UNKNOWN),
    (3306, None, None, None, Protocol.TCP),  # well-known server-first ports are never sniffed
    (27017, "data", None, None, Protocol.TCP),
    (25, None, None, None, Protocol.TCP),
    (8080, "tcp", None, "http", Protocol.HTTP),  # appProtocol replaces the name
    (8080, "http", None, "mysql", Protocol.MYSQL),
    (8080, "tcp", None, "kubernetes.io/h2c", Protocol.HTTP2),
    (8080, "tcp", None, "kubernetes.io/ws", Protocol.HTTP),
    (8080, "http", None, "kubernetes.io/wss", Protocol.HTTPS),
    (8080, "http", None, "custom", Protocol.UNKNOWN),  # an unknown appProtocol is not the name's fallback
])
def test_port_protocol_is_istiods(port: int, name: str | None, protocol: str | None, app_protocol: str | None,
                                  expected: Protocol) -> None:
    assert read_port(port, name, protocol, app_protocol).protocol is expected


def test_only_http_and_sniffed_ports_route_requests() -> None:
    routing = {p for p in Protocol if p.routes_requests}
    assert routing == {Protocol.HTTP, Protocol.HTTP2, Protocol.HTTP_PROXY, Protocol.GRPC, Protocol.GRPC_WEB,
                       Protocol.UNKNOWN}
    assert {p for p in Protocol if p.is_opaque} == {Protocol.TCP, Protocol.TLS, Protocol.HTTPS, Protocol.MONGO,
                                                    Protocol.REDIS, Protocol.MYSQL}


def _vs(namespace: str, name: str, hosts: list[str], created: str | None = None,
        export_to: list[str] | None = None, http: bool = True) -> Resource:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if created:
        meta["creationTimestamp"] = created
    spec: dict[str, Any] = {"hosts": hosts}
    if export_to is not None:
        spec["exportTo"] = export_to
    if http:
        spec["http"] = [{"name": name, "route": [{"destination": {"host": hosts[0]}}]}]
    return Resource(ObjectKey("VirtualService", namespace, name), {"metadata": meta, "spec": spec})


REVIEWS = "reviews.bookinfo.svc.cluster.local"


def test_sidecar_order_is_private_then_exported_then_public_each_oldest_first() -> None:
    public_old = _vs("bookinfo", "z-public", ["reviews"], "2020-01-01T00:00:00Z")
    public_new = _vs("bookinfo", "a-public", ["reviews"], "2024-01-01T00:00:00Z")
    private = _vs("bookinfo", "private", ["reviews"], "2025-01-01T00:00:00Z", export_to=["."])
    exported = _vs("tools", "exported", ["reviews.bookinfo.svc.cluster.local"], export_to=["bookinfo"])
    hidden = _vs("tools", "hidden", ["reviews.bookinfo.svc.cluster.local"], export_to=["."])
    ordered = precedence.sidecar_order([public_new, hidden, exported, private, public_old], "bookinfo")
    assert [vs.name for vs in ordered] == ["private", "exported", "z-public", "a-public"]
    # no timestamps: name, then namespace
    same = [_vs("b", "reviews", ["reviews.a.svc.cluster.local"]), _vs("a", "reviews", ["reviews.a.svc.cluster.local"]),
            _vs("c", "alpha", ["reviews.a.svc.cluster.local"])]
    assert [(v.namespace, v.name) for v in precedence.sidecar_order(same, "x")] == [
        ("c", "alpha"), ("a", "reviews"), ("b", "reviews")]


def test_http_winner_exact_beats_wildcard_and_skips_one_without_routes_for_the_port() -> None:
    wildcard = _vs("bookinfo", "a-wild", ["*.bookinfo.svc.cluster.local"])
    tcp_only = _vs("bookinfo", "b-tcp", ["reviews"], http=False)
    exact = _vs("bookinfo", "c-exact", ["reviews"])
    ordered = precedence.sidecar_order([wildcard, tcp_only, exact], "bookinfo")
    assert precedence.http_winner(ordered, REVIEWS, 9080, "cluster.local") is exact
    # a wildcard applies only where no VirtualService names the host exactly
    assert precedence.http_winner(ordered, "ratings.bookinfo.svc.cluster.local", 9080, "cluster.local") is wildcard
    # an exact one without http routes blocks the wildcard: istiod's default route
    alone = precedence.sidecar_order([wildcard, tcp_only], "bookinfo")
    assert precedence.http_winner(alone, REVIEWS, 9080, "cluster.local") is None


def test_conflicts_are_istioctls_ist0109_groups() -> None:
    a, b = _vs("bookinfo", "a", ["reviews"]), _vs("bookinfo", "b", ["reviews.bookinfo.svc.cluster.local"])
    scoped = _vs("bookinfo", "c", ["ratings"], export_to=["."])
    public = _vs("other", "d", ["ratings.bookinfo.svc.cluster.local"])
    found = precedence.conflicts([a, b, scoped, public], "cluster.local")
    assert {k: sorted(v.name for v in vs) for k, vs in found.items()} == {
        "*/reviews.bookinfo.svc.cluster.local": ["a", "b"],
        "bookinfo/ratings.bookinfo.svc.cluster.local": ["c", "d"],
    }
    assert precedence.conflict_message("*/reviews.bookinfo.svc.cluster.local", [b, a]) == (
        "IST0109: The VirtualServices bookinfo/a,bookinfo/b associated with mesh gateway define the same host "
        "*/reviews.bookinfo.svc.cluster.local which can lead to undefined behavior. This can be fixed by merging "
        "the conflicting VirtualServices into a single resource.")


def test_delegate_routes_merge_into_the_root_as_istiod_merges_them() -> None:
    root = Resource(ObjectKey("VirtualService", "shop", "root"), {
        "metadata": {"name": "root", "namespace": "shop"},
        "spec": {"hosts": ["web"], "http": [{"name": "api", "match": [{"uri": {"prefix": "/api"}}],
                                             "timeout": "3s", "delegate": {"name": "leaf"}}]}})
    leaf = Resource(ObjectKey("VirtualService", "shop", "leaf"), {
        "metadata": {"name": "leaf", "namespace": "shop"},
        "spec": {"http": [
            {"name": "v2", "match": [{"uri": {"prefix": "/api/v2"}, "headers": {"x": {"exact": "1"}}}],
             "route": [{"destination": {"host": "api-v2"}}]},
            {"name": "elsewhere", "match": [{"uri": {"prefix": "/static"}}],  # not under /api: dropped
             "route": [{"destination": {"host": "static"}}]},
            {"route": [{"destination": {"host": "api"}}], "timeout": "1s"},
        ]}})
    baseline = Baseline.of([root, leaf])
    route = root.spec["http"][0]
    found = delegation.delegate_of(route, root, baseline)
    assert found is leaf
    assert list(delegation.merged(route, leaf)) == [
        (0, {"name": "api-v2", "match": [{"uri": {"prefix": "/api/v2"}, "headers": {"x": {"exact": "1"}}}],
             "route": [{"destination": {"host": "api-v2"}}], "timeout": "3s"}),
        (2, {"name": "api", "match": [{"uri": {"prefix": "/api"}}], "route": [{"destination": {"host": "api"}}],
             "timeout": "1s"}),
    ]
    # a delegate not exported to the root's namespace is not found (istiod drops the root route)
    private = Resource(leaf.key, {"metadata": leaf.metadata, "spec": {**leaf.spec, "exportTo": ["other"]}})
    assert delegation.delegate_of(route, root, Baseline.of([root, private])) is None

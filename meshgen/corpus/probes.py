"""What the corpus sends for one baseline: sandboxes, routing-key variants and requests, all generated from it.

- **Sandboxes**: every HTTP workload (a Deployment behind a Service port that routes requests) forked in turn, each
  in its own sandbox with its own key; one sandbox claiming the first of them as a virtual workload; one route
  group over two forks behind different hosts. A workload reached only over opaque TCP is not forked: meshgen
  refuses that by design (README, TCP ports), and the notes say so.
- **Variants**: each request goes without a key, with a key no sandbox claims, and with each sandbox's and the
  route group's key. Each variant states what its key must change (:class:`Variant`), from the baseline alone:
  a fork takes over every Service host that selects the workload it forks, so an answer served through such a
  host comes from the fork instead; nothing else changes.
- **Requests** (:class:`Probe`): one per match block of every http route of the VirtualService istiod uses for each
  Service host (its path, headers, query, method and port), else one per match of every rule of the HTTPRoutes and
  GRPCRoutes attached to the Service (GAMMA), else one per Service port that routes requests; one TCP connection
  per opaque port; and, through the edge, one per match block of every route bound to a Gateway that exists (an
  Istio Gateway's VirtualServices, a Gateway API Gateway's HTTPRoutes, one per host name). A match the request
  cannot meet (a ``sourceLabels`` the test client lacks, an ``authority`` other than the host) is sent anyway and
  noted: the oracle compares answers, whichever route gives them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from meshgen import traffic
from meshgen.backends.localmesh import served_at_edge
from meshgen.baseline import precedence, protocols
from meshgen.baseline.model import (
    DEPLOYMENT,
    GATEWAY,
    GRPC_ROUTE,
    HTTP_ROUTE,
    KUBERNETES_GATEWAY,
    SERVICE,
    VIRTUAL_SERVICE,
    Baseline,
    ObjectKey,
    Resource,
    gateways,
    is_mesh_bound,
    pod_labels,
    resolve_host,
    selects,
    service_fqdn,
)
from meshgen.documents import JsonObject
from meshgen.plan import http_routes
from meshgen.plan.routing import Match, MatchKind, Route, StringMatch
from meshgen.spec.models import API_VERSION, DEFAULT_ROUTING_HEADER
from meshgen.spec.names import SANDBOX_NAME_MAX, fit_name

UNCLAIMED_KEY = "corpus-unclaimed"
EDGE_HOST = "corpus.example.com"  # the Host an edge request sends for a gateway VirtualService of hosts ["*"]
PAIR_LABEL = "corpus-pair"
DOMAIN = "cluster.local"
# The corpus's MeshPolicy: the default, except that clients on loopback keep their key at the edge (so a key
# reaches forks through a gateway too) and sandboxes may fork in istio-system (where Istio's addons live).
POLICY: JsonObject = {
    "apiVersion": API_VERSION, "kind": "MeshPolicy", "metadata": {"name": "corpus"},
    "spec": {"ingress": {"mode": "allowCidrs", "allowCidrs": ["127.0.0.0/8"]},
             "guardrails": {"deniedNamespaces": ["kube-system"]}},
}


@dataclass(frozen=True)
class Variant:
    """A way every request is sent: ``key`` in the routing header (none: no header), and what that key must
    change: a served workload reached through a host in ``forks`` comes from that fork identity instead."""

    name: str
    key: str | None
    forks: Mapping[str, str]


NO_KEY = Variant("no key", None, {})
UNCLAIMED = Variant("unclaimed key", UNCLAIMED_KEY, {})


@dataclass(frozen=True)
class Probe:
    """One request of the corpus (without a key) and the route or port it was derived from."""

    request: traffic.Request
    origin: str

    @property
    def keyed(self) -> bool:
        """Whether a key can travel with it (a TCP connection has no header to carry one)."""
        return self.request.protocol == "http"

    @property
    def addressed(self) -> str:
        """The host whose routes serve it: the Service host, or ``edge:<Host>`` through the edge."""
        return f"edge:{self.request.host}" if self.request.via == "edge" else self.request.host

    def sent(self, variant: Variant) -> traffic.Request:
        """The request as sent in ``variant``."""
        if variant.key is None:
            return self.request
        return self.request.model_copy(update={"headers": {**self.request.headers,
                                                           DEFAULT_ROUTING_HEADER: variant.key}})


@dataclass(frozen=True)
class Generated:
    """Everything the corpus sends for one baseline."""

    specs: tuple[JsonObject, ...]
    variants: tuple[Variant, ...]
    probes: tuple[Probe, ...]
    notes: tuple[str, ...]
    fronting: Mapping[str, frozenset[str]]  # workload identity -> the hosts that select it
    destinations: Mapping[str, frozenset[str]]  # addressed host -> every host its routes may send to
    request_headers: frozenset[str]  # header names the baseline's routes edit, compared in answers
    response_headers: frozenset[str]


def generate(baseline: Baseline, namespaces: Sequence[str], prefix: str) -> Generated:
    """Sandboxes (named ``<prefix>-...``), variants and requests for the part of ``baseline`` in ``namespaces``."""
    notes: list[str] = []
    deployments = [d for d in baseline.of_kind(DEPLOYMENT) if d.namespace in namespaces]
    forkable = []
    for deployment in deployments:
        services = baseline.services_fronting(deployment)
        if any(_routes_requests(p) for s in services for p in s.spec.get("ports") or []):
            forkable.append(deployment)
        elif services:
            notes.append(f"{deployment.namespace}/{deployment.name} not forked: reached only over opaque TCP, where "
                         "meshgen refuses a fork (no key can reach it)")
    specs, variants = _sandboxes(baseline, forkable, prefix, notes)
    probes = [*_mesh_probes(baseline, namespaces, notes), *_edge_probes(baseline, namespaces, notes)]
    request_headers, response_headers = _edited_headers(baseline, namespaces)
    return Generated(tuple(specs), (NO_KEY, UNCLAIMED, *variants), tuple(probes), tuple(notes),
                     _fronting(baseline, deployments), _destinations(baseline, namespaces),
                     request_headers, response_headers)


def _routes_requests(port: Mapping[str, Any]) -> bool:
    return protocols.port_protocol(int(port["port"]), port.get("name"), port.get("protocol"),
                                   port.get("appProtocol")).routes_requests


def _hosts(baseline: Baseline, deployment: Resource) -> frozenset[str]:
    return frozenset(service_fqdn(s.namespace, s.name, DOMAIN) for s in baseline.services_fronting(deployment))


def _sandboxes(baseline: Baseline, forkable: Sequence[Resource], prefix: str,
               notes: list[str]) -> tuple[list[JsonObject], list[Variant]]:
    specs: list[JsonObject] = []
    variants: list[Variant] = []
    forks: dict[str, tuple[str, Resource]] = {}
    for deployment in forkable:
        name = fit_name(f"{prefix}-{deployment.name}", limit=SANDBOX_NAME_MAX)
        forks[name] = (name, deployment)
        identity = f"{deployment.name}@{name}"
        variants.append(Variant(name, name, dict.fromkeys(sorted(_hosts(baseline, deployment)), identity)))
    pair = _pair(baseline, [d for _, d in forks.values()])
    for name, deployment in forks.values():
        labels = {PAIR_LABEL: prefix} if deployment in pair else {}
        container = ((deployment.spec.get("template") or {}).get("spec") or {}).get("containers") or [{}]
        fork: JsonObject = {"forkOf": {"kind": DEPLOYMENT, "namespace": deployment.namespace,
                                       "name": deployment.name},
                            "customizations": {"env": [{"container": container[0].get("name"), "name": "CORPUS_FORK",
                                                        "value": name}]}}
        specs.append(_spec("Sandbox", name, {"routingKey": name, "forks": [fork]}, labels))
    if forkable:
        first = forkable[0]
        name = fit_name(f"{prefix}-virtual", limit=SANDBOX_NAME_MAX)
        specs.append(_spec("Sandbox", name, {"routingKey": name, "virtual": [
            {"name": "corpus", "workload": {"kind": DEPLOYMENT, "namespace": first.namespace, "name": first.name}}]}))
        variants.append(Variant(name, name, {}))
    if pair:
        name = fit_name(f"{prefix}-pair", limit=SANDBOX_NAME_MAX)
        specs.append(_spec("RouteGroup", name, {"routingKey": name, "match": {
            "all": [{"label": {"key": PAIR_LABEL, "value": prefix}}]}}))
        both = {h: i for v in variants if v.name in {n for n, d in forks.values() if d in pair}
                for h, i in v.forks.items()}
        variants.append(Variant(name, name, dict(sorted(both.items()))))
    elif len(forkable) > 1:
        notes.append("no route group: no two forked workloads sit behind different hosts")
    return specs, variants


def _pair(baseline: Baseline, forked: Sequence[Resource]) -> tuple[Resource, ...]:
    """Two forked workloads that no host fronts both of (a route group's key reaches each fork's hosts)."""
    for i, first in enumerate(forked):
        for second in forked[i + 1:]:
            if not _hosts(baseline, first) & _hosts(baseline, second):
                return (first, second)
    return ()


def _spec(kind: str, name: str, spec: JsonObject, labels: Mapping[str, str] | None = None) -> JsonObject:
    metadata: JsonObject = {"name": name, **({"labels": dict(labels)} if labels else {})}
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": metadata, "spec": spec}


def _mesh_probes(baseline: Baseline, namespaces: Sequence[str], notes: list[str]) -> Iterator[Probe]:
    services = [s for s in baseline.of_kind(SERVICE) if s.namespace in namespaces and s.spec.get("ports")]
    attached: dict[str, list[tuple[Resource, Route]]] = {}
    for resource in _gateway_api_routes(baseline, namespaces):
        for host in http_routes.parents(resource, DOMAIN).hosts:
            attached.setdefault(host, []).extend((resource, r) for r in http_routes.routes_of(resource, DOMAIN))
    for service in services:
        fqdn = service_fqdn(service.namespace, service.name, DOMAIN)
        ordered = precedence.sidecar_order(baseline.of_kind(VIRTUAL_SERVICE), service.namespace)
        http_ports = [int(p["port"]) for p in service.spec["ports"] if _routes_requests(p)]
        winner = precedence.http_winner(ordered, fqdn, None, DOMAIN) if http_ports else None
        if winner is not None:
            yield from _route_probes(winner, fqdn, "mesh", http_ports[0], notes)
        elif http_ports and fqdn in attached:
            for resource, route in attached[fqdn]:
                yield from _rule_probes(resource, route, fqdn, "mesh", http_ports[0])
        else:
            for port in http_ports:
                yield Probe(traffic.Request(host=fqdn, port=port), f"Service {service.namespace}/{service.name} "
                                                                    f"port {port}")
        for port in service.spec["ports"]:
            reading = protocols.read_port(int(port["port"]), port.get("name"), port.get("protocol"),
                                          port.get("appProtocol"))
            if reading.protocol.is_opaque:
                yield Probe(traffic.Request(host=fqdn, port=int(port["port"]), protocol="tcp"),
                            f"Service {service.namespace}/{service.name} port {port['port']} ({reading.reason})")


def _edge_probes(baseline: Baseline, namespaces: Sequence[str], notes: list[str]) -> Iterator[Probe]:
    existing = tuple(g.key for g in baseline.of_kind(GATEWAY))
    for vs in baseline.of_kind(VIRTUAL_SERVICE):
        if vs.namespace not in namespaces or not served_at_edge(vs, existing):
            continue
        for host in vs.spec.get("hosts") or []:
            name = _edge_host(str(host))
            yield from _route_probes(vs, name, "edge", None, notes)
            if vs.spec.get("tcp") or vs.spec.get("tls"):
                notes.append(f"VirtualService {vs.namespace}/{vs.name}: its tcp/tls routes at gateway "
                             f"{', '.join(gateways(vs))} get no request: the test edge serves HTTP on one port")
    existing_api = tuple(g.key for g in baseline.of_kind(KUBERNETES_GATEWAY))
    for resource in _gateway_api_routes(baseline, namespaces):
        for name in _edge_names(resource, existing_api):
            for route in http_routes.routes_of(resource, DOMAIN):
                yield from _rule_probes(resource, route, name, "edge", None)


def _edge_host(host: str) -> str:
    """The Host an edge request sends for a route's host: :data:`EDGE_HOST` for ``*``, a wildcard's first label
    made ``www``."""
    return EDGE_HOST if host == "*" else host.replace("*", "www", 1)


def _gateway_api_routes(baseline: Baseline, namespaces: Sequence[str]) -> list[Resource]:
    return [r for kind in (HTTP_ROUTE, GRPC_ROUTE) for r in baseline.of_kind(kind) if r.namespace in namespaces]


def _edge_names(resource: Resource, existing: Sequence[ObjectKey]) -> list[str]:
    """The Host names an edge request sends for a Gateway API route attached to a Gateway that exists (none, when
    it is not): one per ``hostnames`` entry (:func:`_edge_host`; none: every host)."""
    if not set(http_routes.parents(resource, DOMAIN).gateways) & set(existing):
        return []
    names = [str(h).lower() for h in resource.spec.get("hostnames") or []] or ["*"]
    return [_edge_host(h) for h in names]


def _rule_probes(resource: Resource, route: Route, host: str, via: str, port: int | None) -> Iterator[Probe]:
    """One request per match of a Gateway API rule (read as istiod reads it: :mod:`meshgen.plan.http_routes`)."""
    for number, match in enumerate(route.matches or (Match(),)):
        fields: dict[str, Any] = {"host": host, "via": via}
        if via == "mesh" and (match.port or port) is not None:
            fields["port"] = int(match.port or port or 0)
        fields.update(_neutral_matching(match))
        where = f"{resource.key.kind} {resource.namespace}/{resource.name} rules[{route.origin.index}]" + (
            f" matches[{number}]" if route.origin.body.get("matches") else "") + (" via edge" if via == "edge" else "")
        yield Probe(traffic.Request.model_validate(fields), where)


def _neutral_matching(match: Match) -> dict[str, Any]:
    """Request fields that meet one neutral match: its path, headers, query and method."""
    fields: dict[str, Any] = {}
    path = _neutral_string(match.path, "/")
    query = "&".join(f"{q.name}={_neutral_string(q.value, 'x')}" for q in match.query)
    fields["path"] = (path if path.startswith("/") else f"/{path}") + (f"?{query}" if query else "")
    headers = {h.name.lower(): _neutral_string(h.value, "corpus") for h in match.headers if not h.invert}
    if headers:
        fields["headers"] = headers
    if match.method is not None:
        fields["method"] = _neutral_string(match.method, "GET")
    return fields


def _neutral_string(match: StringMatch | None, default: str) -> str:
    """A value that meets a neutral string match (exact, prefix, segment prefix, or a regex of common shapes)."""
    if match is None:
        return default
    if match.kind is MatchKind.REGEX:
        return regex_sample(match.value) or default
    return match.value or default


def _route_probes(vs: Resource, host: str, via: str, port: int | None, notes: list[str]) -> Iterator[Probe]:
    for index, route in enumerate(vs.spec.get("http") or []):
        for number, block in enumerate(route.get("match") or [{}]):
            fields: dict[str, Any] = {"host": host, "via": via}
            request_port = block.get("port") if via == "mesh" else None
            if request_port is not None or port is not None:
                fields["port"] = int(request_port or port or 0)
            fields.update(_matching(block, f"VirtualService {vs.namespace}/{vs.name} http[{index}]", notes))
            where = f"VirtualService {vs.namespace}/{vs.name} http[{index}]" + (
                f" match[{number}]" if route.get("match") else "") + (" via edge" if via == "edge" else "")
            yield Probe(traffic.Request.model_validate(fields), where)


def _matching(block: Mapping[str, Any], where: str, notes: list[str]) -> dict[str, Any]:
    """Request fields that meet one match block: its path, headers, query and method."""
    fields: dict[str, Any] = {}
    path = _string_match(block.get("uri"), "/") or "/"
    query = "&".join(f"{name}={_string_match(m, 'x')}" for name, m in sorted((block.get("queryParams") or {}).items()))
    fields["path"] = (path if path.startswith("/") else f"/{path}") + (f"?{query}" if query else "")
    headers = {str(name).lower(): _string_match(m, "corpus") for name, m in (block.get("headers") or {}).items()}
    if headers:
        fields["headers"] = headers
    method = _string_match(block.get("method"), "GET")
    if method:
        fields["method"] = method
    for field, why in (("sourceLabels", "the test client has other labels"),
                       ("sourceNamespace", "the test client is in the host's namespace"),
                       ("authority", "the request's authority is the host it addresses"),
                       ("gateways", "the request comes from where its host is served")):
        if block.get(field):
            notes.append(f"{where}: match on {field} sent anyway ({why})")
    return fields


def _string_match(match: Any, default: str) -> str:
    """A value that meets an Istio StringMatch (exact, prefix, or an RE2 regex of the common shapes)."""
    if not isinstance(match, dict) or not match:
        return default
    if "exact" in match:
        return str(match["exact"])
    if "prefix" in match:
        return str(match["prefix"]) or default
    if "regex" in match:
        return regex_sample(str(match["regex"])) or default
    return default


_SIMPLE = {r"\d": "0", r"\w": "a", r"\s": " ", ".": "a"}


def regex_sample(pattern: str) -> str | None:
    """A string the regex matches in full, for the shapes routes use (literals, escapes, ``.``, classes, groups
    of alternatives, ``? * + {n}``); None when the pattern is beyond that."""
    out: list[str] = []
    tokens = re.findall(r"\\.|\[[^\]]*\]|\([^()]*\)|\{\d+(?:,\d*)?\}|[*+?]|.", pattern)
    for token in tokens:
        repeat = re.fullmatch(r"\{(\d+)(?:,\d*)?\}", token)
        if token in ("*", "?") or repeat:
            last = out.pop() if out else ""
            out.append(last * int(repeat[1]) if repeat else "")
            continue
        if token == "+":
            continue
        if token.startswith("[") and len(token) > 2:
            out.append(token[1] if token[1] != "^" else "a")
        elif token.startswith("(") and token.endswith(")"):
            out.append(regex_sample(token[1:-1].split("|")[0].removeprefix("?:")) or "")
        elif token in _SIMPLE:
            out.append(_SIMPLE[token])
        elif token.startswith("\\"):
            out.append(token[1])
        elif token in "^$":
            continue
        else:
            out.append(token)
    sample = "".join(out)
    try:
        return sample if re.fullmatch(pattern, sample) else None
    except re.error:
        return None


def _fronting(baseline: Baseline, deployments: Sequence[Resource]) -> dict[str, frozenset[str]]:
    """Which hosts select each workload (any Service with ports whose selector picks its pods)."""
    services = [s for s in baseline.of_kind(SERVICE) if s.spec.get("ports")]
    return {d.name: frozenset(service_fqdn(s.namespace, s.name, DOMAIN) for s in services
                              if s.namespace == d.namespace and selects(s.spec.get("selector") or {}, pod_labels(d)))
            for d in deployments}


def _destinations(baseline: Baseline, namespaces: Sequence[str]) -> dict[str, frozenset[str]]:
    """For each host a request or a call may address, every host a route there may send it to (itself when no
    route covers it): which Service a hop was served through."""
    found: dict[str, set[str]] = {}
    existing = tuple(g.key for g in baseline.of_kind(GATEWAY))
    for service in baseline.of_kind(SERVICE):
        fqdn = service_fqdn(service.namespace, service.name, DOMAIN)
        found.setdefault(fqdn, {fqdn})
    for vs in baseline.of_kind(VIRTUAL_SERVICE):
        hosts = [resolve_host(str(h), vs.namespace, DOMAIN) for h in vs.spec.get("hosts") or []]
        targets = {resolve_host(str(d["destination"]["host"]), vs.namespace, DOMAIN)
                   for kind in ("http", "tcp", "tls") for route in vs.spec.get(kind) or []
                   for d in route.get("route") or [] if isinstance(d.get("destination"), dict)}
        for host in hosts:
            if is_mesh_bound(vs):
                for fqdn in found:
                    if host == fqdn or (host.startswith("*") and fqdn.endswith(host[1:])) or host == "*":
                        found[fqdn] |= targets
            if vs.namespace in namespaces and served_at_edge(vs, existing):
                edge = _edge_host(host)
                found.setdefault(f"edge:{edge}", set()).update(targets)
    existing_api = tuple(g.key for g in baseline.of_kind(KUBERNETES_GATEWAY))
    ports = {service_fqdn(s.namespace, s.name, DOMAIN): {int(p["port"]) for p in s.spec.get("ports") or []}
             for s in baseline.of_kind(SERVICE)}
    gamma: dict[str, set[str]] = {}
    caught: set[str] = set()
    for resource in _gateway_api_routes(baseline, list(namespaces)):
        routes = http_routes.routes_of(resource, DOMAIN)
        targets = {d.host for r in routes for d in r.destinations}
        for fqdn in http_routes.parents(resource, DOMAIN).hosts:
            gamma.setdefault(fqdn, set()).update(targets)
            # A rule that takes every request on every port of the Service: none reaches the Service itself
            # unless a rule sends it there (a VirtualService's routes name the host itself, with a subset).
            if any(_catches_all(m, ports.get(fqdn, set())) for r in routes for m in r.matches or (Match(),)):
                caught.add(fqdn)
        for name in _edge_names(resource, existing_api):
            found.setdefault(f"edge:{name}", set()).update(targets)
    for fqdn, targets in gamma.items():
        found[fqdn] = targets | (found.get(fqdn, {fqdn}) - ({fqdn} if fqdn in caught else set()))
    return {host: frozenset(targets) for host, targets in found.items()}


def _catches_all(match: Match, ports: set[int]) -> bool:
    """Whether a neutral match takes every request to a Service with ``ports``: any path, nothing else matched."""
    path = match.path is None or (match.path.kind is MatchKind.PREFIX and match.path.value == "/")
    return path and not (match.headers or match.query or match.method) and (
        match.port is None or ports <= {match.port})


def _edited_headers(baseline: Baseline, namespaces: Sequence[str]) -> tuple[frozenset[str], frozenset[str]]:
    """The header names the baseline's routes set, add or remove, on requests and on responses."""
    edits: dict[str, set[str]] = {"request": set(), "response": set()}
    for vs in baseline.of_kind(VIRTUAL_SERVICE):
        if vs.namespace not in namespaces:
            continue
        for route in vs.spec.get("http") or []:
            for holder in [route, *(route.get("route") or [])]:
                for direction, names in edits.items():
                    edit = ((holder.get("headers") or {}).get(direction)) or {}
                    names.update(str(n).lower() for op in ("set", "add") for n in edit.get(op) or {})
                    names.update(str(n).lower() for n in edit.get("remove") or [])
    for resource in _gateway_api_routes(baseline, namespaces):
        for route in http_routes.routes_of(resource, DOMAIN):
            for headers in (route.headers, *(d.headers for d in route.destinations)):
                for direction, change in (("request", headers.request), ("response", headers.response)):
                    edits[direction].update(n.lower() for n, _ in (*change.set, *change.add))
                    edits[direction].update(n.lower() for n in change.remove)
    return frozenset(edits["request"]), frozenset(edits["response"])

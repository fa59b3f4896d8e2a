"""Reading the baseline from Kubernetes manifests (``--baseline DIR``) or from objects a cluster returned.

Only the kinds the planner needs are kept; everything else in a manifest directory (ConfigMaps, Secrets, CRDs)
is ignored. The fields meshgen relies on are checked here, so the planner can trust their shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from meshgen.baseline.model import (
    DEPLOYMENT,
    DESTINATION_RULE,
    KINDS,
    SERVICE,
    VIRTUAL_SERVICE,
    Baseline,
    ObjectKey,
    Resource,
)
from meshgen.documents import Document
from meshgen.errors import Location, Problem, raise_if_any
from meshgen.ownership import is_owned, without_meshgen_routes

ISTIO_NETWORKING_VERSIONS = ("networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3")
_API_VERSIONS: Mapping[str, tuple[str, ...]] = {
    DEPLOYMENT: ("apps/v1",),
    SERVICE: ("v1",),
    VIRTUAL_SERVICE: ISTIO_NETWORKING_VERSIONS,
    DESTINATION_RULE: ISTIO_NETWORKING_VERSIONS,
}


def load_baseline(documents: Iterable[Document], default_namespace: str = "default") -> Baseline:
    """Build the baseline from manifest documents. ``List`` objects are flattened; objects without a
    namespace are placed in ``default_namespace`` (what ``kubectl apply -n`` would do).

    meshgen's own output is not baseline: objects it owns are skipped and the routes it added to a user's
    VirtualService are removed, so compiling over a cluster (or over earlier output) gives the same result as
    compiling over the untouched baseline."""
    resources: dict[ObjectKey, Resource] = {}
    problems: list[Problem] = []
    for location, raw in _flatten(documents):
        kind = raw.get("kind")
        if kind not in KINDS or raw.get("apiVersion") not in _API_VERSIONS[kind] or is_owned(raw):
            continue
        body = without_meshgen_routes(raw) if kind == VIRTUAL_SERVICE else raw
        found = check_object(body, location)
        if found:
            problems.extend(found)
            continue
        meta = body["metadata"]
        key = ObjectKey(kind, meta.get("namespace") or default_namespace, meta["name"])
        if key in resources:
            first = resources[key].location
            problems.append(
                Problem(location.at("metadata", "name"), f"{key} is defined twice (also in {first})", "remove one")
            )
            continue
        if not meta.get("namespace"):
            body = {**body, "metadata": {**meta, "namespace": key.namespace}}
        resources[key] = Resource(key, body, location)
    raise_if_any(problems)
    return Baseline.of(resources.values())


def baseline_from_objects(objects: Iterable[Mapping[str, Any]], source: str) -> Baseline:
    """Build the baseline from objects read from a cluster (already namespaced)."""
    docs = [Document(Location(source, i), dict(o)) for i, o in enumerate(objects)]
    return load_baseline(docs)


def _flatten(documents: Iterable[Document]) -> Iterable[tuple[Location, dict[str, Any]]]:
    for doc in documents:
        if doc.body.get("kind") == "List" and isinstance(doc.body.get("items"), list):
            for i, item in enumerate(doc.body["items"]):
                if isinstance(item, dict):
                    yield doc.location.at("items", i), item
        else:
            yield doc.location, doc.body


def check_object(body: Mapping[str, Any], location: Location) -> list[Problem]:
    """Problems with the fields of a baseline object that meshgen reads."""
    problems: list[Problem] = []

    def need(ok: bool, path: tuple[str | int, ...], message: str) -> bool:
        if not ok:
            problems.append(Problem(location.at(*path), message))
        return ok

    meta = body.get("metadata")
    if not need(isinstance(meta, dict) and isinstance(meta.get("name"), str), ("metadata", "name"),
                "metadata.name is required"):
        return problems
    if not need(isinstance(body.get("spec"), dict), ("spec",), "spec must be a mapping"):
        return problems
    spec: dict[str, Any] = body["spec"]
    kind = body["kind"]
    if kind == DEPLOYMENT:
        template = spec.get("template")
        labels = ((template or {}).get("metadata") or {}).get("labels") if isinstance(template, dict) else None
        need(_str_map(labels) and bool(labels), ("spec", "template", "metadata", "labels"),
             "a Deployment's pod template needs labels (string values)")
        containers = ((template or {}).get("spec") or {}).get("containers") if isinstance(template, dict) else None
        need(isinstance(containers, list), ("spec", "template", "spec", "containers"),
             "a Deployment needs a list of containers")
        if isinstance(containers, list) and need(bool(containers), ("spec", "template", "spec", "containers"),
                                                 "a Deployment needs at least one container"):
            for i, c in enumerate(containers):
                need(isinstance(c, dict) and isinstance(c.get("name"), str),
                     ("spec", "template", "spec", "containers", i, "name"), "a container needs a name")
    elif kind == SERVICE:
        need(spec.get("selector") is None or _str_map(spec.get("selector")), ("spec", "selector"),
             "selector must map label keys to string values")
        ports = spec.get("ports")
        need(isinstance(ports, list), ("spec", "ports"), "a Service needs a list of ports")
        if isinstance(ports, list) and need(bool(ports), ("spec", "ports"), "a Service needs ports"):
            for i, p in enumerate(ports):
                need(isinstance(p, dict) and isinstance(p.get("port"), int), ("spec", "ports", i, "port"),
                     "a Service port needs a numeric port")
    elif kind == VIRTUAL_SERVICE:
        hosts = spec.get("hosts", [])
        need(isinstance(hosts, list) and all(isinstance(h, str) for h in hosts), ("spec", "hosts"),
             "hosts must be a list of host names")
        gws = spec.get("gateways", [])
        need(isinstance(gws, list) and all(isinstance(g, str) for g in gws), ("spec", "gateways"),
             "gateways must be a list of names")
        http = spec.get("http", [])
        if need(isinstance(http, list), ("spec", "http"), "http must be a list of routes"):
            for i, route in enumerate(http):
                if not need(isinstance(route, dict), ("spec", "http", i), "an http route must be a mapping"):
                    continue
                for j, dest in enumerate(route.get("route") or []):
                    need(isinstance(dest, dict) and isinstance((dest.get("destination") or {}).get("host"), str),
                         ("spec", "http", i, "route", j, "destination", "host"), "a destination needs a host")
    elif kind == DESTINATION_RULE:
        need(isinstance(spec.get("host"), str), ("spec", "host"), "a DestinationRule needs a host")
    return problems


def _str_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


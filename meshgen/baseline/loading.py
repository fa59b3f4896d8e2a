"""Reading the baseline from Kubernetes manifests (``--baseline DIR``) or from objects a cluster returned.

Only the kinds the planner needs are kept (workloads, Services, routing objects, DestinationRules, Gateways, the
policies keyed on pod labels, the edge token's Secret); everything else in a manifest directory (ConfigMaps, CRDs) is
ignored. The fields meshgen relies on are checked here, so the planner can trust their shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from meshgen.baseline.model import (
    DEPLOYMENT,
    DESTINATION_RULE,
    GATEWAY,
    GATEWAY_API_GROUP,
    GRPC_ROUTE,
    HTTP_ROUTE,
    KINDS,
    KUBERNETES_GATEWAY,
    NETWORK_POLICY,
    ROLLOUT,
    ROUTE_KINDS,
    SECRET,
    SECURITY_POLICY_KINDS,
    SERVICE,
    STATEFUL_SET,
    VIRTUAL_SERVICE,
    Baseline,
    ObjectKey,
    Resource,
)
from meshgen.baseline.shapes import check_object
from meshgen.documents import Document
from meshgen.errors import Location, Problem, raise_if_any
from meshgen.nulls import absent
from meshgen.ownership import is_owned, without_meshgen_routes

ISTIO_NETWORKING_VERSIONS = ("networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3")
ISTIO_SECURITY_VERSIONS = ("security.istio.io/v1", "security.istio.io/v1beta1")
_API_VERSIONS: Mapping[str, tuple[str, ...]] = {
    DEPLOYMENT: ("apps/v1",),
    STATEFUL_SET: ("apps/v1",),
    ROLLOUT: ("argoproj.io/v1alpha1",),
    SERVICE: ("v1",),
    VIRTUAL_SERVICE: ISTIO_NETWORKING_VERSIONS,
    DESTINATION_RULE: ISTIO_NETWORKING_VERSIONS,
    SECRET: ("v1",),
    GATEWAY: ISTIO_NETWORKING_VERSIONS,
    HTTP_ROUTE: (f"{GATEWAY_API_GROUP}/v1", f"{GATEWAY_API_GROUP}/v1beta1"),
    GRPC_ROUTE: (f"{GATEWAY_API_GROUP}/v1",),
    KUBERNETES_GATEWAY: (f"{GATEWAY_API_GROUP}/v1", f"{GATEWAY_API_GROUP}/v1beta1"),
    NETWORK_POLICY: ("networking.k8s.io/v1",),
    **dict.fromkeys(SECURITY_POLICY_KINDS, ISTIO_SECURITY_VERSIONS),
}


def load_baseline(documents: Iterable[Document], default_namespace: str = "default", stored: bool = False) -> Baseline:
    """Build the baseline from manifest documents. ``List`` objects are flattened; objects without a
    namespace are placed in ``default_namespace`` (what ``kubectl apply -n`` would do).

    meshgen's own output is not baseline: objects it owns are skipped and the routes it added to a user's
    routing object are removed, so compiling over a cluster (or over earlier output) gives the same result as
    compiling over the untouched baseline.

    Objects from files are read in the form the API server would store them (nulls absent, see
    :mod:`meshgen.nulls`); objects from a cluster (``stored``) are in that form already, and are kept as
    they are, so a user's VirtualService compares equal to itself (a nullable Istio field may hold a null there)."""
    resources: dict[ObjectKey, Resource] = {}
    problems: list[Problem] = []
    for location, written in flatten(documents):
        kind = _kind(written)
        if kind is None:
            continue
        raw = written if stored else absent(written)  # Helm's empty `labels:`, `env:` are absent
        found = check_object(raw, location, kind)
        if found:
            problems.extend(found)
            continue
        if is_owned(raw):
            continue
        body = without_meshgen_routes(raw) if kind in ROUTE_KINDS else raw
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


def _kind(written: Mapping[str, Any]) -> str | None:
    """The baseline kind of a manifest (a Gateway API Gateway is ``Gateway.gateway.networking.k8s.io``), or None
    for one meshgen does not read."""
    kind = written.get("kind")
    if not isinstance(kind, str):
        return None
    if kind == GATEWAY and str(written.get("apiVersion", "")).startswith(f"{GATEWAY_API_GROUP}/"):
        kind = KUBERNETES_GATEWAY
    if kind not in KINDS or written.get("apiVersion") not in _API_VERSIONS[kind]:
        return None
    return kind


def baseline_from_objects(objects: Iterable[Mapping[str, Any]], source: str) -> Baseline:
    """Build the baseline from objects read from a cluster (already namespaced)."""
    docs = [Document(Location(source, i), dict(o)) for i, o in enumerate(objects)]
    return load_baseline(docs, stored=True)


def flatten(documents: Iterable[Document]) -> Iterable[tuple[Location, dict[str, Any]]]:
    """Each object of the documents with where it was written: a ``List`` (``kubectl get -o yaml``) counts as its
    items."""
    for doc in documents:
        if doc.body.get("kind") == "List" and isinstance(doc.body.get("items"), list):
            for i, item in enumerate(doc.body["items"]):
                if isinstance(item, dict):
                    yield doc.location.at("items", i), item
        else:
            yield doc.location, doc.body

"""What already runs: the baseline's workloads (Deployments, StatefulSets, Argo Rollouts), Services, routing
objects (Istio VirtualServices, Gateway API HTTPRoutes and GRPCRoutes), DestinationRules, Gateways, and the policies
keyed on pod labels (AuthorizationPolicy, PeerAuthentication, RequestAuthentication, NetworkPolicy).

Objects keep their raw Kubernetes bodies (never mutated; anything derived is a copy) because meshgen must emit a
user's routing object with nothing changed but its own routes. The model knows Kubernetes semantics that the
planner needs — which Services select a workload, how Istio resolves short host names — and nothing about
sandboxes.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from meshgen.documents import JsonObject
from meshgen.errors import Location

DEPLOYMENT = "Deployment"
STATEFUL_SET = "StatefulSet"
ROLLOUT = "Rollout"  # argoproj.io/v1alpha1
SERVICE = "Service"
VIRTUAL_SERVICE = "VirtualService"
DESTINATION_RULE = "DestinationRule"
SECRET = "Secret"  # read only when the MeshPolicy names one (the edge token); its data is never printed
GATEWAY = "Gateway"  # which gateways exist: istiod serves a gateway-bound VirtualService only on an existing one
# The Gateway API's routing objects (gateway.networking.k8s.io), and its Gateway: keyed by ``<kind>.<group>``
# beside Istio's Gateway of the same kind name.
HTTP_ROUTE = "HTTPRoute"
GRPC_ROUTE = "GRPCRoute"
KUBERNETES_GATEWAY = "Gateway.gateway.networking.k8s.io"
GATEWAY_API_GROUP = "gateway.networking.k8s.io"
AUTHORIZATION_POLICY = "AuthorizationPolicy"
PEER_AUTHENTICATION = "PeerAuthentication"
REQUEST_AUTHENTICATION = "RequestAuthentication"
NETWORK_POLICY = "NetworkPolicy"
WORKLOAD_KINDS = (DEPLOYMENT, STATEFUL_SET, ROLLOUT)
# security.istio.io kinds that reach workloads by ``spec.selector.matchLabels``.
SECURITY_POLICY_KINDS = (AUTHORIZATION_POLICY, PEER_AUTHENTICATION, REQUEST_AUTHENTICATION)
POLICY_KINDS = (*SECURITY_POLICY_KINDS, NETWORK_POLICY)
ROUTE_KINDS = (VIRTUAL_SERVICE, HTTP_ROUTE, GRPC_ROUTE)  # every kind of routing object
KINDS = (*WORKLOAD_KINDS, SERVICE, *ROUTE_KINDS, DESTINATION_RULE, SECRET, GATEWAY, KUBERNETES_GATEWAY, *POLICY_KINDS)
MESH_GATEWAY = "mesh"
# The Argo Rollouts controller adds this key to the selectors of a Rollout's canary and stable Services (and to
# its pods); which revision it names changes with every rollout, so matching a Rollout's pods ignores it.
ROLLOUT_HASH_LABEL = "rollouts-pod-template-hash"


class ObjectKey(NamedTuple):
    """Identity of a namespaced object (a tuple: hashed and compared at C speed, and the planner looks up
    tens of thousands)."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True)
class Resource:
    """A baseline object: its identity, its raw body, and where it was read from (file or cluster)."""

    key: ObjectKey
    body: JsonObject = field(compare=False, hash=False)
    location: Location | None = field(default=None, compare=False, hash=False)

    @property
    def namespace(self) -> str:
        return self.key.namespace

    @property
    def name(self) -> str:
        return self.key.name

    @property
    def spec(self) -> Mapping[str, Any]:
        spec = self.body.get("spec")
        return spec if isinstance(spec, dict) else {}

    @property
    def metadata(self) -> Mapping[str, Any]:
        meta = self.body.get("metadata")
        return meta if isinstance(meta, dict) else {}

    def at(self, *path: str | int) -> Location | None:
        """The location of a field of this object, for error messages."""
        return self.location.at(*path) if self.location else None


def pod_labels(workload: Resource) -> dict[str, str]:
    """The labels in a workload's own pod template (a Rollout with ``workloadRef`` has none: see
    :meth:`Baseline.template`)."""
    template = workload.spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    return dict(labels)


def label_selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes LabelSelector semantics (NetworkPolicy ``podSelector``): every ``matchLabels`` pair and every
    ``matchExpressions`` requirement holds; an empty selector selects everything."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for requirement in selector.get("matchExpressions") or []:
        key, operator = requirement.get("key"), requirement.get("operator")
        values = requirement.get("values") or []
        present = key in labels
        if not {"In": present and labels.get(key) in values, "NotIn": not present or labels.get(key) not in values,
                "Exists": present, "DoesNotExist": not present}.get(str(operator), False):
            return False
    return True


def service_selector(service: Resource) -> dict[str, str]:
    """A Service's selector; empty when it has none (such Services select no pods)."""
    return dict(service.spec.get("selector") or {})


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Kubernetes Service semantics: a non-empty selector whose every pair is in ``labels``."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def service_fqdn(namespace: str, name: str, cluster_domain: str) -> str:
    """The mesh host of a Service."""
    return f"{name}.{namespace}.svc.{cluster_domain}"


def resolve_host(host: str, namespace: str, cluster_domain: str) -> str:
    """Istio's reading of a host in a VirtualService or DestinationRule in ``namespace`` (istiod's
    ``ResolveShortnameToFQDN``): a name without a dot (``reviews``) is that namespace's Service; anything with a dot
    stays as written. So ``reviews.bookinfo`` is *not* the reviews Service: istiod gives a VirtualService for it a
    virtual host of its own, which requests for ``reviews.bookinfo.svc.cluster.local`` never reach (observed with
    real istiod, see the cross-namespace golden case)."""
    if "." in host or host == "*":
        return host
    return service_fqdn(namespace, host, cluster_domain)


def host_matches(pattern: str, host: str) -> bool:
    """Whether a VirtualService host (possibly ``*.suffix`` or ``*``) covers ``host``."""
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return pattern == host


def gateways(virtual_service: Resource) -> tuple[str, ...]:
    """The gateways a VirtualService binds to; no list means the mesh only."""
    listed = virtual_service.spec.get("gateways")
    return tuple(listed) if listed else (MESH_GATEWAY,)


def gateway_key(reference: str, namespace: str) -> ObjectKey:
    """The Gateway a VirtualService in ``namespace`` names (``name`` or ``namespace/name``, as istiod reads it)."""
    gateway_namespace, _, name = reference.rpartition("/")
    return ObjectKey(GATEWAY, gateway_namespace or namespace, name)


def is_mesh_bound(virtual_service: Resource) -> bool:
    """Whether a VirtualService applies to sidecars (mesh traffic)."""
    return MESH_GATEWAY in gateways(virtual_service)


def is_exported_to(config: Mapping[str, Any], namespace: str) -> bool:
    """Whether a VirtualService or DestinationRule body (``metadata`` and ``spec``) is visible to proxies in
    ``namespace``: no ``exportTo`` or ``*`` means everywhere, ``.`` its own namespace, ``~`` nowhere."""
    exported = (config.get("spec") or {}).get("exportTo") or ["*"]
    own = (config.get("metadata") or {}).get("namespace")
    return "*" in exported or namespace in exported or ("." in exported and own == namespace)


@dataclass(frozen=True)
class Baseline:
    """The baseline, indexed for the planner. Build with :meth:`of`."""

    resources: tuple[Resource, ...]
    by_key: Mapping[ObjectKey, Resource] = field(compare=False, repr=False)
    by_kind: Mapping[str, tuple[Resource, ...]] = field(compare=False, repr=False)
    by_kind_namespace: Mapping[tuple[str, str], tuple[Resource, ...]] = field(compare=False, repr=False)
    # (namespace, label key, label value) -> Services whose selector requires that label: selector lookups
    # touch only plausible Services instead of every Service in the namespace.
    selector_index: Mapping[tuple[str, str, str], tuple[tuple[Resource, dict[str, str]], ...]] = field(
        compare=False, repr=False)
    selector_keys_by_namespace: Mapping[str, frozenset[str]] = field(compare=False, repr=False)
    # Workload -> the Services that select its pods: asked once per fork, and many forks share a workload.
    fronting: Mapping[ObjectKey, tuple[Resource, ...]] = field(compare=False, repr=False, default_factory=dict)

    @classmethod
    def of(cls, resources: Iterable[Resource]) -> Baseline:
        """Index resources; the caller has already rejected duplicates."""
        ordered = tuple(sorted(resources, key=lambda r: r.key))
        by_kind: dict[str, list[Resource]] = {}
        by_kind_ns: dict[tuple[str, str], list[Resource]] = {}
        index: dict[tuple[str, str, str], list[tuple[Resource, dict[str, str]]]] = {}
        keys: dict[str, set[str]] = {}
        for r in ordered:
            by_kind.setdefault(r.key.kind, []).append(r)
            by_kind_ns.setdefault((r.key.kind, r.namespace), []).append(r)
            if r.key.kind == SERVICE:
                selector = service_selector(r)
                keys.setdefault(r.namespace, set()).update(selector)
                for k, v in selector.items():
                    index.setdefault((r.namespace, k, v), []).append((r, selector))
        indexed = cls(
            ordered,
            {r.key: r for r in ordered},
            {k: tuple(v) for k, v in by_kind.items()},
            {k: tuple(v) for k, v in by_kind_ns.items()},
            {k: tuple(v) for k, v in index.items()},
            {k: frozenset(v) for k, v in keys.items()},
        )
        fronting = {w.key: indexed.routable(indexed.services_selecting(w.namespace, indexed.labels_of(w),
                                                                       _ignored(w)))
                    for kind in WORKLOAD_KINDS for w in by_kind.get(kind, ())}
        return dataclasses.replace(indexed, fronting=fronting)

    def get(self, kind: str, namespace: str, name: str) -> Resource | None:
        """One object by identity."""
        return self.by_key.get(ObjectKey(kind, namespace, name))

    def of_kind(self, kind: str, namespace: str | None = None) -> tuple[Resource, ...]:
        """Every object of ``kind`` (in ``namespace`` if given), sorted by namespace and name."""
        if namespace is None:
            return self.by_kind.get(kind, ())
        return self.by_kind_namespace.get((kind, namespace), ())

    def secret_value(self, namespace: str, name: str, key: str) -> bytes | None:
        """One key of a Secret (``data`` is base64, ``stringData`` plain), or None if absent or undecodable."""
        secret = self.get(SECRET, namespace, name)
        if secret is None:
            return None
        plain = (secret.body.get("stringData") or {}).get(key)
        if isinstance(plain, str):
            return plain.encode()
        encoded = (secret.body.get("data") or {}).get(key)
        try:
            return base64.b64decode(encoded, validate=True) if isinstance(encoded, str) else None
        except ValueError:
            return None

    def names_of(self, kind: str, namespace: str) -> list[str]:
        """Names of ``kind`` in ``namespace`` (for 'did you mean')."""
        return [r.name for r in self.of_kind(kind, namespace)]

    def services_selecting(self, namespace: str, labels: Mapping[str, str],
                           ignored: frozenset[str] = frozenset()) -> tuple[Resource, ...]:
        """The Services in ``namespace`` whose selector selects pods with ``labels``, sorted by name; selector keys
        in ``ignored`` match any pod."""
        found: dict[ObjectKey, Resource] = {}
        for k, v in labels.items():
            for service, selector in self.selector_index.get((namespace, k, v), ()):
                wanted = {a: b for a, b in selector.items() if a not in ignored} if ignored else selector
                if service.key not in found and selects(wanted, labels):
                    found[service.key] = service
        return tuple(found[k] for k in sorted(found))

    def services_fronting(self, workload: Resource) -> tuple[Resource, ...]:
        """The Services with ports that select ``workload``'s pods (the hosts a fork of it takes over), sorted by
        name."""
        found = self.fronting.get(workload.key)
        if found is not None:
            return found
        return self.routable(self.services_selecting(workload.namespace, self.labels_of(workload), _ignored(workload)))

    @staticmethod
    def routable(services: tuple[Resource, ...]) -> tuple[Resource, ...]:
        """The Services that can carry requests: a Service without ports (ExternalName, headless) is valid and
        selects pods (so isolation counts it), but nothing is routed through it."""
        return tuple(s for s in services if s.spec.get("ports"))

    def template(self, workload: Resource) -> Mapping[str, Any]:
        """A workload's pod template: its own, or for an Argo Rollout with ``workloadRef`` the template of the
        Deployment it names (empty when that is not in the baseline)."""
        if workload.key.kind == ROLLOUT and not workload.spec.get("template"):
            ref = workload.spec.get("workloadRef") or {}
            target = self.get(str(ref.get("kind") or DEPLOYMENT), workload.namespace, str(ref.get("name") or ""))
            return (target.spec.get("template") or {}) if target is not None else {}
        template = workload.spec.get("template")
        return template if isinstance(template, dict) else {}

    def labels_of(self, workload: Resource) -> dict[str, str]:
        """The labels a workload's pods carry (for a Rollout with ``workloadRef``: the named Deployment's)."""
        return dict((self.template(workload).get("metadata") or {}).get("labels") or {})

    def selector_keys(self, namespace: str) -> frozenset[str]:
        """Every label key any Service in ``namespace`` selects on."""
        return self.selector_keys_by_namespace.get(namespace, frozenset())


def _ignored(workload: Resource) -> frozenset[str]:
    return frozenset((ROLLOUT_HASH_LABEL,)) if workload.key.kind == ROLLOUT else frozenset()

"""The kinds meshgen reads and writes (:mod:`meshgen.apis`), found by name, and one object's identity (:class:`Ref`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from meshgen import backends
from meshgen.apis import (
    ADMISSION_BINDING,
    ADMISSION_POLICY,
    AUTHORIZATION_POLICY,
    CRD,
    DEPLOYMENT,
    DESTINATION_RULE,
    ENVOY_FILTER,
    GATEWAY,
    GATEWAY_CLASS,
    GRPC_ROUTE,
    HTTP_ROUTE,
    KUBERNETES_GATEWAY,
    MESH_POLICY,
    MUTATING_BINDING,
    MUTATING_POLICY,
    NAMESPACE,
    NETWORK_POLICY,
    OPTIONAL,
    PEER_AUTHENTICATION,
    POLICIES,
    REQUEST_AUTHENTICATION,
    ROLLOUT,
    ROUTE_GROUP,
    SANDBOX,
    SECRET,
    SERVICE,
    SIDECAR,
    STATEFUL_SET,
    VIRTUAL_SERVICE,
    WORKLOAD_ENTRY,
    Kind,
)

# What some backend renders (its own kinds, and the forks, Services and policy copies every backend writes), in the
# order they are read: every kind meshgen may create, change or delete.
RENDERED = backends.rendered_kinds()
BY_NAME = {k.kind: k for k in (*RENDERED, *OPTIONAL, NAMESPACE, SECRET, SANDBOX, ROUTE_GROUP, CRD, WORKLOAD_ENTRY,
                                     SIDECAR, GATEWAY, MESH_POLICY, ADMISSION_POLICY, ADMISSION_BINDING, GATEWAY_CLASS,
                                     MUTATING_POLICY, MUTATING_BINDING)}


def qualified(kind: Kind) -> str:
    """The name of a kind in :data:`BY_NAME` and in a :class:`Ref`: its kind, or ``<kind>.<group>`` when another
    group has a kind of that name."""
    first = BY_NAME.get(kind.kind)
    return kind.kind if first is None or first == kind else f"{kind.kind}.{kind.group}"


# A kind whose name another group's kind has too (the Gateway API's Gateway beside Istio's) is known by
# ``<kind>.<group>``.
BY_NAME.update({qualified(k): k for k in (KUBERNETES_GATEWAY,)})


def of(body: dict[str, Any]) -> Kind:
    """The kind of an object body."""
    return BY_NAME[_name(body)]


def _name(body: dict[str, Any]) -> str:
    kind = str(body["kind"])
    group = str(body.get("apiVersion") or "").rpartition("/")[0]
    first = BY_NAME.get(kind)
    return f"{kind}.{group}" if first is not None and first.group != group and f"{kind}.{group}" in BY_NAME else kind


@dataclass(frozen=True, order=True)
class Ref:
    """One object's identity: kind, namespace ("" for cluster-scoped) and name."""

    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, body: dict[str, Any]) -> Ref:
        meta = body["metadata"]
        return cls(_name(body), meta.get("namespace") or "", meta["name"])

    @property
    def api(self) -> Kind:
        return BY_NAME[self.kind]

    def path(self) -> str:
        return self.api.path(self.namespace or None, self.name)

    def __str__(self) -> str:
        """``deployment.apps/reviews-v1-pr-1 -n bookinfo`` (kubectl style)."""
        where = f" -n {self.namespace}" if self.namespace else ""
        return f"{self.api.display}/{self.name}{where}"


__all__ = [
    "ADMISSION_BINDING",
    "ADMISSION_POLICY",
    "AUTHORIZATION_POLICY",
    "BY_NAME",
    "CRD",
    "DEPLOYMENT",
    "DESTINATION_RULE",
    "ENVOY_FILTER",
    "GATEWAY",
    "GATEWAY_CLASS",
    "GRPC_ROUTE",
    "HTTP_ROUTE",
    "KUBERNETES_GATEWAY",
    "MESH_POLICY",
    "MUTATING_BINDING",
    "MUTATING_POLICY",
    "NAMESPACE",
    "NETWORK_POLICY",
    "OPTIONAL",
    "PEER_AUTHENTICATION",
    "POLICIES",
    "RENDERED",
    "REQUEST_AUTHENTICATION",
    "ROLLOUT",
    "ROUTE_GROUP",
    "SANDBOX",
    "SECRET",
    "SERVICE",
    "SIDECAR",
    "STATEFUL_SET",
    "VIRTUAL_SERVICE",
    "WORKLOAD_ENTRY",
    "Kind",
    "Ref",
    "of",
    "qualified",
]

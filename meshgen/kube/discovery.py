"""Reading what the cluster holds: the baseline, the live objects meshgen may change, and the stored specs.

Every read is a LIST per kind (cluster-wide, or per namespace when the caller restricts them), never a GET per
object, so the number of requests does not grow with the number of sandboxes. The result uses the same models as
``meshgen compile --baseline DIR``: :class:`~meshgen.baseline.model.Baseline` and
:class:`~meshgen.spec.loading.Specs`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from meshgen.baseline.loading import baseline_from_objects
from meshgen.baseline.model import Baseline
from meshgen.documents import Document, JsonObject
from meshgen.errors import ClusterError, Location
from meshgen.kube import kinds
from meshgen.kube.client import Client, NotFound
from meshgen.kube.kinds import Ref
from meshgen.ownership import ANNOTATION_UPDATED_AT
from meshgen.spec.loading import Specs, load_specs
from meshgen.spec.models import SecretRef

CLUSTER_SOURCE = "cluster"
_BASELINE_KINDS = (kinds.DEPLOYMENT, kinds.STATEFUL_SET, kinds.ROLLOUT, kinds.SERVICE, kinds.VIRTUAL_SERVICE,
                   kinds.DESTINATION_RULE, *kinds.POLICIES)


def revision(resource_version: str) -> int | None:
    """A resourceVersion as an etcd revision. kube-apiserver backed by etcd hands out the store's revision, which
    only grows, so two of them can be compared; anything else (another storage) is ``None``: unknown."""
    try:
        return int(resource_version)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class StoredSpecs:
    """The Sandbox and RouteGroup objects stored in the cluster, and the list's resourceVersion."""

    sandboxes: tuple[JsonObject, ...]
    route_groups: tuple[JsonObject, ...]
    resource_version: str

    @property
    def revision(self) -> int | None:
        """The revision this view is complete up to (fencing compares it with what objects record)."""
        return revision(self.resource_version)

    @property
    def fingerprint(self) -> tuple[tuple[str, str, str], ...]:
        """Which specs exist, at which version: equal fingerprints mean the same set of specs. (The lists'
        own resourceVersion moves on every write anywhere in the cluster, so it cannot tell.)"""
        return tuple(sorted((o["kind"], o["metadata"]["name"], o["metadata"].get("resourceVersion", ""))
                            for o in (*self.sandboxes, *self.route_groups)))

    def of_kind(self, kind: str) -> tuple[JsonObject, ...]:
        """The stored Sandboxes, or RouteGroups."""
        return self.sandboxes if kind == "Sandbox" else self.route_groups

    def find(self, kind: str, name: str) -> JsonObject | None:
        return next((o for o in self.of_kind(kind) if o["metadata"]["name"] == name), None)


@dataclass(frozen=True)
class ClusterState:
    """One observation of the cluster."""

    stored: StoredSpecs
    live: Mapping[Ref, JsonObject] = field(repr=False)
    baseline: Baseline = field(repr=False)

    def with_stored(self, stored: StoredSpecs) -> ClusterState:
        """The same live objects with a newer list of specs (after storing one: live objects are re-read only
        when a write meets a conflict)."""
        return ClusterState(stored, self.live, self.baseline)


def list_specs(client: Client) -> StoredSpecs:
    """Two LISTs: sandboxes and route groups. The view is complete up to the older of the two revisions."""
    try:
        sandboxes = client.list(kinds.SANDBOX)
        groups = client.list(kinds.ROUTE_GROUP)
    except NotFound as exc:
        raise ClusterError(f"{exc}; meshgen's CRDs are not installed in this cluster: run `meshgen install`") from exc
    versions = [sandboxes.resource_version, groups.resource_version]
    numbers = [revision(v) for v in versions]
    if all(n is not None for n in numbers):
        resource_version = str(min(n for n in numbers if n is not None))
    else:
        resource_version = sandboxes.resource_version
    return StoredSpecs(sandboxes.items, groups.items, resource_version)


def observe(client: Client, namespaces: Sequence[str] = (), filter_namespace: str = "istio-system",
            secret: SecretRef | None = None) -> ClusterState:
    """Stored specs, then every object of a kind meshgen renders (workloads, Services, VirtualServices,
    DestinationRules, EnvoyFilters, label-keyed policies) and of the optional kinds it reads (Argo Rollouts, when
    the cluster serves them): all namespaces, or only ``namespaces`` plus the policy's filter namespace for
    EnvoyFilters; and the one Secret the policy names, if any (read by name: meshgen never lists Secrets)."""
    stored = list_specs(client)
    live: dict[Ref, JsonObject] = {}
    for kind in (*kinds.RENDERED, *kinds.OPTIONAL):
        scopes: Iterable[str | None] = namespaces or (None,)
        if namespaces and kind is kinds.ENVOY_FILTER:
            scopes = sorted({*namespaces, filter_namespace})
        for scope in scopes:
            try:
                listing = client.list(kind, scope)
            except NotFound as exc:
                if kind in kinds.OPTIONAL:
                    break  # the CRD is not installed: there are none
                if not kind.group.endswith("istio.io"):
                    raise
                raise ClusterError(f"{exc}; Istio's CRDs are not installed in this cluster") from exc
            for item in listing.items:
                live[Ref.of(item)] = item
    objects = [o for r, o in sorted(live.items()) if r.api in _BASELINE_KINDS]
    if secret is not None:
        with contextlib.suppress(NotFound):  # the planner reports a missing Secret, with the fix
            objects.append(client.get(Ref("Secret", secret.namespace, secret.name)))
    baseline = baseline_from_objects(objects, CLUSTER_SOURCE)
    return ClusterState(stored, live, baseline)


def spec_body(stored: Mapping[str, Any]) -> JsonObject:
    """A stored Sandbox/RouteGroup as the user wrote it: server metadata and meshgen's annotation removed."""
    meta = stored.get("metadata") or {}
    clean: JsonObject = {"name": meta.get("name")}
    if meta.get("labels"):
        clean["labels"] = dict(meta["labels"])
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != ANNOTATION_UPDATED_AT}
    if annotations:
        clean["annotations"] = annotations
    return {"apiVersion": stored.get("apiVersion"), "kind": stored.get("kind"), "metadata": clean,
            "spec": stored.get("spec")}


def specs_of(stored: StoredSpecs) -> Specs:
    """The stored specs, validated like files (problems name ``cluster: Sandbox/<name>``)."""
    documents = [Document(Location(f"{CLUSTER_SOURCE}: {o['kind']}/{o['metadata']['name']}"), spec_body(o))
                 for o in (*stored.sandboxes, *stored.route_groups)]
    return load_specs(documents)


def merged(stored: Specs, new: Specs) -> Specs:
    """``stored`` with the specs in ``new`` added or replacing stored ones of the same kind and name."""
    sandbox_names = {s.name for s in new.sandboxes}
    group_names = {g.name for g in new.route_groups}
    replaced = {("Sandbox", n) for n in sandbox_names} | {("RouteGroup", n) for n in group_names}
    origins = {k: v for k, v in stored.origins.items() if k not in replaced}
    origins.update(new.origins)
    return Specs(
        tuple(s for s in stored.sandboxes if s.name not in sandbox_names) + new.sandboxes,
        tuple(g for g in stored.route_groups if g.name not in group_names) + new.route_groups,
        new.policies,
        origins,
    )

"""Reading what the cluster holds: the baseline, the live objects meshgen may change, and the stored specs.

Every read is a LIST per kind (cluster-wide, or per namespace when the caller restricts them), never a GET per
object, so the number of requests does not grow with the number of sandboxes. The result uses the same models as
``meshgen compile --baseline DIR``: :class:`~meshgen.baseline.model.Baseline` and
:class:`~meshgen.spec.loading.Specs`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from meshgen import backends
from meshgen.baseline.loading import baseline_from_objects
from meshgen.baseline.model import Baseline
from meshgen.documents import Document, JsonObject
from meshgen.errors import ClusterError, InvalidInput, Location
from meshgen.kube import kinds
from meshgen.kube.client import Client, NotFound
from meshgen.kube.kinds import Ref
from meshgen.ownership import ANNOTATION_UPDATED_AT
from meshgen.plan.model import Exclusion, ExclusionReason, OwnerKind
from meshgen.spec.loading import Specs, load_specs, validate_document
from meshgen.spec.models import MeshPolicy

CLUSTER_SOURCE = "cluster"
# What the baseline is read from, whatever the backend: workloads, Services, every kind of routing object (a
# backend must know of the others' routes to a host: istiod applies only one of them) and traffic policies.
BASELINE_KINDS = (kinds.DEPLOYMENT, kinds.STATEFUL_SET, kinds.ROLLOUT, kinds.SERVICE, kinds.VIRTUAL_SERVICE,
                  kinds.HTTP_ROUTE, kinds.GRPC_ROUTE, kinds.DESTINATION_RULE, *kinds.POLICIES)


def revision(resource_version: str) -> int | None:
    """A resourceVersion as an etcd revision. kube-apiserver backed by etcd hands out the store's revision, which
    only grows, so two of them can be compared; anything else (another storage) is ``None``: unknown."""
    try:
        return int(resource_version)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class StoredSpecs:
    """The Sandbox, RouteGroup and MeshPolicy objects stored in the cluster, and the lists' resourceVersion."""

    sandboxes: tuple[JsonObject, ...]
    route_groups: tuple[JsonObject, ...]
    resource_version: str
    policies: tuple[JsonObject, ...] = ()

    @property
    def revision(self) -> int | None:
        """The revision this view is complete up to (fencing compares it with what objects record)."""
        return revision(self.resource_version)

    @property
    def fingerprint(self) -> tuple[tuple[str, str, str, str], ...]:
        """Which specs exist, with what content: equal fingerprints mean the same set of specs and the same
        policy. (Not resourceVersions: those move on status writes too, which change nothing to compile. The
        lists' own resourceVersion moves on every write anywhere in the cluster. The uid: a spec deleted and
        stored again is younger, which decides who yields in a conflict.)"""
        return tuple(sorted((o["kind"], o["metadata"]["name"], str(o["metadata"].get("uid", "")), content_hash(o))
                            for o in (*self.sandboxes, *self.route_groups, *self.policies)))

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
    policy: MeshPolicy = field(repr=False)

    def with_stored(self, stored: StoredSpecs) -> ClusterState:
        """The same live objects with a newer list of specs (after storing one: live objects are re-read only
        when a write meets a conflict)."""
        return ClusterState(stored, self.live, self.baseline, self.policy)


def content_hash(body: Mapping[str, Any]) -> str:
    """A hash of what a user wrote in a stored object: labels, annotations, spec."""
    meta = body.get("metadata") or {}
    text = json.dumps([meta.get("labels"), meta.get("annotations"), body.get("spec")], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def list_specs(client: Client) -> StoredSpecs:
    """Three LISTs: sandboxes, route groups and the platform's MeshPolicy. The view is complete up to the oldest
    of the three revisions."""
    try:
        listings = [client.list(kind) for kind in (kinds.SANDBOX, kinds.ROUTE_GROUP, kinds.MESH_POLICY)]
    except NotFound as exc:
        raise ClusterError(f"{exc}; meshgen's CRDs are not installed in this cluster: run `meshgen install`") from exc
    sandboxes, groups, policies = listings
    numbers = [revision(listing.resource_version) for listing in listings]
    if all(n is not None for n in numbers):
        resource_version = str(min(n for n in numbers if n is not None))
    else:
        resource_version = sandboxes.resource_version
    return StoredSpecs(sandboxes.items, groups.items, resource_version, policies.items)


def listed_kinds(policy: MeshPolicy) -> tuple[kinds.Kind, ...]:
    """What a command lists: every kind the policy's backend writes or edits, then the rest of the baseline's."""
    return tuple(dict.fromkeys((*backends.of(policy).kinds, *BASELINE_KINDS)))


def observe(client: Client, namespaces: Sequence[str], policy_of: Callable[[StoredSpecs], MeshPolicy]) -> ClusterState:
    """Stored specs and the policy ``policy_of`` picks from them, then every object of a kind the policy's backend
    writes or edits (workloads, Services, its routing objects, DestinationRules, EnvoyFilters, label-keyed
    policies) and of the kinds the baseline is read from (:data:`BASELINE_KINDS`; one the cluster does not serve and
    the backend does not write, such as Argo Rollouts or HTTPRoutes without their CRD, has none): all namespaces,
    or only ``namespaces`` plus the policy's filter namespace for EnvoyFilters; and the one Secret the policy
    names, if any (read by name: meshgen never lists Secrets)."""
    stored = list_specs(client)
    policy = policy_of(stored)
    filter_namespace, secret = policy.spec.filter_namespace, policy.spec.ingress.token_secret
    written = backends.of(policy).kinds
    live: dict[Ref, JsonObject] = {}
    for kind in listed_kinds(policy):
        scopes: Iterable[str | None] = namespaces or (None,)
        if namespaces and kind is kinds.ENVOY_FILTER:
            scopes = sorted({*namespaces, filter_namespace})
        for scope in scopes:
            try:
                listing = client.list(kind, scope)
            except NotFound as exc:
                if kind not in written:
                    break  # the CRD is not installed: there are none
                raise ClusterError(f"{exc}; the CRD of {kind.display} is not installed in this cluster, and the "
                                   f"MeshPolicy's backend {policy.spec.backend.value} writes it") from exc
            for item in listing.items:
                live[Ref.of(item)] = item
    objects = [o for r, o in sorted(live.items()) if r.api in BASELINE_KINDS]
    if secret is not None:
        with contextlib.suppress(NotFound):  # the planner reports a missing Secret, with the fix
            objects.append(client.get(Ref("Secret", secret.namespace, secret.name)))
    baseline = baseline_from_objects(objects, CLUSTER_SOURCE)
    return ClusterState(stored, live, baseline, policy)


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


def _documents(stored: StoredSpecs) -> list[Document]:
    return [Document(Location(f"{CLUSTER_SOURCE}: {o['kind']}/{o['metadata']['name']}"), spec_body(o))
            for o in (*stored.sandboxes, *stored.route_groups)]


def specs_of(stored: StoredSpecs) -> Specs:
    """The stored specs, validated like files (problems name ``cluster: Sandbox/<name>``); any invalid one is an
    error. See :func:`valid_specs` for the view that tolerates them."""
    return load_specs(_documents(stored))


def valid_specs(stored: StoredSpecs) -> tuple[Specs, tuple[Exclusion, ...]]:
    """The stored specs that validate, and an exclusion for each that does not (written around meshgen, e.g.
    with kubectl, or valid under an older meshgen): one bad object never hides the others."""
    valid: list[Document] = []
    invalid: list[Exclusion] = []
    for document in _documents(stored):
        try:
            validate_document(document)
        except InvalidInput as exc:
            kind, name = str(document.body["kind"]), str(document.body["metadata"]["name"])
            invalid.append(Exclusion(OwnerKind(kind), name, ExclusionReason.INVALID_SPEC, exc.problems))
            continue
        valid.append(document)
    return load_specs(valid), tuple(invalid)


def seniority(stored: StoredSpecs) -> Callable[[tuple[str, str]], tuple[str, str]]:
    """Who yields when two owners conflict: the one stored later (creation time, then name); a spec not stored
    yet (being applied) yields to every stored one."""
    created = {(o["kind"], o["metadata"]["name"]): str(o["metadata"].get("creationTimestamp") or "")
               for o in (*stored.sandboxes, *stored.route_groups)}

    def key(owner: tuple[str, str]) -> tuple[str, str]:
        return (created.get(owner) or "~", owner[1])  # "~" sorts after every timestamp

    return key


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

"""The part of the cluster a command's specs concern, read without reading the rest.

An apply, diff or delete changes a few specs (its **seeds**: the specs as written, and as stored before); gc
changes the expired ones. What those changes can alter is closed under a few relations, and the command reads
exactly that closure:

- a sandbox concerns the hosts of the workloads it forks or claims (the baseline's Services that select them),
  and those its status says it was last reconciled on (where its routes still are); a route group those its
  status says too;
- a host concerns every routing object that binds it or routes to it, and such an object every host it binds or
  routes to (its routes are rendered as one table from all of their claims);
- a host concerns every sandbox claiming a workload behind it (the index, :mod:`meshgen.kube.indexes`), and that
  sandbox every other host it claims;
- a sandbox concerns the route groups matching it, and a route group all its members;
- an owner concerns every owner with the same routing key (one of them is left out: the junior one).

The baseline (workloads, Services, DestinationRules, label-keyed policies) is read whole, but only what users
wrote (``app.kubernetes.io/managed-by!=meshgen``): its size is the baseline's, whatever the number of sandboxes.
Routing objects are read as :mod:`meshgen.kube.sourcing` says; meshgen's own objects only for the sandboxes in
the closure, as metadata. So a command's reads grow with what its specs share hosts with, not with the store.

**Exactness.** Planning the closure gives, for every object it renders, what planning everything would: the
object's content depends only on the owners claiming its hosts, all in the closure. An owner's exclusion (invariant
8) is decided by problems it has in a plan of every owner: its own, or between it and owners sharing a host, a
route group or a key with it, all in the closure (later rounds of :func:`meshgen.plan.planning.isolating_plan`
only remove owners, which removes problems). Owned objects and tables outside the closure are neither read nor
written: pruning sees only the closure's.

**Fencing.** The closure's specs come from label-selected lists, each complete up to its revision
(:mod:`meshgen.kube.selecting`); every object the command writes records the oldest of them. Any writer of an
object reads every list the object depends on, so "recorded a newer revision" still means "computed from a more
complete view" for that object, and the rule "never replace or delete an object computed from a newer list" keeps
its meaning. A sandbox whose workloads change is seeded with both versions: the command reads the old hosts'
sandboxes and tables too and rewrites them without it, while the new ones gain it; a concurrent command that read
the old version is fenced by the newer revision, or, if it wrote first, is overwritten (the converge loop, in
:mod:`meshgen.kube.reconciling`).

Where the closure cannot be computed cheaply the command reads everything (:func:`observe` returns ``None``):
while a routing-header change is in progress (its steps rewrite every routing object), and while some routing
object matches on the calling workload (``sourceLabels``: its copies follow forks anywhere).
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from meshgen import backends
from meshgen.baseline.loading import baseline_from_objects
from meshgen.baseline.model import Baseline, ObjectKey, service_fqdn
from meshgen.documents import JsonObject
from meshgen.errors import ClusterError
from meshgen.kube import discovery, indexes, kinds, selecting, sourcing, transition
from meshgen.kube.client import Client, NotFound
from meshgen.kube.discovery import ClusterState, Scope, Selection, StoredSpecs
from meshgen.kube.indexes import WorkloadId
from meshgen.kube.kinds import Ref
from meshgen.kube.sourcing import Catalog
from meshgen.ownership import LABEL_SANDBOX, MANAGED_BY, MATCH_INDEX, ROUTE_LISTS, is_owned
from meshgen.plan.model import Plan
from meshgen.plan.sources import Sources
from meshgen.spec.models import MeshPolicy, RouteGroup

SpecId = tuple[str, str]


@dataclass(frozen=True)
class Seeds:
    """What a command changes: spec bodies as written (being applied), stored specs by name (their stored
    versions say what they concerned before), and sandboxes no longer stored whose objects remain (by name, with
    the workloads those objects fork)."""

    bodies: tuple[JsonObject, ...] = ()
    names: tuple[SpecId, ...] = ()
    orphans: tuple[str, ...] = ()
    workloads: frozenset[WorkloadId] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.bodies or self.names or self.orphans or self.workloads)


def observe(client: Client, seeds: Seeds, namespaces: Sequence[str],
            policy_of: Callable[[StoredSpecs], MeshPolicy]) -> ClusterState | None:
    """The closure of ``seeds`` (module docstring), or ``None`` when the command must read everything."""
    store = selecting.Store(client)
    store.read_policies()
    policy = policy_of(store.stored())
    backend = backends.of(policy)
    routing_kinds = sourcing.routing_kinds(discovery.listed_kinds(policy))
    catalog = sourcing.catalog(client, routing_kinds, backend.kinds, namespaces)
    filter_ref = transition.filter_ref(policy, backend)
    live_filter = _filter(client, filter_ref)
    routing = {**catalog.metadata, **({filter_ref: live_filter} if filter_ref and live_filter else {})}
    if not transition.step(policy.spec.routing_header, routing, filter_ref, backend.routes).done:
        return None
    old = [b for kind, name in seeds.names if (b := store.by_name(kind, name)) is not None]
    unindexed = selecting.unindexed(store)
    users = _baseline_objects(client, policy, namespaces, [k for k in discovery.BASELINE_KINDS
                                                           if k not in routing_kinds])
    catalog.read_unknown()
    closure = _Closure(store, catalog, users, policy)
    if closure.has_caller_routes():
        return None
    closure.add([*old, *unindexed])
    closure.grow(seeds)
    live: dict[Ref, JsonObject] = {Ref.of(o): o for o in users}
    live.update(closure.tables())
    owned = _owned(client, [*closure.sandbox_names(), *seeds.orphans], namespaces, catalog)
    live.update(owned)
    if filter_ref is not None and live_filter is not None:
        live[filter_ref] = live_filter
    partial = frozenset(owned) | frozenset(r for r in live if r in catalog.metadata and r not in catalog.bodies)
    stored = closure.stored()
    scope = Scope(frozenset(closure.hosts), store.selection, partial, catalog.metadata)
    return ClusterState(stored, live, closure.baseline, policy, scope)


def holds(scope: Scope, plan: Plan) -> bool:
    """Whether a plan stays within the part of the cluster read: every host it claims, and every host its tables
    concern, is one the view read the sandboxes and tables of."""
    return all(c.host in scope.hosts for c in plan.claims) and all(sourcing.of_table(t) <= scope.hosts
                                                                   for t in plan.tables)


def relist(client: Client, selection: Selection) -> StoredSpecs:
    """The specs of a selection read again, kept as a view keeps them: a route group found by a label key joins
    only if it matches one of the sandboxes."""
    store = selecting.Store(client)
    store.read_policies()
    for kind, selector in sorted(selection.selectors):
        store.select(kind, selector)
    for kind, name in sorted(selection.names):
        store.by_name(kind, name)
    whole = store.stored()
    by_match = {o["metadata"]["name"] for kind, selector in selection.selectors
                if kind == "RouteGroup" and selector.startswith(MATCH_INDEX) for o in store.select(kind, selector)}
    others = {o["metadata"]["name"] for kind, selector in selection.selectors
              if kind == "RouteGroup" and not selector.startswith(MATCH_INDEX) for o in store.select(kind, selector)}
    others |= {name for kind, name in selection.names if kind == "RouteGroup"}
    groups = tuple(g for g in whole.route_groups if g["metadata"]["name"] in others
                   or (g["metadata"]["name"] in by_match and any(_matches(g, s) for s in whole.sandboxes)))
    return StoredSpecs(whole.sandboxes, groups, whole.resource_version, whole.policies)


def _filter(client: Client, ref: Ref | None) -> JsonObject | None:
    if ref is None:
        return None
    try:
        return client.get(ref)
    except NotFound:
        return None


def _baseline_objects(client: Client, policy: MeshPolicy, namespaces: Sequence[str],
                      listed: Iterable[kinds.Kind]) -> list[JsonObject]:
    """What users wrote of the baseline's kinds (routing objects apart), all namespaces or ``namespaces``; and the
    edge token's Secret, read by name."""
    written = backends.of(policy).kinds
    objects: list[JsonObject] = []
    for kind in listed:
        for scope in tuple(namespaces) or (None,):
            try:
                objects.extend(client.list(kind, scope, label_selector=sourcing.UNOWNED).items)
            except NotFound as exc:
                if kind not in written:
                    break
                raise ClusterError(f"{exc}; the CRD of {kind.display} is not installed in this cluster, and the "
                                   f"MeshPolicy's backend {policy.spec.backend.value} writes it") from exc
    secret = policy.spec.ingress.token_secret
    if secret is not None:
        with contextlib.suppress(NotFound):
            objects.append(client.get(Ref("Secret", secret.namespace, secret.name)))
    return objects


def _owned(client: Client, sandboxes: Iterable[str], namespaces: Sequence[str],
           catalog: Catalog) -> dict[Ref, JsonObject]:
    """The metadata of every object meshgen made for one of ``sandboxes`` (routing objects from the catalog)."""
    names = sorted(set(sandboxes))
    found: dict[Ref, JsonObject] = {r: m for r, m in catalog.metadata.items()
                                    if (m["metadata"].get("labels") or {}).get(LABEL_SANDBOX) in names}
    if not names:
        return found
    for kind in kinds.RENDERED:
        if kind.kind in ROUTE_LISTS or kind is kinds.ENVOY_FILTER:
            continue
        for selector in indexes.owned_selectors(names):
            for scope in tuple(namespaces) or (None,):
                try:
                    listing = client.list(kind, scope, label_selector=selector, metadata_only=True)
                except NotFound:
                    break  # the CRD is not installed: nothing of this kind exists
                found.update((Ref.of(o), o) for o in listing.items if is_owned(o))
    return found


class _Closure:
    """The closure being computed: specs in view, workloads, hosts, and what was read to find them."""

    def __init__(self, store: selecting.Store, catalog: Catalog, users: list[JsonObject], policy: MeshPolicy):
        self.store, self.catalog, self.users, self.policy = store, catalog, users, policy
        self.domain = policy.spec.cluster_domain
        self.view: dict[SpecId, JsonObject] = {}
        self.workloads: set[WorkloadId] = set()
        self.hosts: set[str] = set()
        self._read_workloads: set[WorkloadId] = set()
        self._read_keys: set[str] = set()
        self._read_label_keys: set[str] = set()
        self._expanded: set[str] = set()
        self._candidates: dict[str, JsonObject] = {}
        self._rebuild()

    # -- the baseline, rebuilt when a body is read ---------------------------------------------------------------

    def _rebuild(self) -> None:
        bodies = [b for b in self.catalog.bodies.values() if not is_owned(b)]
        self.baseline: Baseline = baseline_from_objects([*self.users, *bodies], discovery.CLUSTER_SOURCE)
        self.sources = Sources(self.baseline, self.domain)
        behind: dict[str, set[WorkloadId]] = {}
        for key, services in self.baseline.fronting.items():
            for service in services:
                fqdn = service_fqdn(service.namespace, service.name, self.domain)
                behind.setdefault(fqdn, set()).add((key.kind, key.namespace, key.name))
        self._behind = behind

    def has_caller_routes(self) -> bool:
        return any(sourcing.has_caller_routes(s) for s in self.sources.all())

    # -- growing ----------------------------------------------------------------------------------------------

    def add(self, bodies: Iterable[JsonObject]) -> bool:
        grew = False
        for body in bodies:
            key = (str(body["kind"]), str(body["metadata"]["name"]))
            if key not in self.view:
                grew = True
            self.view[key] = body
        return grew

    def grow(self, seeds: Seeds) -> None:
        """Read until nothing new is found."""
        written = list(seeds.bodies)
        self.workloads |= seeds.workloads
        while True:
            grew = False
            specs = [*self.view.values(), *written]
            sandboxes = [s for s in specs if s["kind"] == "Sandbox"]
            for sandbox in sandboxes:
                self.workloads |= indexes.workloads(sandbox)
            for workload in sorted(self.workloads - self._read_workloads):
                self._read_workloads.add(workload)
                grew |= self.add(self.store.select("Sandbox", indexes.workload_key(workload)))
            grew |= self._groups(sandboxes, [g for g in specs if g["kind"] == "RouteGroup"])
            keys = {indexes.routing_key(o) for o in specs} - self._read_keys
            self._read_keys |= keys
            for selector in indexes.key_selectors(keys):
                grew |= self.add(self.store.select("Sandbox", selector))
                grew |= self.add(self.store.select("RouteGroup", selector))
            grew |= self._hosts()
            if not grew:
                return

    def _groups(self, sandboxes: list[JsonObject], groups: list[JsonObject]) -> bool:
        """Route groups matching a sandbox in view, and every member of a group in view."""
        grew = False
        label_keys = {k for s in sandboxes for k in indexes.user_labels(s["metadata"].get("labels"))}
        for key in sorted(label_keys - self._read_label_keys):
            self._read_label_keys.add(key)
            for group in self.store.select("RouteGroup", indexes.match_key(key)):
                self._candidates[group["metadata"]["name"]] = group
        for name, group in sorted(self._candidates.items()):
            if ("RouteGroup", name) not in self.view and any(_matches(group, s) for s in sandboxes):
                grew |= self.add([group])
        for group in [*groups, *(g for k, g in self.view.items() if k[0] == "RouteGroup")]:
            # By content, not name: a group being applied and its stored version may match different sandboxes.
            seen = json.dumps([group["metadata"]["name"], indexes.match_terms(group)], sort_keys=True)
            if seen in self._expanded:
                continue
            self._expanded.add(seen)
            for selector in indexes.member_selectors(group):
                grew |= self.add(s for s in self.store.select("Sandbox", selector) if _matches(group, s))
        return grew

    def _hosts(self) -> bool:
        """Hosts of the workloads in view, closed under the routing objects concerning them; then the workloads
        behind those hosts."""
        before = (len(self.hosts), len(self.workloads))
        for body in self.view.values():
            # The hosts it was last reconciled on (its status): where its routes are, even when its workload has
            # gone from the baseline since (then it is left out, and those routes must go with its forks), or, for
            # a route group, when a member has left it by a label changed around meshgen.
            status = body.get("status")
            hosts = status.get("hosts") if isinstance(status, dict) else None
            self.hosts.update(h for h in (hosts if isinstance(hosts, list) else []) if isinstance(h, str))
        for workload in self.workloads:
            found = self.baseline.get(*workload)
            if found is not None:
                self.hosts.update(service_fqdn(s.namespace, s.name, self.domain)
                                  for s in self.baseline.services_fronting(found))
        while True:
            size = len(self.hosts)
            for source in self.sources.all():
                hosts = sourcing.of_source(source)
                if hosts & self.hosts:
                    self.hosts |= hosts
            for ref in self.catalog.concerning(self.hosts):
                self.hosts |= sourcing.recorded(self.catalog.metadata[ref]) or frozenset()
            wanted = [r for r in self.catalog.concerning(self.hosts) if not is_owned(self.catalog.metadata[r])]
            if self.catalog.fetch(wanted):
                self._rebuild()
            if len(self.hosts) == size:
                break
        for host in self.hosts:
            self.workloads |= self._behind.get(host, set())
        return (len(self.hosts), len(self.workloads)) != before

    # -- the result -------------------------------------------------------------------------------------------

    def sandbox_names(self) -> list[str]:
        return sorted(name for kind, name in self.view if kind == "Sandbox")

    def tables(self) -> dict[Ref, JsonObject]:
        """The routing objects whose tables the command may write: those concerning a host in the closure (users'
        whole, meshgen's as metadata). A user's object edited for other hosts only is left out: restoring it
        would drop routes of sandboxes outside the closure."""
        out: dict[Ref, JsonObject] = {}
        for ref, meta in self.catalog.metadata.items():
            if not sourcing.is_table(meta):
                continue
            body = self.catalog.bodies.get(ref)
            if is_owned(meta):
                hosts = sourcing.recorded(meta)
                if hosts is None and body is not None:
                    hosts = _owned_hosts(body, self.domain)
                if hosts and hosts & self.hosts:
                    out[ref] = body if body is not None else meta
            elif body is not None:
                source = self.sources.get(ObjectKey(ref.kind, ref.namespace, ref.name))
                if not sourcing.edited(body) or (source is not None and sourcing.of_source(source) & self.hosts):
                    out[ref] = body
        return out

    def stored(self) -> StoredSpecs:
        """The specs in view, complete up to the oldest list read."""
        whole = self.store.stored()
        keep = set(self.view)
        return StoredSpecs(tuple(o for o in whole.sandboxes if ("Sandbox", o["metadata"]["name"]) in keep),
                           tuple(o for o in whole.route_groups if ("RouteGroup", o["metadata"]["name"]) in keep),
                           whole.resource_version, whole.policies)


def _owned_hosts(body: JsonObject, domain: str) -> frozenset[str]:
    """The hosts of a table meshgen owns that does not record them (written by an older meshgen): read as if it
    were a user's."""
    meta = dict(body["metadata"])
    meta["labels"] = {k: v for k, v in (meta.get("labels") or {}).items() if k != MANAGED_BY}
    baseline = baseline_from_objects([{**body, "metadata": meta}], discovery.CLUSTER_SOURCE)
    return frozenset(h for s in Sources(baseline, domain).all() for h in sourcing.of_source(s))


@functools.lru_cache(maxsize=4096)
def _group_model(text: str) -> RouteGroup | None:
    try:
        return RouteGroup.model_validate(json.loads(text))
    except ValueError:
        return None


def _matches(group: JsonObject, sandbox: JsonObject) -> bool:
    """Whether a stored route group (one that validates) matches a stored sandbox."""
    model = _group_model(json.dumps(discovery.spec_body(group), sort_keys=True))
    labels = indexes.user_labels(sandbox["metadata"].get("labels"))
    return model is not None and model.spec.match.matches(labels)


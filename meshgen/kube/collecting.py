"""What ``gc`` collects, found a page at a time: sandboxes past their TTL, specs an interrupted command left
unreconciled, and objects of sandboxes no longer stored.

The store is read in pages (:meth:`meshgen.kube.client.Client.pages`); each page that holds something to do becomes
one **batch**, seeds for a scoped command (:mod:`meshgen.kube.scoping`) that reads only what they share hosts with.
What stays in memory across pages is the stored sandboxes' names (to tell an orphan), never their bodies.

- **expired**: a sandbox whose TTL ran out (:func:`meshgen.kube.storing.expired`): deleted, and its hosts
  reconciled without it;
- **pending**: a spec whose ``Reconciled`` condition is missing or older than its generation: an apply stored it
  and was stopped before it wrote its objects (or its status): reconciled again;
- **broken**: a sandbox naming a workload the baseline no longer has (deleted since it was reconciled): no command
  on its other hosts reads it, so gc does; it is left out and its routes withheld (DESIGN invariant 8);
- **orphan**: an object meshgen made for a sandbox that is no longer stored (a delete stopped half-way): seeded by
  name with the workload it forks, so its hosts' tables are rewritten without it and it is pruned.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from meshgen.baseline.model import WORKLOAD_KINDS
from meshgen.errors import ClusterError
from meshgen.kube import indexes, kinds, scoping, sourcing, statuses, storing
from meshgen.kube.client import Client, NotFound
from meshgen.kube.discovery import StoredSpecs
from meshgen.kube.indexes import WorkloadId
from meshgen.ownership import ANNOTATION_FORK_OF, LABEL_SANDBOX, is_owned
from meshgen.spec.models import MeshPolicy


@dataclass(frozen=True)
class Batch:
    """One scoped command of a gc: its seeds, and the sandboxes among them to delete."""

    seeds: scoping.Seeds
    expired: tuple[str, ...] = ()


def batches(client: Client, choose: Callable[[StoredSpecs], MeshPolicy], now: datetime.datetime,
            namespaces: Sequence[str] = ()) -> Iterator[Batch]:
    """The batches of a gc at ``now``, a page of the store at a time (module docstring)."""
    try:
        policies = client.list(kinds.MESH_POLICY).items
    except NotFound as exc:
        raise ClusterError(f"{exc}; meshgen's CRDs are not installed in this cluster: run `meshgen install`") from exc
    limit = choose(StoredSpecs((), (), "", policies)).spec.guardrails.max_ttl_seconds
    stored: set[str] = set()
    present = _workloads(client, namespaces)
    for page in client.pages(kinds.SANDBOX):
        stored.update(o["metadata"]["name"] for o in page.items)
        expired = tuple(o["metadata"]["name"] for o in storing.expired(StoredSpecs(page.items, (), "", ()), now, limit))
        redo = [o["metadata"]["name"] for o in page.items if o["metadata"]["name"] not in expired
                and (statuses.pending(o) or _lost(indexes.workloads(o), present, namespaces))]
        if expired or redo:
            names = tuple(("Sandbox", n) for n in (*expired, *redo))
            yield Batch(scoping.Seeds(names=names), expired)
    for page in client.pages(kinds.ROUTE_GROUP):
        redo = [o["metadata"]["name"] for o in page.items if statuses.pending(o)]
        if redo:
            yield Batch(scoping.Seeds(names=tuple(("RouteGroup", n) for n in redo)))
    orphans = _orphans(client, stored)
    if orphans:
        yield Batch(scoping.Seeds(orphans=tuple(sorted(orphans)), workloads=frozenset().union(*orphans.values())))


def _workloads(client: Client, namespaces: Sequence[str]) -> set[WorkloadId]:
    """Every workload of the baseline (users' Deployments, StatefulSets, Rollouts; metadata only), in
    ``namespaces`` or all."""
    found: set[WorkloadId] = set()
    for kind in (kinds.DEPLOYMENT, kinds.STATEFUL_SET, kinds.ROLLOUT):
        try:
            for scope in tuple(namespaces) or (None,):
                for page in client.pages(kind, scope, label_selector=sourcing.UNOWNED, metadata_only=True):
                    found.update((kind.kind, str(o["metadata"].get("namespace")), str(o["metadata"]["name"]))
                                 for o in page.items)
        except NotFound:
            continue  # the CRD is not installed (Argo Rollouts): none
    return found


def _lost(workloads: set[WorkloadId], present: set[WorkloadId], namespaces: Sequence[str]) -> bool:
    """Whether a sandbox names a workload the baseline read does not hold (outside ``namespaces``: not read)."""
    return any(w not in present and (not namespaces or w[1] in namespaces) for w in workloads)


def _orphans(client: Client, stored: set[str]) -> dict[str, set[WorkloadId]]:
    """Sandboxes not stored that objects meshgen made still name, with the workloads those objects fork (pages of
    metadata: the labels and annotations say it all)."""
    found: dict[str, set[WorkloadId]] = {}
    for kind in kinds.RENDERED:
        if kind is kinds.ENVOY_FILTER:
            continue
        try:
            for page in client.pages(kind, label_selector=LABEL_SANDBOX, metadata_only=True):
                for item in page.items:
                    meta = item["metadata"]
                    name = str((meta.get("labels") or {}).get(LABEL_SANDBOX) or "")
                    if not name or name in stored or not is_owned(item):
                        continue
                    workloads = found.setdefault(name, set())
                    fork_of = str((meta.get("annotations") or {}).get(ANNOTATION_FORK_OF) or "")
                    if "/" in fork_of and kind.kind in WORKLOAD_KINDS:  # a policy copy names one too
                        namespace, original = fork_of.split("/", 1)
                        workloads.add((kind.kind, namespace, original))
        except NotFound:
            continue  # the CRD is not installed: nothing of this kind exists
    return found


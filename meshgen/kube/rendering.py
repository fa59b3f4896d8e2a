"""What a reconcile round wants the cluster to hold: the backend's objects for its plan, with meshgen's
bookkeeping (the list revision they were computed from, the desired-hash, the routing header, the hosts each
routing object concerns), and the same recomputed for one object after a conflict.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from meshgen import compiler
from meshgen.backends.backend import Backend
from meshgen.baseline.loading import baseline_from_objects
from meshgen.baseline.model import SECRET, Baseline
from meshgen.documents import JsonObject
from meshgen.errors import Problem
from meshgen.kube import diffing, discovery, kinds, patching, sourcing, transition
from meshgen.kube.diffing import Change, ForeignObject
from meshgen.kube.discovery import ClusterState
from meshgen.kube.kinds import Ref
from meshgen.ownership import LABEL_SANDBOX, ROUTE_LISTS, is_owned
from meshgen.plan.model import Exclusion, ExclusionReason, OwnerKind, Plan
from meshgen.plan.planning import OwnerId, isolating_plan
from meshgen.plan.routing import Route
from meshgen.spec.loading import Specs


def desired(plan: Plan, list_revision: str, step: transition.Step, backend: Backend) -> list[JsonObject]:
    """Every object the backend renders the plan to, with meshgen's bookkeeping annotations."""
    tables = {(t.kind, t.namespace, t.name): t for t in plan.tables}
    out = []
    for rendered in transition.annotate(compiler.render(plan, backend.name), step, backend.routes):
        meta = rendered["metadata"]
        table = tables.get((str(rendered["kind"]), str(meta.get("namespace") or ""), str(meta["name"])))
        if rendered["kind"] in ROUTE_LISTS and table is not None and not _matches_callers(table.baseline):
            out.append(diffing.decorate(sourcing.record(rendered, sourcing.of_table(table)), list_revision))
        else:
            out.append(diffing.decorate(rendered, list_revision))
    return out


def _matches_callers(routes: Iterable[Route]) -> bool:
    # Copies of a route matching callers follow forks anywhere: such an object records no hosts, so every command
    # reads it whole (and then reads everything, meshgen.kube.scoping).
    return any(m.source_labels for r in routes for m in r.matches)


def foreign(desired_objects: Iterable[JsonObject], live: Mapping[Ref, JsonObject],
            mine: set[OwnerId]) -> dict[OwnerId, Exclusion]:
    """Stored sandboxes with an unmanaged object where one of theirs would go, to leave out. Raises
    :class:`ForeignObject` if the object is one of ``mine`` or of no sandbox."""
    out: dict[OwnerId, Exclusion] = {}
    for body in desired_objects:
        message = diffing.foreign_problem(body, live.get(Ref.of(body)))
        if message is None:
            continue
        owner = (OwnerKind.SANDBOX.value, str((body["metadata"].get("labels") or {}).get(LABEL_SANDBOX, "")))
        if not owner[1] or owner in mine:
            raise ForeignObject(message)
        out[owner] = Exclusion(OwnerKind.SANDBOX, owner[1], ExclusionReason.FOREIGN_OBJECT,
                               (Problem(None, message),))
    return out


def recompute(state: ClusterState, specs: Specs, step: transition.Step, backend: Backend,
              ids: set[OwnerId]) -> patching.Recompute:
    """On conflict, a user's routing object (one the backend edits) is replanned from its fresh live object (so
    an edit someone made meanwhile is kept); what meshgen owns does not depend on the live object."""

    def again(change: Change, live: JsonObject | None) -> JsonObject | None:
        if backend.edits_kind(change.ref.kind) and live is not None and not is_owned(live):
            plan = isolating_plan(specs, with_object(state, change.ref, live), state.policy, ids,
                                  discovery.seniority(state.stored))
            plan = dataclasses.replace(plan, header_change=step.change())
            found = [o for o in desired(plan, state.stored.resource_version, step, backend)
                     if Ref.of(o) == change.ref]
            return found[0] if found else None
        if live is None and change.desired is not None and not is_owned(change.desired):
            return None  # a user's routing object that is gone: nothing left to edit
        return change.desired

    return again


def with_object(state: ClusterState, ref: Ref, live: JsonObject) -> Baseline:
    """The observed baseline with one object replaced by its fresh live version (the edge token's Secret, read
    apart from the live objects, is kept)."""
    objects = [live if r == ref else o for r, o in sorted(state.live.items())
               if r.api is not kinds.ENVOY_FILTER and r.kind != SECRET and r not in _partial(state)]
    objects += [secret.body for secret in state.baseline.of_kind(SECRET)]
    return baseline_from_objects(objects, discovery.CLUSTER_SOURCE)


def _partial(state: ClusterState) -> frozenset[Ref]:
    return state.scope.partial if state.scope is not None else frozenset()

"""The reconcile loop: observe -> compile -> diff -> order -> write -> re-list, until the view stops moving.

The contract (DESIGN.md, "Reconciler contract"):

1. Bad input never half-applies: the full compile over (stored specs + the new ones) against the live baseline,
   and the check that no generated name belongs to someone else, run before the first write. If a spec stored
   concurrently makes the set invalid after ours was stored, ours is taken back out before the error is raised.
2. The new specs are stored first. Then the specs are listed again; the list's revision R is recorded on every
   object written (``meshgen.dev/computed-from``). A writer never replaces or deletes an object recorded with a
   newer R — and that includes pruning: an owned object whose sandbox is missing from my list is deleted only if
   it was computed from an older list than mine, otherwise it belongs to a sandbox added after my list.
3. After writing, the specs are listed again; if they changed, the loop runs again (bounded). So the last writer
   sees every spec stored before it, and concurrent appliers converge with nothing lost.
4. Nothing to change means nothing written: a no-op apply makes zero writes.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from meshgen import compiler
from meshgen.baseline.loading import baseline_from_objects
from meshgen.baseline.model import SECRET, Baseline
from meshgen.documents import JsonObject
from meshgen.errors import ClusterError, InvalidInput
from meshgen.kube import diffing, discovery, kinds, ordering, patching, storing
from meshgen.kube.client import Client
from meshgen.kube.diffing import Change
from meshgen.kube.discovery import ClusterState
from meshgen.kube.kinds import Ref
from meshgen.ownership import is_owned
from meshgen.plan.model import Diagnostic
from meshgen.plan.planning import build_plan
from meshgen.spec.loading import Specs
from meshgen.spec.models import MeshPolicy

MAX_ROUNDS = 10


class DryRun(enum.StrEnum):
    NONE = "none"
    CLIENT = "client"  # compute and report; no request but reads
    SERVER = "server"  # send every write with dryRun=All: schema and admission errors surface, nothing persists


@dataclass(frozen=True)
class NewSpecs:
    """Specs read from files: validated models, the documents as written, and the texts (for file:line)."""

    specs: Specs
    documents: tuple[JsonObject, ...]
    texts: dict[str, str] = field(default_factory=dict)


@dataclass
class Report:
    """What a command changed (or would change), in the order it happened."""

    changes: list[Change] = field(default_factory=list)
    rounds: int = 0
    fenced: int = 0
    warnings: list[Diagnostic] = field(default_factory=list)


class Reconciler:
    """apply / delete / gc against one cluster, with one policy."""

    def __init__(self, client: Client, policy: MeshPolicy, namespaces: Sequence[str] = (),
                 on_change: Callable[[Change], None] | None = None) -> None:
        self.client = client
        self.policy = policy
        self.namespaces = tuple(namespaces)
        self.on_change = on_change or (lambda change: None)

    # -- commands --------------------------------------------------------------------------------------------

    def apply(self, new: NewSpecs, dry_run: DryRun = DryRun.NONE) -> Report:
        """Store ``new`` and reconcile every object its specs (and all stored specs) touch."""
        state = self.observe()
        specs = discovery.merged(discovery.specs_of(state.stored), new.specs)
        report = Report()
        planned = self.changes(state, specs, new.texts, report)
        stored = storing.changes(new.documents, state.stored, storing.now_utc())
        return self._run(state, [*stored, *planned], stored, dry_run, report)

    def delete(self, kind: str, names: Iterable[str], dry_run: DryRun = DryRun.NONE) -> Report:
        """Delete stored specs and reconcile; an unknown name is an error (nothing deleted)."""
        state = self.observe()
        deletions = []
        for name in names:
            change = storing.deletion(state.stored, kind, name)
            if change is None:
                names = sorted(o["metadata"]["name"] for o in state.stored.of_kind(kind))
                stored = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "") or "none"
                plural = kinds.BY_NAME[kind].plural
                raise ClusterError(f"{kinds.BY_NAME[kind].display}/{name} not found (nothing was deleted)\n"
                                   f"  fix: stored {plural}: {stored} (meshgen get {plural})")
            deletions.append(change)
        return self._after_deleting(state, deletions, dry_run)

    def gc(self, dry_run: DryRun = DryRun.NONE) -> Report:
        """Delete sandboxes whose TTL ran out, then reconcile (which also repairs anything left half-done)."""
        state = self.observe()
        now = storing.now_utc()
        deletions = [c for s in storing.expired(state.stored, now)
                     if (c := storing.deletion(state.stored, "Sandbox", s["metadata"]["name"])) is not None]
        return self._after_deleting(state, deletions, dry_run)

    def _after_deleting(self, state: ClusterState, deletions: list[Change], dry_run: DryRun) -> Report:
        gone = {(c.ref.kind, c.ref.name) for c in deletions}
        remaining = discovery.StoredSpecs(
            tuple(s for s in state.stored.sandboxes if ("Sandbox", s["metadata"]["name"]) not in gone),
            tuple(g for g in state.stored.route_groups if ("RouteGroup", g["metadata"]["name"]) not in gone),
            state.stored.resource_version)
        report = Report()
        planned = self.changes(state.with_stored(remaining), discovery.specs_of(remaining), {}, report)
        return self._run(state, [*deletions, *planned], deletions, dry_run, report)

    # -- the loop --------------------------------------------------------------------------------------------

    def observe(self) -> ClusterState:
        return discovery.observe(self.client, self.namespaces, self.policy.spec.filter_namespace,
                                 self.policy.spec.ingress.token_secret)

    def desired(self, state: ClusterState, specs: Specs, texts: dict[str, str],
                report: Report | None = None) -> list[JsonObject]:
        """Every object the specs compile to over the live baseline, with meshgen's bookkeeping annotations."""
        inputs = compiler.Inputs(specs, state.baseline, self.policy, texts)
        plan = compiler.plan_of(inputs)
        if report is not None:
            report.warnings = list(plan.warnings)
        return [diffing.decorate(o, state.stored.resource_version) for o in compiler.render(plan)]

    def changes(self, state: ClusterState, specs: Specs, texts: dict[str, str],
                report: Report | None = None) -> list[Change]:
        """Ordered changes from the live objects to what ``specs`` compile to. Raises InvalidInput or
        ForeignObject before anything is written."""
        return ordering.ordered(diffing.changes(self.desired(state, specs, texts, report), state.live))

    def _run(self, state: ClusterState, changes: list[Change], stored: list[Change], dry_run: DryRun,
             report: Report) -> Report:
        if dry_run is DryRun.CLIENT or not changes:
            report.changes.extend(changes)
            for change in changes:
                self.on_change(change)
            return report
        if dry_run is DryRun.SERVER:
            for change in changes:
                patching.write(self.client, change, None, dry_run=True)
                report.changes.append(change)
                self.on_change(change)
            return report
        if not stored:
            return self.converge(state, report, first=changes)
        written = [c for c in stored if self._write(c, None, patching.keep_desired, report) is patching.Outcome.WRITTEN]
        try:
            return self.converge(state.with_stored(discovery.list_specs(self.client)), report)
        except InvalidInput:
            self._roll_back(written)
            raise

    def _roll_back(self, written: list[Change]) -> None:
        """Undo the specs this command stored, when the stored set no longer compiles (someone stored a spec
        that conflicts with ours meanwhile): left in place, it would fail every later apply on the cluster.
        Only what still holds exactly what we wrote is undone."""
        current = discovery.list_specs(self.client)
        for change in written:
            if change.ref.kind not in storing.STORED_KINDS or change.desired is None:
                continue
            live = current.find(change.ref.kind, change.ref.name)
            if live is None or diffing.user_part(live) != diffing.user_part(change.desired):
                continue
            undo = (diffing.Change(diffing.Action.DELETE, change.ref, None, live) if change.live is None
                    else diffing.change_for(change.live, live))
            if undo is not None:
                patching.write(self.client, undo, None)

    def converge(self, state: ClusterState | None, report: Report, first: list[Change] | None = None) -> Report:
        """Reconcile until a round ends with the same stored specs it started from. ``first``: the changes of
        round one, when the caller has just computed them from ``state``."""
        for round_number in range(1, MAX_ROUNDS + 1):
            report.rounds = round_number
            if state is None:
                state = self.observe()
            if first is not None:
                changes, first = first, None
            else:
                changes = self.changes(state, discovery.specs_of(state.stored), {}, report)
            revision = state.stored.revision
            recompute = self._recompute(state)
            outcomes = [self._write(c, revision, recompute, report) for c in changes]
            if not outcomes:
                return report
            after = discovery.list_specs(self.client)
            if after.fingerprint == state.stored.fingerprint:
                return report
            state = None
        raise ClusterError(f"the stored specs kept changing; not converged after {MAX_ROUNDS} rounds "
                           "(run the command again)")

    def _write(self, change: Change, revision: int | None, recompute: patching.Recompute,
               report: Report) -> patching.Outcome:
        outcome, final = patching.write(self.client, change, revision, recompute)
        if outcome is patching.Outcome.WRITTEN:
            report.changes.append(final)
            self.on_change(final)
        elif outcome is patching.Outcome.FENCED:
            report.fenced += 1
        return outcome

    def _recompute(self, state: ClusterState) -> patching.Recompute:
        """On conflict, a user's VirtualService is replanned from its fresh live object (so an edit someone
        made meanwhile is kept); what meshgen owns does not depend on the live object."""

        def recompute(change: Change, live: JsonObject | None) -> JsonObject | None:
            if change.ref.kind == "VirtualService" and live is not None and not is_owned(live):
                plan = build_plan(discovery.specs_of(state.stored), _with_object(state, change.ref, live),
                                  self.policy)
                found = [o for o in compiler.render(plan) if Ref.of(o) == change.ref]
                return diffing.decorate(found[0], state.stored.resource_version) if found else None
            if live is None and change.desired is not None and not is_owned(change.desired):
                return None  # a user's VirtualService that is gone: nothing left to edit
            return change.desired

        return recompute


def _with_object(state: ClusterState, ref: Ref, live: JsonObject) -> Baseline:
    """The observed baseline with one object replaced by its fresh live version (the edge token's Secret, read
    apart from the live objects, is kept)."""
    objects = [live if r == ref else o for r, o in sorted(state.live.items()) if r.api is not kinds.ENVOY_FILTER]
    objects += [secret.body for secret in state.baseline.of_kind(SECRET)]
    return baseline_from_objects(objects, discovery.CLUSTER_SOURCE)

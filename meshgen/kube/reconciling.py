"""The reconcile loop: observe -> compile -> diff -> order -> write -> re-list, until the view stops moving.

The contract (DESIGN.md, "Reconciler contract"):

1. Bad input never half-applies: the full compile over (stored specs + the new ones) against the live baseline,
   the check that no generated name belongs to someone else, and a server-side dry run (``dryRun=All``) of the
   new specs and of their own new and changed objects run before the first write; what the API server would
   refuse is never stored. If a spec stored concurrently makes ours invalid after ours was stored, ours is taken
   back out before the error is raised.
2. The new specs are stored first. Then the specs are listed again; the list's revision R is recorded on every
   object written (``meshgen.dev/computed-from``). A writer never replaces or deletes an object recorded with a
   newer R — and that includes pruning: an owned object whose sandbox is missing from my list is deleted only if
   it was computed from an older list than mine, otherwise it belongs to a sandbox added after my list.
3. After writing, the specs are listed again; if they changed, the loop runs again (bounded). So the last writer
   sees every spec stored before it, and concurrent appliers converge with nothing lost.
4. Nothing to change means nothing written: a no-op apply makes zero writes.
5. Failures stay with their tenant (DESIGN invariant 8). A stored spec that cannot be reconciled — it no longer
   validates, no longer compiles over the baseline, breaks a guardrail, has an unmanaged object in the way of
   one of its own, or has a write refused by the API server — is left out of the plan: its objects are pruned,
   its routes withheld (its key reaches the baseline), and every other spec's apply, delete and gc proceed.
   Which specs are left out is a function of what is stored and live (problems between two specs are the
   junior one's, by creation time), so concurrent appliers agree; a refused write is the API server's verdict
   on an object, the same for every applier that tries it. Only the specs the command itself applies make it
   fail (exit 2).
6. The MeshPolicy is the stored one (:mod:`meshgen.kube.policies`), listed with the specs: a policy change moves
   the fingerprint and the revision like a spec change. A routing-header change takes several rounds, one safe
   step each (:mod:`meshgen.kube.transition`).
7. Last, every stored spec's ``status`` is brought up to date with the final plan (:mod:`meshgen.kube.statuses`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from meshgen import backends, compiler
from meshgen.baseline.loading import baseline_from_objects
from meshgen.baseline.model import SECRET, Baseline
from meshgen.documents import JsonObject, locate_all
from meshgen.errors import ClusterError, InvalidInput, MeshgenError, Problem
from meshgen.kube import diffing, discovery, kinds, ordering, patching, policies, statuses, storing, transition, vetting
from meshgen.kube.client import Client, refused
from meshgen.kube.diffing import Action, Change, ForeignObject
from meshgen.kube.discovery import ClusterState, StoredSpecs
from meshgen.kube.kinds import Ref
from meshgen.ownership import LABEL_SANDBOX, is_owned
from meshgen.plan.model import Diagnostic, Exclusion, ExclusionReason, OwnerKind, Plan
from meshgen.plan.planning import OwnerId, isolating_plan
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


@dataclass(frozen=True)
class Round:
    """One round's computation: the plan, what it renders to (decorated), the changes, and who was left out."""

    state: ClusterState
    specs: Specs  # the specs planned (those left out removed)
    plan: Plan
    desired: tuple[JsonObject, ...]
    changes: tuple[Change, ...]
    excluded: tuple[Exclusion, ...]
    step: transition.Step


@dataclass
class Report:
    """What a command changed (or would change), in the order it happened."""

    changes: list[Change] = field(default_factory=list)
    rounds: int = 0
    fenced: int = 0
    warnings: list[Diagnostic] = field(default_factory=list)
    excluded: list[Exclusion] = field(default_factory=list)  # stored specs left out, after the last round
    statuses: list[str] = field(default_factory=list)
    last: Round | None = field(default=None, repr=False)
    listed: StoredSpecs | None = field(default=None, repr=False)  # the specs as last listed


class Reconciler:
    """apply / delete / gc against one cluster, with the policy the cluster stores.

    ``policy``: the policy the caller insists on (``--policy``); the stored one must equal it."""

    def __init__(self, client: Client, policy: MeshPolicy | None = None, namespaces: Sequence[str] = (),
                 on_change: Callable[[Change], None] | None = None, policy_source: str = "--policy") -> None:
        self.client = client
        self.namespaces = tuple(namespaces)
        self.on_change = on_change or (lambda change: None)
        self.choose: Callable[[StoredSpecs], MeshPolicy] = lambda stored: policies.chosen(stored, policy,
                                                                                          policy_source)

    @classmethod
    def trying(cls, client: Client, policy: MeshPolicy) -> Reconciler:
        """A reconciler that compiles with ``policy`` whatever is stored: ``meshgen install`` checks a new policy
        with it before storing it."""
        reconciler = cls(client)
        reconciler.choose = lambda stored: policy
        return reconciler

    # -- commands --------------------------------------------------------------------------------------------

    def apply(self, new: NewSpecs, dry_run: DryRun = DryRun.NONE) -> Report:
        """Store ``new`` and reconcile every object its specs (and all stored specs) touch."""
        state = self.observe()
        mine = _ids(new.specs)
        report = Report()
        first = self.plan_round(state, new.specs, mine, new.texts)
        stored = storing.changes(new.documents, state.stored, storing.now_utc())
        if dry_run is DryRun.NONE:
            vetting.vet(self.client, [*stored, *first.changes], new.specs, new.texts)
        return self._run(first, stored, dry_run, report, mine)

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
        limit = state.policy.spec.guardrails.max_ttl_seconds
        deletions = [c for s in storing.expired(state.stored, now, limit)
                     if (c := storing.deletion(state.stored, "Sandbox", s["metadata"]["name"])) is not None]
        return self._after_deleting(state, deletions, dry_run)

    def reconcile(self, dry_run: DryRun = DryRun.NONE) -> Report:
        """Reconcile every stored spec (after a policy change: ``meshgen install``)."""
        return self._after_deleting(self.observe(), [], dry_run)

    def _after_deleting(self, state: ClusterState, deletions: list[Change], dry_run: DryRun) -> Report:
        gone = {(c.ref.kind, c.ref.name) for c in deletions}
        remaining = StoredSpecs(
            tuple(s for s in state.stored.sandboxes if ("Sandbox", s["metadata"]["name"]) not in gone),
            tuple(g for g in state.stored.route_groups if ("RouteGroup", g["metadata"]["name"]) not in gone),
            state.stored.resource_version, state.stored.policies)
        first = self.plan_round(state.with_stored(remaining), Specs(), set(), {})
        return self._run(first, deletions, dry_run, Report(), set())

    # -- planning --------------------------------------------------------------------------------------------

    def observe(self) -> ClusterState:
        return discovery.observe(self.client, self.namespaces, self.choose)

    def plan_round(self, state: ClusterState, new: Specs, mine: set[OwnerId], texts: dict[str, str],
                   refusals: dict[OwnerId, Exclusion] | None = None) -> Round:
        """Plan the stored specs (``new`` added or replacing stored ones) over the live baseline, leaving out
        every stored spec that cannot be reconciled; raises :class:`InvalidInput` (or ForeignObject) for a
        problem of the specs in ``mine``, or of no spec."""
        valid, invalid = discovery.valid_specs(state.stored)
        specs = discovery.merged(valid, new)
        left_out: dict[OwnerId, Exclusion] = {(e.kind.value, e.name): e for e in invalid
                                              if (e.kind.value, e.name) not in mine}
        left_out.update(refusals or {})
        policy = state.policy
        backend = backends.of(policy)
        step = transition.of_cluster(policy, backend, state.live)
        seniority = discovery.seniority(state.stored)
        while True:
            kept = _without(specs, left_out)
            try:
                plan = isolating_plan(kept, state.baseline, policy, _ids(kept) - mine, seniority)
            except InvalidInput as exc:
                raise locate_all(exc, texts) from None
            plan = dataclasses.replace(plan, header_change=step.change())
            desired = self._desired(plan, state.stored.resource_version, step, backend)
            foreign = self._foreign(desired, state.live, mine)
            if not foreign:
                break
            left_out.update(foreign)
        excluded = sorted([*left_out.values(), *plan.excluded], key=lambda e: (e.kind.value, e.name))
        changes = ordering.ordered(diffing.changes(desired, state.live), backend.order)
        return Round(state, kept, plan, tuple(desired), tuple(changes), tuple(excluded), step)

    @staticmethod
    def _desired(plan: Plan, list_revision: str, step: transition.Step, backend: backends.Backend) -> list[JsonObject]:
        """Every object the backend renders the plan to, with meshgen's bookkeeping annotations."""
        rendered = compiler.render(plan, backend.name)
        return [diffing.decorate(o, list_revision) for o in transition.annotate(rendered, step, backend.routes)]

    @staticmethod
    def _foreign(desired: Iterable[JsonObject], live: Mapping[Ref, JsonObject],
                 mine: set[OwnerId]) -> dict[OwnerId, Exclusion]:
        """Stored sandboxes with an unmanaged object where one of theirs would go, to leave out. Raises
        :class:`ForeignObject` if the object is one of ``mine`` or of no sandbox."""
        out: dict[OwnerId, Exclusion] = {}
        for body in desired:
            message = diffing.foreign_problem(body, live.get(Ref.of(body)))
            if message is None:
                continue
            owner = (OwnerKind.SANDBOX.value, str((body["metadata"].get("labels") or {}).get(LABEL_SANDBOX, "")))
            if not owner[1] or owner in mine:
                raise ForeignObject(message)
            out[owner] = Exclusion(OwnerKind.SANDBOX, owner[1], ExclusionReason.FOREIGN_OBJECT,
                                   (Problem(None, message),))
        return out

    def changes(self, state: ClusterState, specs: Specs | None = None, texts: dict[str, str] | None = None,
                report: Report | None = None) -> list[Change]:
        """Ordered changes from the live objects to what the stored specs (and ``specs``, being applied)
        compile to."""
        new = specs if specs is not None else Specs()
        found = self.plan_round(state, new, _ids(new) - _ids(discovery.valid_specs(state.stored)[0]), texts or {})
        if report is not None:
            report.warnings = list(found.plan.warnings)
        return list(found.changes)

    # -- the loop --------------------------------------------------------------------------------------------

    def _run(self, first: Round, stored: list[Change], dry_run: DryRun, report: Report, mine: set[OwnerId]) -> Report:
        report.warnings = list(first.plan.warnings)
        changes = [*stored, *first.changes]
        if dry_run is DryRun.CLIENT or (dry_run is DryRun.SERVER and not changes):
            report.changes.extend(changes)
            for change in changes:
                self.on_change(change)
            report.excluded = list(first.excluded)
            return report
        if dry_run is DryRun.SERVER:
            for change in changes:
                patching.write(self.client, change, None, dry_run=True)
                report.changes.append(change)
                self.on_change(change)
            return report
        if not stored:
            self.converge(first.state, report, first=first)
        else:
            written = [c for c in stored
                       if self._write(c, None, patching.keep_desired, report) is patching.Outcome.WRITTEN]
            try:
                self.converge(first.state.with_stored(discovery.list_specs(self.client)), report, mine=mine)
            except (InvalidInput, ForeignObject):
                self._roll_back(written)
                with contextlib.suppress(MeshgenError):
                    self.converge(None, Report())  # prune what was written for them before the refusal
                raise
        self._write_statuses(report)
        return report

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

    def converge(self, state: ClusterState | None, report: Report, first: Round | None = None,
                 mine: set[OwnerId] | None = None) -> Report:
        """Reconcile until a round ends with the same stored specs it started from (and no routing-header change
        left half-way). ``first``: round one, when the caller has just computed it from ``state``; ``mine``: the
        specs this command stored, which may not be left out (their problems are raised).

        A round in which the API server refuses a stored sandbox's object goes on with the other sandboxes'
        own objects only (so every refused one is found in one round), then plans again without the refused
        ones. Such rounds do not count against the bound: each leaves out at least one more sandbox."""
        mine = mine or set()
        refusals: dict[OwnerId, Exclusion] = {}
        rounds = 0
        while rounds < MAX_ROUNDS:
            report.rounds += 1
            if first is not None:
                current, first = first, None
            else:
                current = self.plan_round(state or self.observe(), Specs(), mine, {}, refusals)
            report.last, report.excluded, report.warnings = current, list(current.excluded), list(current.plan.warnings)
            revision = current.state.stored.revision
            recompute = self._recompute(current)
            outcomes = []
            refused_now = False
            for change in current.changes:
                owner = ("Sandbox", vetting.sandbox_of(change))
                if refused_now and (not owner[1] or owner in refusals or change.action is Action.DELETE):
                    continue  # shared objects and removals wait for the plan without the refused sandboxes
                try:
                    outcomes.append(self._write(change, revision, recompute, report))
                except ClusterError as exc:
                    if not refused(exc) or not owner[1]:
                        raise
                    if owner in mine:
                        raise InvalidInput([Problem(vetting.origin(change, current.specs, str(exc)),
                                                    f"the API server refuses {exc}")]) from None
                    refusals[owner] = Exclusion(OwnerKind.SANDBOX, owner[1], ExclusionReason.WRITE_REFUSED,
                                                (Problem(None, f"the API server refused {exc}"),))
                    refused_now = True
            state = None
            if refused_now:
                continue
            rounds += 1
            if not outcomes:
                report.listed = current.state.stored
                return report
            report.listed = discovery.list_specs(self.client)
            if report.listed.fingerprint == current.state.stored.fingerprint and current.step.done:
                return report
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

    def _recompute(self, current: Round) -> patching.Recompute:
        """On conflict, a user's routing object (one the backend edits) is replanned from its fresh live object (so
        an edit someone made meanwhile is kept); what meshgen owns does not depend on the live object."""
        state = current.state
        backend = backends.of(state.policy)

        def recompute(change: Change, live: JsonObject | None) -> JsonObject | None:
            if backend.edits_kind(change.ref.kind) and live is not None and not is_owned(live):
                plan = isolating_plan(current.specs, _with_object(state, change.ref, live), state.policy,
                                      _ids(current.specs), discovery.seniority(state.stored))
                plan = dataclasses.replace(plan, header_change=current.step.change())
                found = [o for o in self._desired(plan, state.stored.resource_version, current.step, backend)
                         if Ref.of(o) == change.ref]
                return found[0] if found else None
            if live is None and change.desired is not None and not is_owned(change.desired):
                return None  # a user's routing object that is gone: nothing left to edit
            return change.desired

        return recompute

    def _write_statuses(self, report: Report) -> None:
        """The status of every stored spec the final round planned, unless it changed since (then the command
        that changed it writes it)."""
        final = report.last
        if final is None:
            return
        seen = {(o["kind"], o["metadata"]["name"]): discovery.content_hash(o)
                for o in (*final.state.stored.sandboxes, *final.state.stored.route_groups)}
        current = report.listed or final.state.stored
        targets = [o for o in (*current.sandboxes, *current.route_groups)
                   if seen.get((o["kind"], o["metadata"]["name"])) == discovery.content_hash(o)]
        report.statuses = statuses.write(self.client, final.plan, list(final.desired), final.excluded, targets)


def _ids(specs: Specs) -> set[OwnerId]:
    return {*(("Sandbox", s.name) for s in specs.sandboxes), *(("RouteGroup", g.name) for g in specs.route_groups)}


def _without(specs: Specs, left_out: dict[OwnerId, Exclusion]) -> Specs:
    if not left_out:
        return specs
    return Specs(tuple(s for s in specs.sandboxes if ("Sandbox", s.name) not in left_out),
                 tuple(g for g in specs.route_groups if ("RouteGroup", g.name) not in left_out),
                 specs.policies, specs.origins)


def _with_object(state: ClusterState, ref: Ref, live: JsonObject) -> Baseline:
    """The observed baseline with one object replaced by its fresh live version (the edge token's Secret, read
    apart from the live objects, is kept)."""
    objects = [live if r == ref else o for r, o in sorted(state.live.items()) if r.api is not kinds.ENVOY_FILTER]
    objects += [secret.body for secret in state.baseline.of_kind(SECRET)]
    return baseline_from_objects(objects, discovery.CLUSTER_SOURCE)


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
3. After a round that wrote, the specs are listed again; if they changed, the loop runs again (bounded). So the
   last writer sees every spec stored before it, and concurrent appliers converge with nothing lost. A round
   that was only fenced stops: whoever wrote the newer objects read our specs.
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

"Listed" is, for apply, diff, delete and gc, the part of the store the command's specs share hosts with
(:mod:`meshgen.kube.scoping`, by the index of :mod:`meshgen.kube.indexes`); its revision is the oldest of the
label-selected lists it was read with. ``install`` (reconcile) lists everything.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from meshgen import backends
from meshgen.documents import JsonObject, locate_all
from meshgen.errors import ClusterError, InvalidInput, MeshgenError, Problem
from meshgen.kube import (
    collecting,
    diffing,
    discovery,
    indexes,
    kinds,
    ordering,
    patching,
    policies,
    rendering,
    scoping,
    statuses,
    storing,
    transition,
    vetting,
)
from meshgen.kube.client import Client, NotFound, refused
from meshgen.kube.diffing import Action, Change, ForeignObject
from meshgen.kube.discovery import ClusterState, StoredSpecs
from meshgen.kube.kinds import Ref
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

    def add(self, other: Report) -> None:
        """Add a later command's report (one gc batch's): changes in order, rounds and fences summed."""
        self.changes.extend(other.changes)
        self.rounds += other.rounds
        self.fenced += other.fenced
        self.warnings.extend(w for w in other.warnings if w not in self.warnings)
        self.excluded.extend(other.excluded)
        self.statuses.extend(other.statuses)
        self.last, self.listed = other.last or self.last, other.listed or self.listed


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
        # What the current command changes; None: it reads everything (reconcile, install).
        self.seeds: scoping.Seeds | None = None

    @classmethod
    def trying(cls, client: Client, policy: MeshPolicy) -> Reconciler:
        """A reconciler that compiles with ``policy`` whatever is stored: ``meshgen install`` checks a new policy
        with it before storing it."""
        reconciler = cls(client)
        reconciler.choose = lambda stored: policy
        return reconciler

    # -- commands --------------------------------------------------------------------------------------------

    def apply(self, new: NewSpecs, dry_run: DryRun = DryRun.NONE) -> Report:
        """Store ``new`` and reconcile every object its specs (and the stored specs sharing a host with them)
        touch."""
        mine = _ids(new.specs)
        self.seeds = scoping.Seeds(tuple(d for d in new.documents if d.get("kind") in storing.STORED_KINDS),
                                   tuple(sorted(mine)))
        state = self.observe()
        report = Report()
        first = self.plan_round(state, new.specs, mine, new.texts)
        stored = storing.changes(new.documents, state.stored, storing.now_utc())
        if dry_run is DryRun.NONE:
            vetting.vet(self.client, [*stored, *first.changes], new.specs, new.texts)
        return self._run(first, [*self._reindexed(state, mine, dry_run), *stored], dry_run, report, mine)

    def delete(self, kind: str, names: Iterable[str], dry_run: DryRun = DryRun.NONE) -> Report:
        """Delete stored specs and reconcile; an unknown name is an error (nothing deleted)."""
        names = list(names)
        self.seeds = scoping.Seeds(names=tuple((kind, n) for n in names))
        state = self.observe()
        deletions = []
        for name in names:
            change = storing.deletion(state.stored, kind, name)
            if change is None:
                raise ClusterError(f"{kinds.BY_NAME[kind].display}/{name} not found (nothing was deleted)\n"
                                   f"  fix: stored {kinds.BY_NAME[kind].plural}: {self._some(kind)} "
                                   f"(meshgen get {kinds.BY_NAME[kind].plural})")
            deletions.append(change)
        return self._after_deleting(state, deletions, dry_run)

    def _some(self, kind: str, shown: int = 10) -> str:
        """The first names stored of ``kind``, for a message (one page: never the whole store)."""
        page = next(self.client.pages(kinds.BY_NAME[kind], metadata_only=True, limit=shown + 1))
        names = sorted(o["metadata"]["name"] for o in page.items)
        more = " and more" if len(names) > shown else ""
        return ", ".join(names[:shown]) + more or "none"

    def gc(self, dry_run: DryRun = DryRun.NONE) -> Report:
        """Delete sandboxes whose TTL ran out, then reconcile what they shared hosts with; and repair what an
        interrupted command left (:mod:`meshgen.kube.collecting`). The store is read a page at a time."""
        report = Report()
        for batch in collecting.batches(self.client, self.choose, storing.now_utc(), self.namespaces):
            self.seeds = batch.seeds
            state = self.observe()
            deletions = [c for name in batch.expired if (c := storing.deletion(state.stored, "Sandbox", name))]
            report.add(self._after_deleting(state, deletions, dry_run))
        return report

    def reconcile(self, dry_run: DryRun = DryRun.NONE) -> Report:
        """Reconcile every stored spec (after a policy change: ``meshgen install``): reads everything."""
        self.seeds = None
        return self._after_deleting(self.observe(), [], dry_run)

    def _after_deleting(self, state: ClusterState, deletions: list[Change], dry_run: DryRun) -> Report:
        gone = {(c.ref.kind, c.ref.name) for c in deletions}
        remaining = StoredSpecs(
            tuple(s for s in state.stored.sandboxes if ("Sandbox", s["metadata"]["name"]) not in gone),
            tuple(g for g in state.stored.route_groups if ("RouteGroup", g["metadata"]["name"]) not in gone),
            state.stored.resource_version, state.stored.policies)
        first = self.plan_round(state.with_stored(remaining), Specs(), set(), {})
        return self._run(first, [*self._reindexed(state, gone, dry_run), *deletions], dry_run, Report(), set())

    @staticmethod
    def _reindexed(state: ClusterState, skip: Iterable[OwnerId], dry_run: DryRun) -> list[Change]:
        """Stored specs in view without their index (stored around meshgen, by an older one, or edited since),
        labelled before anything else is written (a dry run only reads them)."""
        if dry_run is not DryRun.NONE:
            return []
        skipped = set(skip)
        out = []
        for live in (*state.stored.sandboxes, *state.stored.route_groups):
            if (live["kind"], live["metadata"]["name"]) in skipped or indexes.is_current(live):
                continue
            meta = live["metadata"]
            desired = {"apiVersion": live["apiVersion"], "kind": live["kind"], "spec": live.get("spec"),
                       "metadata": {"name": meta["name"], "labels": indexes.with_index(live),
                                    "annotations": dict(meta.get("annotations") or {})}}
            change = diffing.change_for(desired, live)
            if change is not None:
                out.append(change)
        return out

    # -- planning --------------------------------------------------------------------------------------------

    def observe(self) -> ClusterState:
        """The part of the cluster this command's specs concern (:mod:`meshgen.kube.scoping`), or all of it."""
        if self.seeds is not None:
            state = scoping.observe(self.client, self.seeds, self.namespaces, self.choose)
            if state is not None:
                return state
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
        step = transition.of_cluster(policy, backend, state.routing)
        seniority = discovery.seniority(state.stored)
        while True:
            kept = _without(specs, left_out)
            try:
                plan = isolating_plan(kept, state.baseline, policy, _ids(kept) - mine, seniority)
            except InvalidInput as exc:
                raise locate_all(exc, texts) from None
            plan = dataclasses.replace(plan, header_change=step.change())
            if state.scope is not None and not scoping.holds(state.scope, plan):
                # Specs stored since the view was read claim hosts outside it: read the part they concern too.
                return self.plan_round(self.observe(), new, mine, texts, refusals)
            desired = rendering.desired(plan, state.stored.resource_version, step, backend)
            foreign = rendering.foreign(desired, state.live, mine)
            if not foreign:
                break
            left_out.update(foreign)
        excluded = sorted([*left_out.values(), *plan.excluded], key=lambda e: (e.kind.value, e.name))
        found = diffing.changes(desired, self._prunable(state, desired))
        own = {name for kind, name in mine if kind == OwnerKind.SANDBOX.value}
        changes = ordering.ordered(self._whole(state, found), backend.order, own)
        return Round(state, kept, plan, tuple(desired), tuple(changes), tuple(excluded), step)

    def _prunable(self, state: ClusterState, desired: list[JsonObject]) -> Mapping[Ref, JsonObject]:
        """The live objects a round may delete: all it read. Except, when it read only part of the store, the
        routing-key filter its plan does not want: the part has no claims left, but the rest of the store may."""
        ref = transition.filter_ref(state.policy, backends.of(state.policy))
        if state.scope is None or ref is None or ref not in state.live or any(Ref.of(o) == ref for o in desired):
            return state.live
        viewed = {(o["kind"], o["metadata"]["name"]) for o in (*state.stored.sandboxes, *state.stored.route_groups)}
        for kind in (kinds.SANDBOX, kinds.ROUTE_GROUP):
            page = next(self.client.pages(kind, metadata_only=True, limit=len(viewed) + 1))
            if any((kind.kind, o["metadata"]["name"]) not in viewed for o in page.items):
                return {r: o for r, o in state.live.items() if r != ref}
        return state.live

    def _whole(self, state: ClusterState, changes: list[Change]) -> list[Change]:
        """Changes to objects read as metadata only, recomputed from the whole object (an update is a patch
        against it; a diff shows it)."""
        partial = state.scope.partial if state.scope is not None else frozenset()
        out = []
        for change in changes:
            if change.ref not in partial or change.action is Action.CREATE:
                out.append(change)
                continue
            try:
                live: JsonObject | None = self.client.get(change.ref)
            except NotFound:
                live = None
            if (again := diffing.change_for(change.desired, live)) is not None:
                out.append(again)
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
                self.converge(first.state.with_stored(self._relist(first.state)), report, mine=mine)
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
        for change in written:
            if change.ref.kind not in storing.STORED_KINDS or change.desired is None:
                continue
            try:
                live = self.client.get(change.ref)
            except NotFound:
                continue
            if diffing.user_part(live) != diffing.user_part(change.desired):
                continue
            undo = (diffing.Change(diffing.Action.DELETE, change.ref, None, live) if change.live is None
                    else diffing.change_for(change.live, live))
            if undo is not None:
                patching.write(self.client, undo, None)

    def _relist(self, state: ClusterState) -> StoredSpecs:
        """The stored specs ``state`` came from, read again (its selection, or everything)."""
        if state.scope is None:
            return discovery.list_specs(self.client)
        return scoping.relist(self.client, state.scope.selection)

    def converge(self, state: ClusterState | None, report: Report, first: Round | None = None,
                 mine: set[OwnerId] | None = None) -> Report:
        """Reconcile until a round writes nothing (every object holds what this view wants, or a newer view's:
        fenced), or ends with the same stored specs it started from (and no routing-header change left half-way).
        ``first``: round one, when the caller has just computed it from ``state``; ``mine``: the specs this command
        stored, which may not be left out (their problems are raised).

        A writer that is fenced backs off instead of trying again: whoever wrote the newer object read after our
        specs were stored, so it holds them. Only a round that wrote re-reads and checks: its writes may have
        replaced what a command that saw a newer store had left unchanged, so it plans once more from a newer
        view. With many appliers on one host, each one's writes of the host's aggregate stay few: it writes when
        its view is the newest, and stops at the first round in which a newer one has written.

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
            recompute = rendering.recompute(current.state, current.specs, current.step,
                                            backends.of(current.state.policy), _ids(current.specs))
            outcomes = []
            refused_now = False
            made: set[Ref] = set()
            for i, change in enumerate(current.changes):
                owner = ("Sandbox", change.sandbox)
                if refused_now and (not owner[1] or owner in refusals or change.action is Action.DELETE):
                    continue  # shared objects and removals wait for the plan without the refused sandboxes
                if change.ref in made:
                    continue
                try:
                    outcomes.append(self._write(change, revision, recompute, report))
                    if change.action is Action.CREATE and outcomes[-1] is not patching.Outcome.WRITTEN:
                        # Someone else made it: another applier is making the objects of the specs this one
                        # sees. Read what it has made so far instead of racing it one object at a time.
                        made |= self._made_meanwhile(current.changes[i + 1:])
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
            if patching.Outcome.WRITTEN not in outcomes:
                report.listed = current.state.stored
                return report
            report.listed = self._relist(current.state)
            if report.listed.fingerprint == current.state.stored.fingerprint and current.step.done:
                return report
        raise ClusterError(f"the stored specs kept changing; not converged after {MAX_ROUNDS} rounds "
                           "(run the command again)")

    def _made_meanwhile(self, changes: Sequence[Change]) -> set[Ref]:
        """The objects of ``changes`` to create that exist by now as wanted (made by another command): one
        metadata LIST per kind and namespace, selected by sandbox."""
        creates = {c.ref: c for c in changes if c.action is Action.CREATE and c.sandbox and c.desired is not None
                   and c.ref.kind not in storing.STORED_KINDS}
        wanted: dict[tuple[str, str], set[str]] = {}
        for change in creates.values():
            wanted.setdefault((change.ref.kind, change.ref.namespace), set()).add(change.sandbox)
        made = set()
        for (kind, namespace), sandboxes in sorted(wanted.items()):
            for selector in indexes.owned_selectors(sandboxes):
                listing = self.client.list(kinds.BY_NAME[kind], namespace or None, label_selector=selector,
                                           metadata_only=True)
                for live in listing.items:
                    create = creates.get(Ref.of(live))
                    if create is not None and create.desired is not None and diffing.unchanged(create.desired, live):
                        made.add(create.ref)
        return made

    def _write(self, change: Change, revision: int | None, recompute: patching.Recompute,
               report: Report) -> patching.Outcome:
        outcome, final = patching.write(self.client, change, revision, recompute)
        if outcome is patching.Outcome.WRITTEN:
            report.changes.append(final)
            self.on_change(final)
        elif outcome is patching.Outcome.FENCED:
            report.fenced += 1
        return outcome

    def _write_statuses(self, report: Report) -> None:
        """The status of every stored spec the final round planned, unless it changed since (then the command
        that changed it writes it), or it is another command's still under way: stored by meshgen and not yet
        reconciled at its generation (that command writes it; should it stop, gc does). So with many appliers
        on one host each writes its own status, not everyone's."""
        final = report.last
        if final is None:
            return
        seen = {(o["kind"], o["metadata"]["name"]): discovery.content_hash(o)
                for o in (*final.state.stored.sandboxes, *final.state.stored.route_groups)}
        own = None if self.seeds is None else {*self.seeds.names, *((c.ref.kind, c.ref.name) for c in report.changes
                                                                   if c.ref.kind in storing.STORED_KINDS)}
        current = report.listed or final.state.stored
        targets = [o for o in (*current.sandboxes, *current.route_groups)
                   if seen.get(key := (o["kind"], o["metadata"]["name"])) == discovery.content_hash(o)
                   and (own is None or key in own or not statuses.pending(o))]
        report.statuses = statuses.write(self.client, final.plan, list(final.desired), final.excluded, targets)


def _ids(specs: Specs) -> set[OwnerId]:
    return {*(("Sandbox", s.name) for s in specs.sandboxes), *(("RouteGroup", g.name) for g in specs.route_groups)}


def _without(specs: Specs, left_out: dict[OwnerId, Exclusion]) -> Specs:
    if not left_out:
        return specs
    return Specs(tuple(s for s in specs.sandboxes if ("Sandbox", s.name) not in left_out),
                 tuple(g for g in specs.route_groups if ("RouteGroup", g.name) not in left_out),
                 specs.policies, specs.origins)

"""Run the corpus through both local meshes and judge every answer, with no hand-written expectation.

Baselines are packed into batches of baselines that cannot see each other (no namespace, edge or TCP port shared,
a bounded number of proxies), and each batch is run twice:

1. **baseline**: without any sandbox, in istiod's mesh and in an Envoy-backend mesh;
2. **sandboxes**: with every generated sandbox and route group, in istiod's mesh and in a second Envoy-backend
   mesh, while the first serves the same batch without sandboxes.

First every batch's baseline phase, then every batch's sandbox phase: baselines of one group share their
namespace and workloads, so a mesh that keeps what does not change between two applies starts the same forks once.

Checks, each a comparison of two sets of answers (:mod:`meshgen.corpus.answers`):

- (c) istiod and the Envoy backend give the same answers, without sandboxes and with them, for every request and
  key;
- (a) with sandboxes, a request without a key, or with a key no sandbox claims, gets the answers it got without
  any sandbox;
- (b) with a sandbox's key, it gets those answers with each forked workload replaced by its fork.

(a) and (b) are judged against the no-sandbox answers of the Envoy-backend mesh, which is live while the sandboxes
run, and which (c) finds equal to istiod's no-sandbox answers; should it show a no-sandbox answer istiod was not
seen to give, istiod's baseline is applied again afterwards and sampled until the two agree or provably differ.

Sampling: a weighted split or load balancing gives one of several answers per request, so each side of a
comparison is asked again (up to :data:`CAP` times) while it lacks an answer the other side gave; the sets must
then be equal. The meshes are handed in; this module starts no process.
"""

from __future__ import annotations

import collections
import concurrent.futures
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from meshgen import compiler, traffic
from meshgen.baseline import protocols
from meshgen.baseline.loading import load_baseline
from meshgen.baseline.model import DEPLOYMENT, SERVICE, Baseline
from meshgen.corpus import answers, probes, samples
from meshgen.documents import Document, JsonObject
from meshgen.errors import InvalidInput, Location, MeshgenError
from meshgen.plan.model import Plan
from meshgen.plan.planning import build_plan
from meshgen.spec.loading import Specs, load_specs
from meshgen.spec.models import MeshPolicy

CAP = 200  # samples of one request on one side at most: a 10 % branch is missed with odds 1e-9
FIRST_BASELINE = 6  # samples of each request without sandboxes, up front (the reference sets)
MAX_PROXIES = 40  # proxies of one batch in istiod's mesh (workloads, forks, one client per namespace)
POLICY = MeshPolicy.model_validate(probes.POLICY)
Refusal = Callable[[Plan], str | None]
BASELINE, SANDBOXES = "baseline", "sandboxes"
ISTIOD, ENVOY = "istiod", "envoy"


class Mesh(Protocol):
    """A running mesh (:class:`meshgen.testenv.mesh.RunningMesh`, :class:`meshgen.testenv.istiomesh.IstioMesh`)."""

    def apply(self, plan: Plan, topology: traffic.Topology | None = None,
              specs: Sequence[JsonObject] = ()) -> Any: ...

    def send(self, request: traffic.Request) -> traffic.Response: ...


@dataclass(frozen=True)
class Meshes:
    """Where batches run: istiod's mesh (None: the Envoy backend only), and two Envoy-backend meshes (the baseline
    alone, and with sandboxes)."""

    istio: Mesh | None
    envoy_baseline: Mesh
    envoy: Mesh
    refusal: Refusal = lambda plan: None  # why istiod's mesh cannot run a plan (said before anything starts)


@dataclass(frozen=True)
class Case:
    """One baseline of the corpus, compiled: its entry, what was generated for it, and its documents."""

    entry: samples.Entry
    generated: probes.Generated
    documents: tuple[Document, ...]
    namespaces: frozenset[str]
    istio_refusal: str | None

    @property
    def proxies(self) -> int:
        """Proxies it needs in istiod's mesh with its sandboxes: workloads, forks, a test client per namespace."""
        forks = sum(len(s["spec"].get("forks") or []) for s in self.generated.specs)
        return sum(1 for d in self.documents if d.body.get("kind") == DEPLOYMENT) + forks + len(self.namespaces)


@dataclass
class Outcome:
    """What one group of the corpus came to."""

    group: str
    files: set[str] = field(default_factory=set)
    baselines: int = 0
    sandboxes: int = 0
    requests: int = 0
    sent: int = 0
    checks: int = 0
    agreements: int = 0
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Source:
    """One side of a comparison: a request in one variant, as one mesh in one phase answered it."""

    mesh: str  # ISTIOD or ENVOY
    phase: str  # BASELINE or SANDBOXES
    case: int
    probe: int
    variant: str

    def __str__(self) -> str:
        return f"{self.mesh}, {'no sandbox' if self.phase == BASELINE else 'sandboxes'}"


@dataclass(frozen=True)
class _Comparison:
    check: str  # "a", "b" or "c"
    left: _Source
    right: _Source
    variant: probes.Variant  # what the key changes in the right side's answers (NO_KEY: nothing)


class _Sampler:
    """Answers sent so far, by source, and which cases each mesh serves now."""

    def __init__(self, cases: Sequence[Case], pool: concurrent.futures.Executor) -> None:
        self.cases, self.pool = cases, pool
        self.seen: dict[_Source, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self.live: dict[tuple[str, str], tuple[Mesh, frozenset[int]]] = {}
        self.sent = collections.Counter[int]()

    def serve(self, mesh: Mesh, name: str, phase: str, plan: Plan, topology: traffic.Topology,
              specs: Sequence[JsonObject], batch: Sequence[int]) -> None:
        """Apply a plan to a mesh; from now on it answers for ``batch`` in ``phase`` (and nothing else does)."""
        self.live = {k: v for k, v in self.live.items() if v[0] is not mesh}
        mesh.apply(plan, topology, specs)
        self.live[(name, phase)] = (mesh, frozenset(batch))

    def can_ask(self, source: _Source) -> bool:
        live = self.live.get((source.mesh, source.phase))
        return live is not None and source.case in live[1]

    def support(self, source: _Source) -> frozenset[str]:
        return frozenset(self.seen[source])

    def expected(self, comparison: _Comparison) -> frozenset[str]:
        """The right side's answers, as the comparison's key must change them."""
        case = self.cases[comparison.right.case]
        probe = case.generated.probes[comparison.right.probe]
        out: set[str] = set()
        for answer in self.seen[comparison.right]:
            out |= answers.expected(answer, probe, comparison.variant, case.generated)
        return frozenset(out)

    def agree(self, comparison: _Comparison) -> bool:
        return self.support(comparison.left) == self.expected(comparison)

    def sample(self, wanted: Mapping[_Source, int]) -> None:
        """Ask each source's mesh ``wanted[source]`` more times, all at once."""
        jobs = []
        for source, times in wanted.items():
            mesh = self.live[(source.mesh, source.phase)][0]
            generated = self.cases[source.case].generated
            variant = next(v for v in generated.variants if v.name == source.variant)
            request = generated.probes[source.probe].sent(variant)
            jobs += [(source, self.pool.submit(mesh.send, request)) for _ in range(times)]
        for source, job in jobs:
            self.seen[source][answers.answer_of(job.result(), self.cases[source.case].generated)] += 1
            self.sent[source.case] += 1

    def settle(self, comparisons: Sequence[_Comparison]) -> None:
        """Sample until every comparison's sides show the same answers, or the side lacking one has been asked
        :data:`CAP` times (or cannot be asked now)."""
        while True:
            wanted: dict[_Source, int] = {}
            for comparison in comparisons:
                left, right = self.support(comparison.left), self.expected(comparison)
                for side, lacking in ((comparison.left, right - left), (comparison.right, left - right)):
                    count = sum(self.seen[side].values())
                    if lacking and self.can_ask(side) and count < CAP:
                        wanted[side] = min(max(2, count // 2), CAP - count)
            if not wanted:
                return
            self.sample(wanted)


def prepare(corpus: samples.Corpus, refusal: Refusal) -> tuple[list[Case], dict[str, Outcome]]:
    """Read and compile every baseline of the corpus alone (so one that meshgen refuses is reported as such, and
    cannot spoil a batch); returns the cases to run, and each group's outcome so far. A baseline that routes as an
    earlier one (:func:`~meshgen.corpus.samples.routing_view`) is compiled but not run again."""
    outcomes: dict[str, Outcome] = {}
    cases: list[Case] = []
    views: dict[str, str] = {}
    for entry in corpus.entries:
        outcome = outcomes.setdefault(entry.group, Outcome(entry.group))
        outcome.files.update(entry.files)
        try:
            documents, _ = entry.documents(corpus.root)
            baseline = load_baseline(documents)
        except InvalidInput as exc:
            outcome.failures.append(f"{entry.name}: meshgen cannot read it:\n{exc.render()}")
            continue
        namespaces = frozenset(r.namespace for r in baseline.resources)
        generated = probes.generate(baseline, sorted(namespaces), entry.group)
        try:
            plan = _plan(baseline, generated.specs)
            for backend in ("istio", "envoy"):
                compiler.rendering(plan, backend)
        except MeshgenError as exc:
            detail = exc.render() if isinstance(exc, InvalidInput) else str(exc)
            outcome.failures.append(f"{entry.name}: meshgen refuses its sandboxes:\n{detail}")
            continue
        outcome.baselines += 1
        outcome.sandboxes += len(generated.specs)
        same = views.setdefault(repr(samples.routing_view(documents)), entry.name)
        if same != entry.name:
            outcome.notes.append(f"{entry.name}: compiled, not run: it routes as {same} (it differs in pod spec "
                                 "fields no answer depends on)")
            continue
        outcome.notes += [f"{entry.name}: {n}" for n in generated.notes]
        if not generated.probes:
            outcome.notes.append(f"{entry.name}: compiled, not run: no request reaches anything it routes (its "
                                 "hosts are not Services of the baseline)")
            continue
        refused = refusal(plan)
        if refused:
            outcome.notes.append(f"{entry.name}: judged through the Envoy backend only (checks a, b): {refused}")
        cases.append(Case(entry, generated, tuple(documents), namespaces, refused))
    return cases, outcomes


def _plan(baseline: Baseline, specs: Sequence[JsonObject]) -> Plan:
    documents = [Document(Location("corpus", i), s) for i, s in enumerate(specs)]
    return build_plan(load_specs(documents) if documents else Specs(), baseline, POLICY)


def batches(cases: Sequence[Case]) -> list[list[int]]:
    """Cases (by index) packed in order into batches that cannot see each other: no namespace, edge or TCP port
    shared, at most :data:`MAX_PROXIES` proxies; a case istiod's mesh cannot run, alone."""
    out: list[list[int]] = []
    for index, case in enumerate(cases):
        home = next((b for b in out if _fits([cases[i] for i in b], case)), None)
        if home is None:
            out.append([index])
        else:
            home.append(index)
    return out


def _fits(batch: Sequence[Case], case: Case) -> bool:
    if batch[0].istio_refusal is not None or case.istio_refusal is not None:
        return False
    edge = any(p.request.via == "edge" for c in batch for p in c.generated.probes)
    return (not set().union(*(c.namespaces for c in batch)) & case.namespaces
            and not (edge and any(p.request.via == "edge" for p in case.generated.probes))
            and not {p for c in batch for p in _opaque_ports(c)} & set(_opaque_ports(case))
            and sum(c.proxies for c in batch) + case.proxies <= MAX_PROXIES
            and all(c.entry.calls.get(k, v) == v for c in batch for k, v in case.entry.calls.items()))


def _opaque_ports(case: Case) -> list[int]:
    """The Service port numbers of a case that are not HTTP (each may belong to one Service in istiod's mesh)."""
    return [int(p["port"]) for d in case.documents if d.body.get("kind") == SERVICE
            for p in (d.body.get("spec") or {}).get("ports") or []
            if not protocols.port_protocol(int(p["port"]), p.get("name"), p.get("protocol"),
                                           p.get("appProtocol")).is_http]


@dataclass(frozen=True)
class _Batch:
    cases: tuple[int, ...]
    without: Plan
    with_sandboxes: Plan
    specs: tuple[JsonObject, ...]
    topology: traffic.Topology
    istio: bool


def run(corpus: samples.Corpus, meshes: Meshes, progress: Callable[[str], None] = lambda line: None,
        ) -> list[Outcome]:
    """Check every baseline of the corpus; one outcome per group, in the table's order."""
    cases, outcomes = prepare(corpus, meshes.refusal)
    packed = [_batch(cases, b, meshes) for b in batches(cases)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        sampler = _Sampler(cases, pool)
        phase_b = {b.cases: list(_baseline_comparisons(cases, b)) for b in packed}
        phase_s = {b.cases: list(_comparisons(cases, b)) for b in packed}
        broken: dict[tuple[int, ...], str] = {}
        for phase in (BASELINE, SANDBOXES):
            for number, batch in enumerate(packed, 1):
                if batch.cases in broken:
                    continue
                started = time.monotonic()
                names = ", ".join(cases[i].entry.name for i in batch.cases)
                progress(f"{phase} {number}/{len(packed)}: {names}")
                try:
                    if phase == BASELINE:
                        _baseline_phase(sampler, batch, meshes, phase_b[batch.cases])
                    else:
                        _sandbox_phase(sampler, batch, meshes, phase_s[batch.cases])
                except MeshgenError as exc:  # the batch cannot run: say so for each of its baselines, go on
                    broken[batch.cases] = f"the {phase} phase could not run ({names}): {exc}"
                progress(f"{phase} {number}/{len(packed)} done in {time.monotonic() - started:.1f}s")
        for batch in packed:  # istiod's baseline again where the live one showed what istiod was not seen to give
            if batch.cases not in broken and meshes.istio is not None and not all(
                    sampler.agree(c) for c in phase_b[batch.cases]):
                progress(f"baseline again: {', '.join(cases[i].entry.name for i in batch.cases)}")
                _baseline_phase(sampler, batch, meshes, phase_b[batch.cases], first=0)
        for batch in packed:
            if batch.cases in broken:
                for i in batch.cases:
                    outcomes[cases[i].entry.group].failures.append(f"{cases[i].entry.name}: {broken[batch.cases]}")
                continue
            for comparison in [*phase_b[batch.cases], *phase_s[batch.cases]]:
                case = cases[comparison.left.case]
                outcome = outcomes[case.entry.group]
                outcome.checks += 1
                if sampler.agree(comparison):
                    outcome.agreements += 1
                else:
                    outcome.failures.append(_disagreement(comparison, case, sampler))
    for index, case in enumerate(cases):
        outcome = outcomes[case.entry.group]
        outcome.requests += sum(len(_variants(case, p)) for p in case.generated.probes)
        outcome.sent += sampler.sent[index]
    return [outcomes[g] for g in dict.fromkeys(e.group for e in corpus.entries)]


def _batch(cases: Sequence[Case], indexes: Sequence[int], meshes: Meshes) -> _Batch:
    documents = [d for i in indexes for d in cases[i].documents]
    specs = tuple(s for i in indexes for s in cases[i].generated.specs)
    baseline = load_baseline(documents)
    calls = {k: v for i in indexes for k, v in cases[i].entry.calls.items()}
    return _Batch(tuple(indexes), _plan(baseline, ()), _plan(baseline, specs), specs,
                  traffic.Topology(calls=calls),
                  meshes.istio is not None and cases[indexes[0]].istio_refusal is None)


def _baseline_phase(sampler: _Sampler, batch: _Batch, meshes: Meshes, comparisons: Sequence[_Comparison],
                    first: int = FIRST_BASELINE) -> None:
    sampler.serve(meshes.envoy_baseline, ENVOY, BASELINE, batch.without, batch.topology, (), batch.cases)
    if batch.istio and meshes.istio is not None:
        sampler.serve(meshes.istio, ISTIOD, BASELINE, batch.without, batch.topology, (), batch.cases)
    if first:
        sampler.sample({s: first for c in comparisons for s in (c.left, c.right)} or {
            _Source(ENVOY, BASELINE, i, p, probes.NO_KEY.name): first
            for i in batch.cases for p in range(len(sampler.cases[i].generated.probes))})
    sampler.settle(comparisons)


def _sandbox_phase(sampler: _Sampler, batch: _Batch, meshes: Meshes, comparisons: Sequence[_Comparison]) -> None:
    sampler.serve(meshes.envoy_baseline, ENVOY, BASELINE, batch.without, batch.topology, (), batch.cases)
    sampler.serve(meshes.envoy, ENVOY, SANDBOXES, batch.with_sandboxes, batch.topology, batch.specs, batch.cases)
    if batch.istio and meshes.istio is not None:
        sampler.serve(meshes.istio, ISTIOD, SANDBOXES, batch.with_sandboxes, batch.topology, batch.specs,
                      batch.cases)
    sampler.sample({side: 1 for c in comparisons for side in (c.left, c.right) if side.phase == SANDBOXES})
    sampler.settle(comparisons)


def _variants(case: Case, probe: probes.Probe) -> tuple[probes.Variant, ...]:
    return case.generated.variants if probe.keyed else (probes.NO_KEY,)


def _baseline_comparisons(cases: Sequence[Case], batch: _Batch) -> list[_Comparison]:
    if not batch.istio:
        return []
    return [_Comparison("c", _Source(ISTIOD, BASELINE, i, p, probes.NO_KEY.name),
                        _Source(ENVOY, BASELINE, i, p, probes.NO_KEY.name), probes.NO_KEY)
            for i in batch.cases for p in range(len(cases[i].generated.probes))]


def _comparisons(cases: Sequence[Case], batch: _Batch) -> list[_Comparison]:
    out = []
    for i in batch.cases:
        for p, probe in enumerate(cases[i].generated.probes):
            reference = _Source(ENVOY, BASELINE, i, p, probes.NO_KEY.name)
            for variant in _variants(cases[i], probe):
                check = "a" if variant.key in (None, probes.UNCLAIMED_KEY) else "b"
                for mesh in (ISTIOD, ENVOY) if batch.istio else (ENVOY,):
                    out.append(_Comparison(check, _Source(mesh, SANDBOXES, i, p, variant.name), reference, variant))
                if batch.istio:
                    out.append(_Comparison("c", _Source(ISTIOD, SANDBOXES, i, p, variant.name),
                                           _Source(ENVOY, SANDBOXES, i, p, variant.name), probes.NO_KEY))
    return out


_CHECKS = {"a": "(a) without a sandbox's key, the answers are those with no sandbox",
           "b": "(b) with the key, the answers are those with no sandbox, each forked workload replaced by its fork",
           "c": "(c) istiod and the Envoy backend give the same answers"}


def _disagreement(comparison: _Comparison, case: Case, sampler: _Sampler) -> str:
    probe = case.generated.probes[comparison.left.probe]
    variant = comparison.variant if comparison.check != "c" else next(
        v for v in case.generated.variants if v.name == comparison.left.variant)
    request = traffic.Check(request=probe.sent(variant), expect=traffic.Expectation()).title()
    right_label = str(comparison.right) + (f", with {variant.name}'s forks in place" if variant.forks else "")

    def listed(source: _Source, values: frozenset[str]) -> str:
        counts = sampler.seen[source]
        return "; ".join(f"{answers.describe(v)}" + (f" x{counts[v]}" if counts.get(v) else "")
                         for v in sorted(values)) or "(nothing)"

    return (f"{case.entry.name}: {_CHECKS[comparison.check]}: disagree\n"
            f"  request:  {request}   [{probe.origin}; {variant.name}]\n"
            f"  {comparison.left!s:<22} {listed(comparison.left, sampler.support(comparison.left))}\n"
            f"  {right_label:<22} {listed(comparison.right, sampler.expected(comparison))}")


def table(outcomes: Sequence[Outcome], skipped: Sequence[samples.Skipped]) -> str:
    """The corpus table: one row per group, a total, then the files skipped and the notes (what was not judged)."""
    rows = [("group", "files", "baselines", "sandboxes", "requests", "sent", "checks", "agreements",
             "disagreements")]
    total = Outcome("total")
    for o in outcomes:
        rows.append((o.group, str(len(o.files)), str(o.baselines), str(o.sandboxes), str(o.requests), str(o.sent),
                     str(o.checks), str(o.agreements), str(len(o.failures))))
        total.files |= o.files
        for name in ("baselines", "sandboxes", "requests", "sent", "checks", "agreements"):
            setattr(total, name, getattr(total, name) + getattr(o, name))
        total.failures += o.failures
    rows.append(("total", str(len(total.files)), str(total.baselines), str(total.sandboxes), str(total.requests),
                 str(total.sent), str(total.checks), str(total.agreements), str(len(total.failures))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.insert(len(lines) - 1, lines[1])
    out = ["\n".join(lines)]
    if skipped:
        out.append(f"skipped ({len(skipped)} files):\n" + "\n".join(f"  {s.path}: {s.reason}" for s in skipped))
    notes = [n for o in outcomes for n in o.notes]
    if notes:
        out.append(f"not judged, or judged in part ({len(notes)}):\n" + "\n".join(f"  {n}" for n in notes))
    failures = [f for o in outcomes for f in o.failures]
    if failures:
        out.append(f"FAILURES ({len(failures)}):\n" + "\n".join(failures))
    return "\n\n".join(out)


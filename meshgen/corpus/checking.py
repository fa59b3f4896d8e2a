"""Run the corpus through both local meshes and judge every answer, with no hand-written expectation.

Each baseline runs with the corpus's MeshPolicy, its ``spec.backend`` ``gateway-api`` where it holds HTTPRoutes or
GRPCRoutes, else ``istio`` (:func:`backend_of`). Baselines are packed into batches of baselines of one backend that
cannot see each other (no namespace, edge or TCP port shared, a bounded number of proxies), and each batch is run
twice:

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
from meshgen.backends import localmesh
from meshgen.baseline import protocols
from meshgen.baseline.loading import load_baseline
from meshgen.baseline.model import DEPLOYMENT, GATEWAY_API_GROUP, GRPC_ROUTE, HTTP_ROUTE, SERVICE, Baseline
from meshgen.corpus import answers, probes, samples
from meshgen.documents import Document, JsonObject
from meshgen.errors import InvalidInput, Location, MeshgenError
from meshgen.kube import client, kinds
from meshgen.plan.model import Plan
from meshgen.plan.planning import build_plan
from meshgen.spec.loading import Specs, load_specs
from meshgen.spec.models import MeshPolicy

CAP = 200  # samples of one request on one side at most: a 10 % branch is missed with odds 1e-9
FIRST_BASELINE = 6  # samples of each request without sandboxes, up front (the reference sets)
MAX_PROXIES = 40  # proxies of one batch in istiod's mesh (workloads, forks, one client per namespace)
GATEWAY_API = "gateway-api"
# The corpus's MeshPolicy for each backend it runs with: Istio's (VirtualServices) for a baseline without Gateway
# API routes, the Gateway API's (HTTPRoutes) for one with them, as a platform on either would set spec.backend.
POLICIES = {backend: MeshPolicy.model_validate({**probes.POLICY, "spec": {**probes.POLICY["spec"],
                                                                          "backend": backend}})
            for backend in ("istio", GATEWAY_API)}
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
    backend: str = "istio"  # the MeshPolicy's spec.backend it runs with (:func:`backend_of`)

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
    gateway_api: list[str] = field(default_factory=list)  # its baselines compiled with spec.backend gateway-api


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
        self.seconds: dict[str, float] = collections.defaultdict(float)  # where the time went

    def serve(self, applies: Sequence[tuple[Mesh, str, str, Plan, Sequence[JsonObject]]], batch: _Batch) -> None:
        """Apply plans to meshes, all at once (each mesh waits on its own processes); from then on each answers
        for the batch in its phase (mesh, name, phase, plan, specs), and nothing else does."""
        self.live = {k: v for k, v in self.live.items() if all(v[0] is not a[0] for a in applies)}

        def apply(mesh: Mesh, name: str, plan: Plan, specs: Sequence[JsonObject]) -> None:
            started = time.monotonic()
            mesh.apply(plan, batch.topology, specs)
            self.seconds[f"applying to {name}{' with sandboxes' if specs else ''}"] += time.monotonic() - started

        jobs = [self.pool.submit(apply, mesh, name, plan, specs) for mesh, name, _, plan, specs in applies]
        for job in jobs:
            job.result()
        for mesh, name, phase, _, _ in applies:
            self.live[(name, phase)] = (mesh, frozenset(batch.cases))

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
        started = time.monotonic()
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
        self.seconds["sampling"] += time.monotonic() - started

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
        generated = probes.generate(baseline, sorted(namespaces), entry.namespace)
        backend = backend_of(baseline)
        try:
            plan = _plan(baseline, generated.specs, backend)
            for rendered in (backend, "envoy"):
                compiler.rendering(plan, rendered)
        except MeshgenError as exc:
            detail = exc.render() if isinstance(exc, InvalidInput) else str(exc)
            outcome.failures.append(f"{entry.name}: meshgen refuses its sandboxes:\n{detail}")
            continue
        outcome.baselines += 1
        outcome.sandboxes += len(generated.specs)
        if backend == GATEWAY_API:
            outcome.gateway_api.append(entry.name)
        outcome.notes += [f"{entry.name}: {n}" for n in _unread_gateway_api(documents)]
        same = views.setdefault(repr(samples.routing_view(documents, entry.namespace)), entry.name)
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
        cases.append(Case(entry, generated, tuple(documents), namespaces, refused, backend))
    return cases, outcomes


def backend_of(baseline: Baseline) -> str:
    """The backend a baseline runs with: ``gateway-api`` where it routes with HTTPRoutes or GRPCRoutes (meshgen
    edits those only with the Gateway API backend), else ``istio``. A baseline with both kinds on one host is
    refused by meshgen with either, and reported so."""
    return GATEWAY_API if baseline.of_kind(HTTP_ROUTE) or baseline.of_kind(GRPC_ROUTE) else "istio"


def _unread_gateway_api(documents: Sequence[Document]) -> list[str]:
    """Gateway API objects of a baseline that meshgen does not read (a TCPRoute): what they route gets no
    request."""
    read = {HTTP_ROUTE, GRPC_ROUTE, "Gateway"}
    return [f"{d.body.get('kind')} {d.body['metadata'].get('name')} not read (meshgen reads the Gateway API's "
            "HTTPRoute, GRPCRoute and Gateway): what it routes gets no request"
            for d in documents if str(d.body.get("apiVersion", "")).startswith(f"{GATEWAY_API_GROUP}/")
            and d.body.get("kind") not in read]


def _plan(baseline: Baseline, specs: Sequence[JsonObject], backend: str = "istio") -> Plan:
    documents = [Document(Location("corpus", i), s) for i, s in enumerate(specs)]
    return build_plan(load_specs(documents) if documents else Specs(), baseline, POLICIES[backend])


def batches(cases: Sequence[Case]) -> list[list[int]]:
    """Cases (by index) packed in order into batches that cannot see each other: no namespace or edge shared, no
    port number that is not HTTP shared with any other port (istiod's mesh keeps one TCP service per port), at most
    :data:`MAX_PROXIES` proxies, one backend (a batch is one plan, of one MeshPolicy); a case istiod's mesh cannot
    run, alone."""
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
    return (batch[0].backend == case.backend
            and not set().union(*(c.namespaces for c in batch)) & case.namespaces
            and not (edge and any(p.request.via == "edge" for p in case.generated.probes))
            and not {p for c in batch for p in _opaque_ports(c)} & _ports(case)
            and not {p for c in batch for p in _ports(c)} & set(_opaque_ports(case))
            and sum(c.proxies for c in batch) + case.proxies <= MAX_PROXIES
            and all(c.entry.calls.get(k, v) == v for c in batch for k, v in case.entry.calls.items()))


def _ports(case: Case) -> set[int]:
    return {int(p["port"]) for d in case.documents if d.body.get("kind") == SERVICE
            for p in (d.body.get("spec") or {}).get("ports") or []}


def _opaque_ports(case: Case) -> list[int]:
    """The Service port numbers of a case that are not HTTP (each may belong to one Service in istiod's mesh)."""
    return [int(p["port"]) for d in case.documents if d.body.get("kind") == SERVICE
            for p in (d.body.get("spec") or {}).get("ports") or []
            if not protocols.port_protocol(int(p["port"]), p.get("name"), p.get("protocol"),
                                           p.get("appProtocol")).is_http]


@dataclass(frozen=True)
class _Batch:
    """Baselines run side by side: the plans without and with their sandboxes, and the comparisons of each
    phase."""

    cases: tuple[int, ...]
    without: Plan
    with_sandboxes: Plan
    specs: tuple[JsonObject, ...]
    topology: traffic.Topology
    istio: bool
    baseline_checks: tuple[_Comparison, ...]
    sandbox_checks: tuple[_Comparison, ...]


def run(corpus: samples.Corpus, meshes: Meshes, progress: Callable[[str], None] = lambda line: None,
        ) -> list[Outcome]:
    """Check every baseline of the corpus; one outcome per group, in the table's order."""
    cases, outcomes = prepare(corpus, meshes.refusal)
    packed = [_batch(cases, b, meshes, outcomes) for b in batches(cases)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        sampler = _Sampler(cases, pool)
        broken: dict[tuple[int, ...], str] = {}
        alone: list[_Batch] = []  # a batch that could not run, again without the baseline at fault (or one by one)

        def attempt(batch: _Batch, phases: Sequence[str], number: str) -> bool:
            names = ", ".join(cases[i].entry.name for i in batch.cases)
            for phase in phases:
                started = time.monotonic()
                progress(f"{phase} {number}: {names}")
                try:
                    (_baseline_phase if phase == BASELINE else _sandbox_phase)(sampler, batch, meshes)
                except MeshgenError as exc:  # it cannot run: find out which baseline, say so for it, run the rest
                    progress(f"{phase} {number} could not run: {exc}")
                    invalid = [i for i in batch.cases if phase == BASELINE and _refused_as_written(exc, cases[i])]
                    for i in invalid:
                        outcomes[cases[i].entry.group].notes.append(
                            f"{cases[i].entry.name}: not run: the API server refuses the sample itself ({exc}); "
                            "meshgen compiles it, reading only the fields routing needs")
                    rest = [i for i in batch.cases if i not in invalid]
                    if invalid and rest:
                        alone.append(_batch(cases, rest, meshes, outcomes))
                    elif len(rest) > 1:
                        alone.extend(_batch(cases, [i], meshes, outcomes) for i in rest)
                    broken[batch.cases] = "" if invalid or len(rest) > 1 else f"the {phase} phase could not run: {exc}"
                    return False
                progress(f"{phase} {number} done in {time.monotonic() - started:.1f}s")
            return True

        for phase in (BASELINE, SANDBOXES):
            for number, batch in enumerate(packed, 1):
                if batch.cases not in broken:
                    attempt(batch, (phase,), f"{number}/{len(packed)}")
        for number, batch in enumerate(alone, 1):
            attempt(batch, (BASELINE, SANDBOXES), f"alone {number}/{len(alone)}")
        ran = [b for b in [*packed, *alone] if b.cases not in broken]
        for batch in ran:  # istiod's baseline again where the live one showed what istiod was not seen to give
            if meshes.istio is not None and not all(sampler.agree(c) for c in batch.baseline_checks):
                progress(f"baseline again: {', '.join(cases[i].entry.name for i in batch.cases)}")
                _baseline_phase(sampler, batch, meshes, first=0)
        for batch in ran:
            for comparison in [*batch.baseline_checks, *batch.sandbox_checks]:
                case = cases[comparison.left.case]
                outcome = outcomes[case.entry.group]
                outcome.checks += 1
                if sampler.agree(comparison):
                    outcome.agreements += 1
                else:
                    outcome.failures.append(_disagreement(comparison, case, sampler))
        for members, why in broken.items():
            if len(members) == 1 and why:
                outcomes[cases[members[0]].entry.group].failures.append(f"{cases[members[0]].entry.name}: {why}")
    progress("time: " + ", ".join(f"{k} {v:.0f}s" for k, v in sorted(sampler.seconds.items())))
    for index, case in enumerate(cases):
        outcome = outcomes[case.entry.group]
        outcome.requests += sum(len(_variants(case, p)) for p in case.generated.probes)
        outcome.sent += sampler.sent[index]
    return [outcomes[g] for g in dict.fromkeys(e.group for e in corpus.entries)]


def _batch(cases: Sequence[Case], indexes: Sequence[int], meshes: Meshes, outcomes: Mapping[str, Outcome]) -> _Batch:
    documents = [d for i in indexes for d in cases[i].documents]
    specs = tuple(s for i in indexes for s in cases[i].generated.specs)
    baseline = load_baseline(documents)
    calls = {k: v for i in indexes for k, v in cases[i].entry.calls.items()}
    backend = cases[indexes[0]].backend
    without, with_sandboxes = _plan(baseline, (), backend), _plan(baseline, specs, backend)
    istio = meshes.istio is not None and cases[indexes[0]].istio_refusal is None
    shared = {BASELINE: _shared_tcp_ports(without), SANDBOXES: _shared_tcp_ports(with_sandboxes)}
    judged: dict[str, set[tuple[int, int]]] = {BASELINE: set(), SANDBOXES: set()}
    for phase, ports in shared.items():
        for i in indexes:
            for p, probe in enumerate(cases[i].generated.probes):
                sharing = ports.get(probe.request.port or 0, ()) if probe.request.protocol == "tcp" else ()
                if istio and len(sharing) > 1:
                    outcomes[cases[i].entry.group].notes.append(
                        f"{cases[i].entry.name}: istiod's answers to {probe.request.host}:{probe.request.port} "
                        f"({'without' if phase == BASELINE else 'with'} sandboxes) not judged: TCP port "
                        f"{probe.request.port} belongs to {len(sharing)} Services ({', '.join(sharing)}), and the "
                        "istio test environment binds every outbound listener of a sidecar to one address, so "
                        "istiod keeps one TCP service per port there (on a cluster each has its own address)")
                elif istio:
                    judged[phase].add((i, p))
    return _Batch(tuple(indexes), without, with_sandboxes, specs, traffic.Topology(calls=calls), istio,
                  tuple(_baseline_comparisons(cases, indexes, judged[BASELINE])),
                  tuple(_comparisons(cases, indexes, judged[SANDBOXES])))


def _refused_as_written(exc: MeshgenError, case: Case) -> bool:
    """Whether the API server refused one of the case's own objects as the sample writes it (an invalid sample,
    which kubectl apply would refuse just the same), not something meshgen or the test environment wrote."""
    return isinstance(exc, client.Invalid) and any(
        str(exc).startswith(f"{kinds.Ref.of(d.body)}:") for d in case.documents if d.body.get("kind") in kinds.BY_NAME)


def _shared_tcp_ports(plan: Plan) -> dict[int, tuple[str, ...]]:
    """Port numbers that more than one Service of the plan (fork Services too) has, with those Services' hosts."""
    found: dict[int, list[str]] = collections.defaultdict(list)
    for fqdn, host in localmesh.all_hosts(plan).items():
        for port in host.ports:
            found[port.port].append(fqdn)
    return {number: tuple(hosts) for number, hosts in found.items() if len(hosts) > 1}


def _baseline_phase(sampler: _Sampler, batch: _Batch, meshes: Meshes, first: int = FIRST_BASELINE) -> None:
    comparisons = batch.baseline_checks
    applies: list[tuple[Mesh, str, str, Plan, Sequence[JsonObject]]] = [
        (meshes.envoy_baseline, ENVOY, BASELINE, batch.without, ())]
    if batch.istio and meshes.istio is not None:
        applies.append((meshes.istio, ISTIOD, BASELINE, batch.without, ()))
    sampler.serve(applies, batch)
    if first:
        sampler.sample({s: first for c in comparisons for s in (c.left, c.right)} or {
            _Source(ENVOY, BASELINE, i, p, probes.NO_KEY.name): first
            for i in batch.cases for p in range(len(sampler.cases[i].generated.probes))})
    sampler.settle(comparisons)


def _sandbox_phase(sampler: _Sampler, batch: _Batch, meshes: Meshes) -> None:
    comparisons = batch.sandbox_checks
    applies: list[tuple[Mesh, str, str, Plan, Sequence[JsonObject]]] = [
        (meshes.envoy_baseline, ENVOY, BASELINE, batch.without, ()),
        (meshes.envoy, ENVOY, SANDBOXES, batch.with_sandboxes, batch.specs)]
    if batch.istio and meshes.istio is not None:
        applies.append((meshes.istio, ISTIOD, SANDBOXES, batch.with_sandboxes, batch.specs))
    sampler.serve(applies, batch)
    sampler.sample({side: 1 for c in comparisons for side in (c.left, c.right) if side.phase == SANDBOXES})
    sampler.settle(comparisons)


def _variants(case: Case, probe: probes.Probe) -> tuple[probes.Variant, ...]:
    return case.generated.variants if probe.keyed else (probes.NO_KEY,)


def _baseline_comparisons(cases: Sequence[Case], indexes: Sequence[int],
                          judged: set[tuple[int, int]]) -> list[_Comparison]:
    """(c) without sandboxes, for each request istiod's answers can be judged for."""
    return [_Comparison("c", _Source(ISTIOD, BASELINE, i, p, probes.NO_KEY.name),
                        _Source(ENVOY, BASELINE, i, p, probes.NO_KEY.name), probes.NO_KEY)
            for i in indexes for p in range(len(cases[i].generated.probes)) if (i, p) in judged]


def _comparisons(cases: Sequence[Case], indexes: Sequence[int], judged: set[tuple[int, int]]) -> list[_Comparison]:
    """(a) and (b) for both meshes (istiod's where it can be judged) and (c), with sandboxes."""
    out = []
    for i in indexes:
        for p, probe in enumerate(cases[i].generated.probes):
            reference = _Source(ENVOY, BASELINE, i, p, probes.NO_KEY.name)
            meshes = (ISTIOD, ENVOY) if (i, p) in judged else (ENVOY,)
            for variant in _variants(cases[i], probe):
                check = "a" if variant.key in (None, probes.UNCLAIMED_KEY) else "b"
                out += [_Comparison(check, _Source(mesh, SANDBOXES, i, p, variant.name), reference, variant)
                        for mesh in meshes]
                if ISTIOD in meshes:
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
    gateway_api = [n for o in outcomes for n in o.gateway_api]
    if gateway_api:
        out.append(f"compiled and applied with spec.backend {GATEWAY_API} ({len(gateway_api)} baselines, the rest "
                   "istio):\n" + "\n".join(f"  {n}" for n in gateway_api))
    if skipped:
        out.append(f"skipped ({len(skipped)} files):\n" + "\n".join(f"  {s.path}: {s.reason}" for s in skipped))
    notes = [n for o in outcomes for n in o.notes]
    if notes:
        out.append(f"not judged, or judged in part ({len(notes)}):\n" + "\n".join(f"  {n}" for n in notes))
    failures = [f for o in outcomes for f in o.failures]
    if failures:
        out.append(f"FAILURES ({len(failures)}):\n" + "\n".join(failures))
    return "\n\n".join(out)


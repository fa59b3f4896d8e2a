"""Golden cases: a directory per case holding inputs and the expected compile output (or error), and traffic.

``golden/<case>/`` holds ``sandboxes.yaml``, ``baseline/``, an optional ``policy.yaml``, and ``expected.yaml``
(the exact compile output) or ``expected-error.txt`` (the exact error text, paths relative to the case). A case
with neither must compile. A case whose compile warns has ``expected-warnings.txt`` (the exact warnings, one a
line); one without that file must not warn. ``update`` rewrites the expectations from the current output, for
review in a diff.

Expectations are for the backend the case's policy names (``istio`` without a policy). For every other backend a
MeshPolicy can name, ``backends/<name>/`` holds the same three files, for the case compiled with that backend
(``meshgen golden --backend <name>``): what it writes, or why it cannot express the case.

A case that routes also has ``traffic.yaml`` (requests and what must answer them, see :mod:`meshgen.traffic`) and
optionally ``topology.yaml``; given a running mesh, :func:`check` applies the case to it and sends every request.
The mesh is passed in (anything with ``apply`` and ``send``: the plain-Envoy mesh or the istiod mesh of
:mod:`meshgen.testenv`), so this module starts no process itself. A mesh that cannot run a case says why
(:class:`~meshgen.errors.CannotRun`): the case's traffic is then reported as skipped, with the reason.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from meshgen import compiler, traffic
from meshgen.backends import localmesh
from meshgen.documents import JsonObject
from meshgen.errors import CannotRun, InvalidInput, Location, MeshgenError
from meshgen.plan.model import Plan
from meshgen.spec.loading import Specs
from meshgen.spec.models import DEFAULT_POLICY

SANDBOXES = "sandboxes.yaml"
BASELINE = "baseline"
POLICY = "policy.yaml"
EXPECTED = "expected.yaml"
EXPECTED_ERROR = "expected-error.txt"
EXPECTED_WARNINGS = "expected-warnings.txt"
BACKENDS = "backends"
TRAFFIC = "traffic.yaml"
TOPOLOGY = "topology.yaml"


class Mesh(Protocol):
    """A running mesh traffic checks go through (:class:`meshgen.testenv.mesh.RunningMesh`,
    :class:`meshgen.testenv.istiomesh.IstioMesh`). ``apply`` takes the plan and the spec documents it was compiled
    from: a mesh with a cluster stores those, as ``meshgen apply`` does."""

    def apply(self, plan: Plan, topology: traffic.Topology | None = None,
              specs: Sequence[JsonObject] = ()) -> Any: ...

    def send(self, request: traffic.Request) -> traffic.Response: ...


@dataclass(frozen=True)
class Case:
    """One golden case directory."""

    name: str
    path: Path

    @property
    def policy(self) -> Path | None:
        path = self.path / POLICY
        return path if path.exists() else None

    @property
    def traffic(self) -> Path | None:
        path = self.path / TRAFFIC
        return path if path.exists() else None

    def expectations(self, backend: str | None = None) -> Path:
        """Where the expectations for ``backend`` are (None: the case's own backend)."""
        if backend is None or backend == self.backend:
            return self.path
        return self.path / BACKENDS / backend

    @property
    def backend(self) -> str:
        """The backend the case's policy names (the top-level expectations are its; an unreadable policy: the
        default, and the compile says what is wrong with it)."""
        if self.policy is None:
            return DEFAULT_POLICY.spec.backend.value
        try:
            return compiler.read_policy(str(self.policy), Specs())[0].spec.backend.value
        except InvalidInput:
            return DEFAULT_POLICY.spec.backend.value


@dataclass(frozen=True)
class Outcome:
    """What compiling a case produced: output text, its plan and the spec documents, or error text (never both)."""

    output: str | None
    error: str | None
    plan: Plan | None = None
    documents: tuple[JsonObject, ...] = ()

    @property
    def warnings(self) -> str:
        """The compile's warnings as ``meshgen compile`` prints them, one a line (empty: none)."""
        return "".join(f"{w.render()}\n" for w in self.plan.warnings) if self.plan is not None else ""


@dataclass(frozen=True)
class Result:
    """The verdict on one case (``skipped``: its traffic could not run in this mesh, ``detail`` says why)."""

    case: Case
    ok: bool
    detail: str = ""
    skipped: bool = False


def discover(root: Path, names: Sequence[str] = ()) -> list[Case]:
    """Cases under ``root`` (every directory with a sandboxes.yaml), sorted; only ``names`` if given. Finding
    none is an error: a run that checks nothing must not pass."""
    if not root.is_dir():
        raise InvalidInput.one(Location(str(root)), "the golden cases directory does not exist",
                               "pass --cases DIR, a directory holding one sub-directory per case")
    found = sorted((Case(p.parent.name, p.parent) for p in root.glob(f"*/{SANDBOXES}")), key=lambda c: c.name)
    if not found:
        raise InvalidInput.one(Location(str(root)), f"no golden cases here (no */{SANDBOXES})",
                               f"pass --cases DIR, a directory holding one sub-directory per case, each with "
                               f"{SANDBOXES}")
    if names:
        known = {c.name: c for c in found}
        missing = [n for n in names if n not in known]
        if missing:
            raise InvalidInput.one(None, f"no golden case named {', '.join(missing)} under {root}",
                                   f"cases: {', '.join(sorted(known))}")
        return [known[n] for n in names]
    return found


def compile_case(case: Case, backend: str | None = None) -> Outcome:
    """Compile a case the way ``meshgen compile [--backend B]`` would; errors are rendered with case-relative
    paths."""
    baseline = case.path / BASELINE
    try:
        inputs = compiler.for_backend(compiler.read_inputs(
            [str(case.path / SANDBOXES)],
            [str(baseline)] if baseline.exists() else [],
            str(case.policy) if case.policy else None,
        ), backend)
        plan = compiler.plan_of(inputs)
        return Outcome(compiler.dump(compiler.render(plan)), None, plan, inputs.documents)
    except InvalidInput as exc:
        return Outcome(None, exc.render().replace(f"{case.path}/", "") + "\n")


def check(case: Case, mesh: Mesh | None = None, backend: str | None = None) -> Result:
    """Compare a case's compile outcome (for ``backend``; None: the case's own) with its expectation; with a
    ``mesh``, also check its traffic."""
    outcome = compile_case(case, backend)
    result = _check_compile(case, outcome, case.expectations(backend))
    if mesh is None or case.traffic is None or outcome.plan is None:
        return result
    try:
        failures = check_traffic(case, outcome, mesh)
    except CannotRun as exc:
        return Result(case, result.ok, result.detail or f"traffic skipped: {exc}\n", skipped=result.ok)
    if not failures:
        return result
    compile_detail = [result.detail.rstrip("\n")] if result.detail else []
    return Result(case, False, "\n".join([*compile_detail, *failures]) + "\n")


def check_traffic(case: Case, outcome: Outcome, mesh: Mesh) -> list[str]:
    """Apply the compiled case to ``mesh``, send every request of its traffic.yaml, and describe each mismatch."""
    assert case.traffic is not None and outcome.plan is not None
    try:
        checks = traffic.load_checks(case.traffic, localmesh.all_hosts(outcome.plan))
        topology_file = case.path / TOPOLOGY
        mesh.apply(outcome.plan, traffic.load_topology(topology_file if topology_file.exists() else None),
                   outcome.documents)
        verdicts = traffic.run(checks, mesh)
    except CannotRun:
        raise
    except MeshgenError as exc:
        return [f"traffic: {str(exc).replace(f'{case.path}/', '')}"]
    return [traffic.report(v.check, v.response, v.problems) for v in verdicts if not v.ok]


def _check_compile(case: Case, outcome: Outcome, where: Path) -> Result:
    if not where.is_dir():
        return Result(case, False, f"no expectations in {where.relative_to(case.path.parent)} (run meshgen golden "
                                   f"--update --backend {where.name} and review them)\n")
    expected_file = where / EXPECTED
    error_file = where / EXPECTED_ERROR
    if error_file.exists():
        want = error_file.read_text(encoding="utf-8")
        if outcome.error is None:
            return Result(case, False, f"expected an error, but the case compiled:\n{want}")
        return _compare(case, _shown(case, where, EXPECTED_ERROR), want, outcome.error)
    if outcome.error is not None:
        return Result(case, False, f"compile failed:\n{outcome.error}")
    warnings_file = where / EXPECTED_WARNINGS
    want = warnings_file.read_text(encoding="utf-8") if warnings_file.exists() else ""
    if want != outcome.warnings:
        return _compare(case, _shown(case, where, EXPECTED_WARNINGS), want, outcome.warnings)
    if expected_file.exists():
        return _compare(case, _shown(case, where, EXPECTED), expected_file.read_text(encoding="utf-8"),
                        outcome.output or "")
    return Result(case, True)


def update(case: Case, backend: str | None = None) -> Result:
    """Rewrite a case's expectation (for ``backend``; None: the case's own) from its current outcome."""
    outcome = compile_case(case, backend)
    where = case.expectations(backend)
    where.mkdir(parents=True, exist_ok=True)
    keep, drop = (EXPECTED_ERROR, EXPECTED) if outcome.error is not None else (EXPECTED, EXPECTED_ERROR)
    text = outcome.error if outcome.error is not None else outcome.output
    target = where / keep
    changed = not target.exists() or target.read_text(encoding="utf-8") != text
    target.write_text(text or "", encoding="utf-8")
    (where / drop).unlink(missing_ok=True)
    warnings_file = where / EXPECTED_WARNINGS
    before = warnings_file.read_text(encoding="utf-8") if warnings_file.exists() else ""
    changed = changed or before != outcome.warnings
    if outcome.warnings:
        warnings_file.write_text(outcome.warnings, encoding="utf-8")
    else:
        warnings_file.unlink(missing_ok=True)
    return Result(case, True, "updated" if changed else "")


def _shown(case: Case, where: Path, name: str) -> str:
    """An expectation file's name as a diff shows it (``backends/<name>/expected.yaml`` for another backend's)."""
    return str((where / name).relative_to(case.path))


def _compare(case: Case, name: str, want: str, got: str) -> Result:
    if want == got:
        return Result(case, True)
    diff = difflib.unified_diff(
        want.splitlines(keepends=True), got.splitlines(keepends=True),
        fromfile=f"{case.name}/{name} (expected)", tofile=f"{case.name}/{name} (compiled)",
    )
    return Result(case, False, "".join(diff))

"""The real-world corpus (:mod:`meshgen.corpus`) through real istiod and the Envoy backend: every baseline made of
Istio's own samples, read from the Go module cache at test time, with sandboxes and requests generated from it and
judged with no hand-written expectation. The corpus table is printed at the end of the session (and on failure).

Run it alone: ``.venv/bin/python -m pytest tests/kube/test_corpus.py`` (or ``meshgen corpus``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from meshgen.corpus import checking, samples
from meshgen.testenv import istiomesh
from meshgen.testenv.istiomesh import IstioMesh
from meshgen.testenv.mesh import RunningMesh
from tests.conftest import istio_samples
from tests.kube.conftest import REPORTS

pytestmark = pytest.mark.kube


@pytest.fixture
def mesh(istio_mesh: IstioMesh) -> Iterator[IstioMesh]:
    yield istio_mesh
    istio_mesh.clear()


def test_the_corpus_agrees_everywhere(mesh: IstioMesh, request: pytest.FixtureRequest) -> None:
    """(a) no key -> the answers without sandboxes; (b) a sandbox's key -> those with its forks in place;
    (c) istiod's answers are the Envoy backend's. Every disagreement, and every baseline meshgen cannot read or
    compile, is a failure with the request and both answers."""
    corpus = samples.discover(istio_samples())
    with RunningMesh() as baseline_mesh, RunningMesh() as sandbox_mesh:
        outcomes = checking.run(corpus, checking.Meshes(mesh, baseline_mesh, sandbox_mesh, istiomesh.refusal))
    text = checking.table(outcomes, corpus.skipped)
    request.config.stash.setdefault(REPORTS, []).append(f"the real-world corpus (meshgen.corpus)\n{text}")
    failures = [f for o in outcomes for f in o.failures]
    assert not failures, text
    # The corpus ran: every group that has a baseline sent requests and checked them through both meshes, unless
    # the table says why not (it routes exactly as another baseline does; the API server refuses the sample).
    assert all(o.agreements == o.checks for o in outcomes), text
    unrun = [o.group for o in outcomes if o.baselines and not o.checks and not any("not run" in n for n in o.notes)]
    assert not unrun, text
    assert sum(o.checks for o in outcomes) >= 1000, text

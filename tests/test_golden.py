"""Every golden case compiles to exactly its expected output (or error)."""

from __future__ import annotations

import pytest

from meshgen import golden
from meshgen.backends import CLUSTER_BACKENDS
from tests.conftest import GOLDEN

CASES = golden.discover(GOLDEN)
BY_BACKEND = [(c, b) for c in CASES for b in CLUSTER_BACKENDS]


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 14
    assert sum(1 for c in CASES if (c.path / golden.EXPECTED_ERROR).exists()) >= 4


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_error_cases_are_named_error(case: golden.Case) -> None:
    """A case meant to compile must not silently turn into an error case after --update (and vice versa)."""
    expects_error = (case.path / golden.EXPECTED_ERROR).exists()
    assert expects_error == case.name.startswith("error-")
    assert expects_error != (case.path / golden.EXPECTED).exists()


@pytest.mark.parametrize(("case", "backend"), BY_BACKEND, ids=[f"{c.name}-{b}" for c, b in BY_BACKEND])
def test_case(case: golden.Case, backend: str) -> None:
    """Every case, for every backend a MeshPolicy can name: what it writes, or why it cannot express the case."""
    result = golden.check(case, backend=backend)
    assert result.ok, result.detail


def test_every_backend_expresses_some_case_and_refuses_some() -> None:
    for backend in CLUSTER_BACKENDS:
        compiled = [c for c in CASES if (c.expectations(backend) / golden.EXPECTED).exists()]
        refused = [c for c in CASES if not c.name.startswith("error-")
                   and (c.expectations(backend) / golden.EXPECTED_ERROR).exists()]
        assert len(compiled) >= 10, backend
        assert refused or backend == "istio", backend  # what one backend cannot express, said why


def test_golden_command_reports_a_mismatch_with_a_diff(tmp_path, meshgen) -> None:
    import shutil

    shutil.copytree(GOLDEN / "single-fork", tmp_path / "single-fork", symlinks=False)
    expected = tmp_path / "single-fork" / golden.EXPECTED
    expected.write_text(expected.read_text().replace("replicas: 1", "replicas: 2"))
    result = meshgen("golden", "--cases", str(tmp_path))
    assert result.exit_code == 2
    assert "-  replicas: 2" in result.output and "+  replicas: 1" in result.output
    assert "0 passed, 1 failed" in result.output

    result = meshgen("golden", "--cases", str(tmp_path), "--update")
    assert result.exit_code == 0
    assert meshgen("golden", "--cases", str(tmp_path)).exit_code == 0


def test_golden_command_rejects_unknown_case(meshgen) -> None:
    result = meshgen("golden", "--cases", str(GOLDEN), "no-such-case")
    assert result.exit_code == 2
    assert "no golden case named no-such-case" in result.stderr

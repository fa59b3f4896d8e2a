"""Shared fixtures: paths to the repository's examples, golden cases and policies, and a CLI runner."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import settings

from meshgen.cli import main

# Fuzz budgets: `make test` runs the default (bounded); `make fuzz` runs HYPOTHESIS_PROFILE=fuzz (long).
settings.register_profile("default", max_examples=40)
settings.register_profile("fuzz", max_examples=3000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "golden"
EXAMPLES = ROOT / "examples"
POLICIES = ROOT / "policies"
BOOKINFO = GOLDEN / "_shared" / "bookinfo.yaml"


def istio_samples() -> Path:
    """Istio's ``samples/`` from the pinned istio.io/istio module in the Go module cache (the test environment's
    build downloads it): real-world input read at test time, never vendored. Skips (fails under CI) without it."""
    from meshgen.testenv.binaries import istio_samples as found

    samples = found()
    if samples is None:
        message = "Istio's samples are not in the Go module cache: run `make testenv`"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return samples


@pytest.fixture
def meshgen() -> Callable[..., Result]:
    """Run the CLI in-process: ``meshgen("compile", "-f", ...)`` -> click Result (exit_code, stdout, stderr)."""
    runner = CliRunner()

    def run(*args: str, input: str | None = None) -> Result:
        return runner.invoke(main, list(args), input=input, catch_exceptions=False)

    return run

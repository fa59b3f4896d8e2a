"""Shared fixtures: paths to the repository's examples, golden cases and policies, and a CLI runner."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from meshgen.cli import main

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "golden"
EXAMPLES = ROOT / "examples"
POLICIES = ROOT / "policies"
BOOKINFO = GOLDEN / "_shared" / "bookinfo.yaml"


@pytest.fixture
def meshgen() -> Callable[..., Result]:
    """Run the CLI in-process: ``meshgen("compile", "-f", ...)`` -> click Result (exit_code, stdout, stderr)."""
    runner = CliRunner()

    def run(*args: str, input: str | None = None) -> Result:
        return runner.invoke(main, list(args), input=input, catch_exceptions=False)

    return run

"""``meshgen demo`` as a user runs it: a real process, real Envoy and workloads, a table, exit 0, nothing left."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from tests.conftest import ROOT


def test_demo_prints_hop_paths_for_each_key_and_stops_everything() -> None:
    mark = f"MESHGEN_TEST_RUN={uuid.uuid4().hex}"  # every process the demo starts inherits it
    result = subprocess.run([sys.executable, "-m", "meshgen", "demo"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, check=False, env={**os.environ, **dict([mark.split("=")])})
    assert result.returncode == 0, result.stderr
    rows = {line.split("  ")[0]: line for line in result.stdout.splitlines()[2:]}
    assert set(rows) == {"no key", "sandbox pr-1234", "sandbox pr-1240", "route group checkout-flow"}
    assert "productpage-v1 -> [reviews-v1@pr-1234 -> ratings-v1, details-v1]" in rows["sandbox pr-1234"]
    assert "-> ratings-v1@pr-1240, details-v1]" in rows["sandbox pr-1240"]
    assert "productpage-v1 -> [reviews-v1@pr-1234 -> ratings-v1@pr-1240, details-v1]" in rows[
        "route group checkout-flow"]
    assert "@" not in rows["no key"]
    assert "demo: 2/3 applying 3 routing key(s) and 2 fork(s) to the running envoy (no restart)" in result.stderr
    assert "every process stopped" in result.stderr
    assert _marked(mark) == set(), "processes the demo started are still running"


def test_demo_names_the_input_that_is_wrong(tmp_path) -> None:
    topology = tmp_path / "topology.yaml"
    topology.write_text("calls: {frontpage: [reviews]}\n")
    result = subprocess.run([sys.executable, "-m", "meshgen", "demo", "--topology", str(topology)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2
    assert "topology: no Service named 'frontpage' in the baseline" in result.stderr
    assert "Traceback" not in result.stderr


def _marked(mark: str) -> set[int]:
    """Processes carrying ``mark`` in their environment: the ones this test started (and their children), and no
    one else's, whatever else runs on the machine."""
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and mark.encode() in (entry / "environ").read_bytes().split(b"\0"):
                found.add(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found

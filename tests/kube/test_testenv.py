"""``meshgen testenv up --istio --detach`` / ``down`` as a user runs them: eval-able output, a working cluster and
istiod, no leftovers."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from meshgen.testenv import controlplane, processes
from tests.kube.conftest import _binaries, _istio_binaries

pytestmark = pytest.mark.kube


def meshgen(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshgen", *args], capture_output=True, text=True, timeout=180,
                          check=False, env={**os.environ, **(env or {})})


def test_up_detach_prints_an_export_line_and_down_stops_everything(tmp_path: Path) -> None:
    _binaries()
    _istio_binaries()
    directory = tmp_path / "env"
    up = meshgen("testenv", "up", "--istio", "--xds-port", "0", "--detach", "--dir", str(directory))
    try:
        assert up.returncode == 0, up.stderr
        assert up.stdout == f"export KUBECONFIG={directory / 'kubeconfig'}\n"
        assert "meshgen testenv down" in up.stderr
        assert "istiod: xDS (plaintext gRPC) at 127.0.0.1:" in up.stderr
        state = controlplane.read_state(directory)
        assert state is not None
        pids = {name: int(pid) for name, pid in state["pids"].items()}
        commands = {"etcd": "etcd", "kube-apiserver": "kube-apiserver", "istiod": "pilot-discovery"}
        assert sorted(pids) == sorted(commands)
        assert all(processes.alive(pid, commands[name]) for name, pid in pids.items())
        with urllib.request.urlopen(f"{state['istiod']['debug']}/ready", timeout=5) as ready:
            assert ready.status == 200
        env = {"KUBECONFIG": str(directory / "kubeconfig")}
        listed = meshgen("get", "sandboxes", env=env)
        assert (listed.returncode, listed.stdout) == (0, "No resources found.\n"), listed.stderr
        again = meshgen("testenv", "up", "--detach", "--dir", str(directory))
        assert again.stdout == up.stdout, "up on a running environment just prints the export line again"
        busy = meshgen("testenv", "up", "--dir", str(directory))
        assert busy.returncode == 2, "an error, not 1 (changes pending)"
        assert f"error: a control plane already runs from {directory}" in busy.stderr
    finally:
        down = meshgen("testenv", "down", "--dir", str(directory))
    assert down.returncode == 0 and "stopped" in down.stdout
    assert not any(processes.alive(pid, commands[name]) for name, pid in pids.items())
    assert controlplane.read_state(directory) is None

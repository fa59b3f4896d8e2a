"""The local mesh's life cycle, on real processes: live updates without a restart or a dropped request, rejected
configuration reported, failed workloads named with their log, and nothing left running afterwards — even when
the process that started the mesh is killed."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshgen import traffic
from meshgen.backends import envoy as envoy_backend
from meshgen.backends.localmesh import LocalMesh, addresses
from meshgen.baseline.loading import load_baseline
from meshgen.documents import parse_documents
from meshgen.plan.model import Plan
from meshgen.plan.planning import build_plan
from meshgen.spec.loading import Specs, load_specs
from meshgen.spec.models import DEFAULT_POLICY
from meshgen.testenv import processes
from meshgen.testenv.envoy import ConfigRejected
from meshgen.testenv.mesh import RunningMesh
from meshgen.testenv.processes import ProcessFailed
from tests.conftest import BOOKINFO, ROOT

REVIEWS = "reviews.bookinfo.svc.cluster.local"


def sandbox(name: str, key: str, workload: str = "reviews-v1") -> str:
    return (f"apiVersion: meshgen.dev/v1alpha1\nkind: Sandbox\nmetadata: {{name: {name}}}\n"
            f"spec:\n  routingKey: {key}\n  forks: [{{forkOf: {{namespace: bookinfo, name: {workload}}}}}]\n")


def plan_of(*sandboxes: str) -> Plan:
    baseline = load_baseline(parse_documents(BOOKINFO.read_text(), str(BOOKINFO)))
    specs = load_specs(parse_documents("---\n".join(sandboxes), "sandboxes.yaml")) if sandboxes else Specs()
    return build_plan(specs, baseline, DEFAULT_POLICY)


def request(key: str | None = None, **headers: str) -> traffic.Request:
    if key is not None:
        headers["baggage"] = f"meshgen-routing-key={key}"
    return traffic.Request(host=REVIEWS, headers=dict(headers))


@pytest.fixture
def mesh() -> Iterator[RunningMesh]:
    with RunningMesh() as running:
        yield running


def served_by(mesh: RunningMesh, req: traffic.Request) -> str:
    response = mesh.send(req)
    assert response.status == 200, response
    return str(response.body["served_by"])


def test_a_changed_plan_reaches_the_running_envoy_without_a_restart_or_a_dropped_request(mesh: RunningMesh) -> None:
    mesh.apply(plan_of(sandbox("pr-1", "pr1")))
    envoy_pid = mesh.envoy.process.pid if mesh.envoy.process else None
    assert served_by(mesh, request("pr1")) == "reviews-v1@pr-1"
    assert served_by(mesh, request("pr2")) in ("reviews-v1", "reviews-v2")

    results: dict[str, traffic.Response] = {}
    slow = "reviews-v1=1.5,reviews-v2=1.5,reviews-v1@pr-1=1.5"
    in_flight = [threading.Thread(target=lambda k=k: results.__setitem__(str(k), mesh.send(request(
        k, **{"x-echo-delay": slow})))) for k in (None, "pr1")]
    for thread in in_flight:
        thread.start()
    time.sleep(0.5)  # both requests are now inside their workloads
    mesh.apply(plan_of(sandbox("pr-2", "pr2")))  # pr-1 goes away (its fork too), pr-2 arrives
    assert served_by(mesh, request("pr2")) == "reviews-v1@pr-2"
    assert served_by(mesh, request("pr1")) in ("reviews-v1", "reviews-v2")
    for thread in in_flight:
        thread.join(10)
    assert results["None"].status == 200 and results["None"].body["served_by"] in ("reviews-v1", "reviews-v2")
    assert results["pr1"].status == 200 and results["pr1"].body["served_by"] == "reviews-v1@pr-1"
    assert mesh.envoy.process is not None and mesh.envoy.process.pid == envoy_pid
    assert not [k for k in mesh.echoes if k.identity == "reviews-v1@pr-1"]

    mesh.apply(plan_of())  # every sandbox removed: back to the baseline
    assert served_by(mesh, request("pr2")) in ("reviews-v1", "reviews-v2")
    assert sorted(k.identity for k in mesh.echoes) == ["details-v1", "productpage-v1", "ratings-v1", "reviews-v1",
                                                       "reviews-v2"]


def test_a_rejected_configuration_is_reported_and_the_old_one_keeps_serving(mesh: RunningMesh) -> None:
    config = mesh.apply(plan_of(sandbox("pr-1", "pr1")))
    route_config, edge = config.route_configs
    assert edge["name"] == envoy_backend.EDGE_ROUTE_CONFIG
    # Envoy refuses a virtual host with both a route list and a matcher tree.
    broken_hosts = [{**v, "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 200}}]}
                    if "matcher" in v else v for v in route_config["virtual_hosts"]]
    broken = envoy_backend.EnvoyConfig(config.listeners, config.clusters,
                                       ({**route_config, "virtual_hosts": broken_hosts}, edge), config.addresses)
    with pytest.raises(ConfigRejected) as caught:
        mesh.envoy.apply(broken)
    assert "rds.9080.update_rejected" in str(caught.value)
    assert "log:" in str(caught.value)
    assert served_by(mesh, request("pr1")) == "reviews-v1@pr-1"


def test_a_workload_that_cannot_start_is_named_with_its_log_tail() -> None:
    plan = plan_of()
    mesh = RunningMesh()
    workload = next(w for w in addresses(plan, LocalMesh(network=mesh.network)).workloads
                    if w.identity == "ratings-v1")
    with socket.socket() as squatter:
        squatter.bind((workload.address, workload.port))
        squatter.listen()
        with pytest.raises(ProcessFailed) as caught, mesh:
            mesh.apply(plan)
    assert not [p for p in mesh.processes() if p.running()]
    message = str(caught.value)
    assert message.startswith("workload ratings-v1 exited with code 1")
    assert "Address already in use" in message
    log = Path(message.split("log: ", 1)[1].split("\n", 1)[0])
    assert "Address already in use" in log.read_text()  # a failed mesh keeps its logs
    shutil.rmtree(mesh.workdir)


def test_nothing_is_left_running_after_close() -> None:
    with RunningMesh() as mesh:
        mesh.apply(plan_of(sandbox("pr-1", "pr1")))
        commands = {p.pid: _command(p.pid) for p in mesh.processes() if p.pid is not None}
    assert len(commands) == 7
    assert not [pid for pid, command in commands.items() if processes.alive(pid, command)]


def test_nothing_outlives_a_killed_parent(tmp_path: Path) -> None:
    """SIGKILL skips atexit; the kernel still stops the children (PR_SET_PDEATHSIG)."""
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        sys.path.insert(0, {str(ROOT)!r})
        from meshgen.testenv.mesh import RunningMesh
        from tests.test_envoy_live import plan_of
        mesh = RunningMesh(Path({str(tmp_path)!r}))
        mesh.start()
        mesh.apply(plan_of())
        print(" ".join(str(p.pid) for p in mesh.processes()), flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        pids = [int(p) for p in line.split()]
        assert len(pids) == 6, f"the parent printed {line!r}"
        commands = {pid: _command(pid) for pid in pids}
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 10
    while [pid for pid in pids if processes.alive(pid, commands[pid])] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in pids if processes.alive(pid, commands[pid])]


def _command(pid: int) -> str:
    """A running process's whole command line: what ``processes.alive`` must still find there, so that a later
    process given the same pid (pid_max may be 32768) or a zombie does not count as this one."""
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode()

"""The local mesh's life cycle, on real processes: live updates without a restart or a dropped request, rejected
configuration reported, failed workloads named with their log, and nothing left running afterwards — even when
the process that started the mesh is killed."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
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
from tests.conftest import BOOKINFO, GOLDEN, ROOT

REVIEWS = "reviews.bookinfo.svc.cluster.local"
EDGE_GATEWAY = GOLDEN / "_shared" / "edge-gateway.yaml"


def sandbox(name: str, key: str, workload: str = "reviews-v1") -> str:
    return (f"apiVersion: meshgen.dev/v1alpha1\nkind: Sandbox\nmetadata: {{name: {name}}}\n"
            f"spec:\n  routingKey: {key}\n  forks: [{{forkOf: {{namespace: bookinfo, name: {workload}}}}}]\n")


def plan_of(*sandboxes: str, edge: bool = False) -> Plan:
    """The plan of ``sandboxes`` over bookinfo (with the edge gateway's VirtualService: ``edge``)."""
    files = [BOOKINFO, EDGE_GATEWAY] if edge else [BOOKINFO]
    baseline = load_baseline([d for f in files for d in parse_documents(f.read_text(), str(f))])
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


def with_lua(config: envoy_backend.EnvoyConfig, change: Callable[[str], str]) -> envoy_backend.EnvoyConfig:
    """The same configuration with every listener's Lua source passed through ``change``."""
    text = json.dumps(list(config.listeners))
    listeners = json.loads(text)
    for listener in listeners:
        for chain in listener.get("filter_chains", []):
            for network_filter in chain["filters"]:
                for http_filter in network_filter["typed_config"].get("http_filters", []):
                    source = http_filter["typed_config"].get("default_source_code")
                    if source is not None:
                        source["inline_string"] = change(source["inline_string"])
    return envoy_backend.EnvoyConfig(tuple(listeners), config.clusters, config.route_configs, config.addresses)


def edge_request(**headers: str) -> traffic.Request:
    return traffic.Request(host=REVIEWS, via="edge", headers=dict(headers))


def test_a_failure_inside_the_filters_never_routes_on_an_unchecked_key(mesh: RunningMesh) -> None:
    """Real Envoy runs the filters with one of their functions made to fail: the request still gets an answer, from
    the baseline, with no key left in it (Envoy itself would pass it on unchanged: fail open)."""
    config = mesh.apply(plan_of(sandbox("pr-1", "pr1"), edge=True))
    assert served_by(mesh, request("pr1")) == "reviews-v1@pr-1"
    mesh.envoy.apply(with_lua(config, lambda lua: lua.replace(
        "function envoy_on_request", 'function routing_member() error("injected failure") end\n'
        "function envoy_on_request")))
    for req in (request("pr1"), edge_request(baggage="u=1,meshgen-routing-key=pr1")):
        response = mesh.send(req)
        assert response.status == 200 and response.body["served_by"] in ("reviews-v1", "reviews-v2"), response
        assert "x-meshgen-routing-key" not in response.body["headers"]
    assert "baggage" not in mesh.send(edge_request(baggage="u=1,meshgen-routing-key=pr1")).body["headers"]
    assert mesh.envoy.process is not None
    assert "meshgen routing-key filter failed, request stripped" in mesh.envoy.process.log.read_text()
    # A routing header the filter set before it failed goes too.
    mesh.envoy.apply(with_lua(config, lambda lua: lua.replace(
        "function envoy_on_request", "function routing_key(headers) headers:replace(ROUTING_HEADER, 'pr1') "
        'error("injected failure") end\nfunction envoy_on_request')))
    assert served_by(mesh, traffic.Request(host=REVIEWS, headers={"baggage": "a=1"})) in ("reviews-v1", "reviews-v2")


def test_a_60_kb_baggage_is_read_and_stripped_like_a_short_one(mesh: RunningMesh) -> None:
    """The padding that used to cost seconds per request, at the size Envoy admits (60 KiB of headers)."""
    mesh.apply(plan_of(sandbox("pr-1", "pr1"), edge=True))
    padded = "meshgen-routing-key=pr1" + " " * 59_000 + "x"
    assert served_by(mesh, traffic.Request(host=REVIEWS, headers={"baggage": padded})) in ("reviews-v1", "reviews-v2")
    spaced = "userid=7," + " " * 29_000 + "meshgen-routing-key=" + " " * 29_000 + "pr1"
    assert served_by(mesh, traffic.Request(host=REVIEWS, headers={"baggage": spaced})) == "reviews-v1@pr-1"
    stripped = mesh.send(edge_request(baggage=spaced))
    assert stripped.status == 200 and stripped.body["served_by"] in ("reviews-v1", "reviews-v2")
    assert stripped.body["headers"]["baggage"] == "userid=7"

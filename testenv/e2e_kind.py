"""The in-cluster half of ``make e2e-kind`` (see testenv/e2e-kind.sh; UNVERIFIED: written where no Docker engine
runs, so it has never been run). Needs kubectl pointed at a cluster with Istio installed.

Usage: python testenv/e2e_kind.py golden/<case>
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from meshgen import golden, traffic
from meshgen.backends.localmesh import addresses, all_hosts
from meshgen.testenv import workloads

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "python:3.11-slim"
CLIENT = "meshgen-client"
SEND = """
import http.client, json, sys
r = json.loads(sys.argv[1])
c = http.client.HTTPConnection(r["host"], r["port"], timeout=30)
c.putrequest(r["method"], r["path"], skip_host=True, skip_accept_encoding=True)
c.putheader("host", r["host"])
for k, v in r["headers"]:
    c.putheader(k, v)
c.endheaders()
a = c.getresponse()
print(json.dumps({"status": a.status, "headers": a.getheaders(), "body": a.read().decode("utf-8", "replace")}))
"""


def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> str:
    result = subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        sys.exit(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def meshgen(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "meshgen", *args], check=True)


def main(case_dir: str) -> int:
    case = golden.Case(Path(case_dir).name, Path(case_dir))
    outcome = golden.compile_case(case)
    if outcome.plan is None or case.traffic is None:
        sys.exit(f"{case.name}: needs a case that compiles and has traffic.yaml")
    plan = outcome.plan
    topology_file = case.path / golden.TOPOLOGY
    topology = traffic.load_topology(topology_file if topology_file.exists() else None)
    layout = addresses(plan)
    hosts = all_hosts(plan)
    namespaces = sorted({w.namespace for w in layout.workloads})
    for ns in namespaces:
        kubectl("create", "namespace", ns, check=False)
        kubectl("label", "namespace", ns, "istio-injection=enabled", "--overwrite")
    kubectl("apply", "-R", "-f", str(case.path / golden.BASELINE))
    meshgen("install")
    policy = ["--policy", str(case.policy)] if case.policy else []
    meshgen("apply", "-f", str(case.path / golden.SANDBOXES), *policy)
    # The echo reaches a host by its own name: the pod's sidecar captures the call (iptables), as for any app.
    directory = Path(tempfile.mkdtemp(prefix="meshgen-e2e-")) / "directory.json"
    workloads.write_directory(directory, {fqdn: (fqdn, h.ports[0].port) for fqdn, h in hosts.items()}, plan, topology)
    for ns in namespaces:
        kubectl("-n", ns, "delete", "configmap", "meshgen-echo", check=False)
        kubectl("-n", ns, "create", "configmap", "meshgen-echo",
                f"--from-file=echo.py={ROOT / 'meshgen/testenv/echo.py'}", f"--from-file=directory.json={directory}")
    deployments = {f"{f.workload.name}@{f.sandbox}": f.name for f in plan.forks}
    for workload in layout.workloads:
        name = deployments.get(workload.identity, workload.identity)
        run_echo(workload.namespace, name, workload.identity, workload.services, _ports(plan, workload.services))
    for workload in layout.workloads:
        name = deployments.get(workload.identity, workload.identity)
        kubectl("-n", workload.namespace, "rollout", "status", f"deployment/{name}", "--timeout=300s")
    failed = 0
    for ns in namespaces:
        kubectl("-n", ns, "run", CLIENT, f"--image={IMAGE}", f"--labels=app={CLIENT}", "--command", "--",
                "sleep", "infinity", check=False)
        kubectl("-n", ns, "wait", f"pod/{CLIENT}", "--for=condition=Ready", "--timeout=300s")
    for check in traffic.load_checks(case.traffic):
        request = check.request
        host = hosts[request.host]
        body = {"host": request.host, "port": request.port or host.ports[0].port, "method": request.method,
                "path": request.path, "headers": request.header_lines()}
        raw = json.loads(kubectl("-n", host.namespace, "exec", CLIENT, "-c", CLIENT, "--", "python", "-c", SEND,
                                 json.dumps(body)))
        response = traffic.Response(raw["status"], tuple((k.lower(), v) for k, v in raw["headers"]), _body(raw))
        problems = traffic.mismatches(check.expect, response)
        failed += bool(problems)
        print(("PASS  " if not problems else "FAIL  ") + check.title())
        if problems:
            print(traffic.report(check, response, problems))
    print(f"{case.name}: {failed} failed")
    return 1 if failed else 0


def _body(raw: dict[str, Any]) -> Any:
    try:
        return json.loads(raw["body"])
    except ValueError:
        return raw["body"]


def _ports(plan: Any, services: tuple[str, ...]) -> list[int]:
    """The container ports a workload must answer on: each selecting Service port's targetPort (or port)."""
    out = set()
    for resource in plan.baseline.of_kind("Service"):
        fqdn = f"{resource.name}.{resource.namespace}.svc.{plan.policy.spec.cluster_domain}"
        if fqdn in services:
            out |= {int(p.get("targetPort", p["port"])) for p in resource.spec.get("ports") or []}
    return sorted(out)


def run_echo(namespace: str, deployment: str, identity: str, serves: tuple[str, ...], ports: list[int]) -> None:
    """Point a Deployment's pods at the echo workload, one process per container port."""
    echo = " ".join(f"python /echo/echo.py --identity {identity} --listen 0.0.0.0:{p} --serves {','.join(serves)} "
                    f"--directory /echo/directory.json &" for p in ports)
    script = f"pip install -q h2 >/dev/null 2>&1; {echo} wait"
    patch = {"spec": {"template": {"spec": {
        "containers": [{"name": "echo", "image": IMAGE, "command": ["sh", "-c", script],
                        "ports": [{"containerPort": p} for p in ports],
                        "volumeMounts": [{"name": "meshgen-echo", "mountPath": "/echo"}]}],
        "volumes": [{"name": "meshgen-echo", "configMap": {"name": "meshgen-echo"}}]}}}}
    current = json.loads(kubectl("-n", namespace, "get", "deployment", deployment, "-o", "json"))
    current["spec"]["template"]["spec"].update(patch["spec"]["template"]["spec"])
    current["metadata"].pop("resourceVersion", None)
    kubectl("-n", namespace, "replace", "-f", "-", stdin=json.dumps(current))
    time.sleep(0.1)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))

"""Echo workloads and requests into a local mesh, shared by both test meshes (plain Envoy and istiod).

A workload is one ``python -m meshgen.testenv.echo`` process (:mod:`meshgen.testenv.echo`). How it reaches the
services it calls is injected: its *directory* file maps each service host to the address and port where that host
is reached from the workload. In the plain-Envoy mesh every workload shares one directory (the shared Envoy's
listener per host); in the istiod mesh each workload has its own (its own sidecar's outbound listeners). The
echo never knows which.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from meshgen import traffic
from meshgen.backends.localmesh import Workload
from meshgen.baseline.model import SERVICE, Resource, service_fqdn
from meshgen.errors import InvalidInput, Problem
from meshgen.plan.model import Plan
from meshgen.testenv.processes import Process, wait_until

REQUEST_TIMEOUT = 30.0


def write_directory(path: Path, listeners: Mapping[str, tuple[str, int]], plan: Plan,
                    topology: traffic.Topology) -> None:
    """Write (atomically: workloads re-read it while running) a workload's directory: where each host is reached,
    which hosts call which, and the headers an instrumented application propagates."""
    body = {"listeners": {host: list(address) for host, address in listeners.items()},
            "calls": resolve_calls(plan, topology), "forward": forwarded_headers(plan),
            "opentelemetry": sorted(_hosts_named(plan, [n for n, p in topology.propagators.items()
                                                        if p == "opentelemetry"], "propagators"))}
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(body, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(temporary, path)


def start(workloads: Sequence[tuple[Workload, Path]], logs: Path) -> list[Process]:
    """Start an echo process per (workload, its directory file), then wait until every one has bound its socket.
    Returns the processes in the same order."""
    started = [_echo(workload, directory, logs).start() for workload, directory in workloads]
    for (workload, _), process in zip(workloads, started, strict=True):
        address = f"{workload.address}:{workload.port}"
        wait_until(_listening(process, address), f"workload {workload.identity} on {address}", [process])
    return started


def send(address: str, port: int, request: traffic.Request) -> traffic.Response:
    """Send ``request`` to a mesh listener at ``address:port`` with its host as ``Host``, the way a client inside
    the mesh would (from ``request.source`` when given), and read the answer (JSON when it is an echo's, else
    text)."""
    source = (request.source, 0) if request.source else None
    if request.protocol == "tcp":
        return send_line(address, port, request.sent_line(), source)
    conn = http.client.HTTPConnection(address, port, timeout=REQUEST_TIMEOUT, source_address=source)
    try:
        conn.putrequest(request.method, request.path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("host", request.host)
        for name, value in request.header_lines():
            conn.putheader(name, value)
        conn.endheaders()
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    try:
        body = json.loads(raw)
    except ValueError:
        body = raw.decode("utf-8", "replace")
    headers = tuple((k.lower(), v) for k, v in response.getheaders())
    return traffic.Response(response.status, headers, body)


def send_line(address: str, port: int, line: str, source: tuple[str, int] | None = None) -> traffic.Response:
    """A tcp request: connect, send ``line`` and a newline, read one line back. Status 200 with the answer (JSON
    when it is an echo's), or 0 when the connection closed (or reset) before a whole line came back."""
    received = b""
    try:
        with socket.create_connection((address, port), timeout=REQUEST_TIMEOUT, source_address=source) as conn:
            conn.sendall(line.encode() + b"\n")
            while not received.endswith(b"\n"):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                received += chunk
    except ConnectionError:
        pass
    text = received.decode("utf-8", "replace")
    if not text.endswith("\n"):
        return traffic.Response(0, (), text)
    try:
        return traffic.Response(200, (), json.loads(text))
    except ValueError:
        return traffic.Response(200, (), text)


def unknown_host(request: traffic.Request, hosts: Sequence[str]) -> InvalidInput:
    """The error for a request to a host the mesh does not have."""
    known = ", ".join(hosts) or "none: nothing applied yet"
    return InvalidInput([Problem(None, f"request host {request.host} is not a service host of the mesh",
                                 f"use a fully qualified service host; hosts: {known}")])


def resolve_calls(plan: Plan, topology: traffic.Topology) -> dict[str, list[str]]:
    """The topology by host: caller fqdn -> callee fqdns. Names are Service names (``name`` in the caller's
    namespace, or ``name.namespace``)."""
    domain = plan.policy.spec.cluster_domain
    services = plan.baseline.of_kind(SERVICE)
    known = {service_fqdn(s.namespace, s.name, domain) for s in services}
    calls: dict[str, list[str]] = {}
    problems = []
    for caller, callees in topology.calls.items():
        matched = _named(services, caller)
        if not matched:
            problems.append(Problem(None, f"topology: no Service named {caller!r} in the baseline"))
        for service in matched:
            targets = [_service_host(c, service.namespace, domain) for c in callees]
            problems.extend(Problem(None, f"topology: {caller} calls {c!r}, which is not a Service of the baseline")
                            for c, t in zip(callees, targets, strict=True) if t not in known)
            calls[service_fqdn(service.namespace, service.name, domain)] = targets
    if problems:
        raise InvalidInput(problems)
    return calls


def _named(services: Sequence[Resource], name: str) -> list[Resource]:
    """The Services a topology's name means: ``name`` (in any namespace) or ``name.namespace``."""
    return [s for s in services if name in (s.name, f"{s.name}.{s.namespace}")]


def _hosts_named(plan: Plan, names: Sequence[str], what: str) -> list[str]:
    """The hosts of the Services a topology names (``name``, or ``name.namespace``), for ``what``."""
    domain = plan.policy.spec.cluster_domain
    services = plan.baseline.of_kind(SERVICE)
    hosts, problems = [], []
    for name in names:
        matched = _named(services, name)
        if not matched:
            problems.append(Problem(None, f"topology: {what}: no Service named {name!r} in the baseline"))
        hosts += [service_fqdn(s.namespace, s.name, domain) for s in matched]
    if problems:
        raise InvalidInput(problems)
    return hosts


def _service_host(name: str, namespace: str, domain: str) -> str:
    """A topology's Service name (``name`` in ``namespace``, or ``name.namespace``) as its host."""
    service, _, other = name.partition(".")
    return service_fqdn(other or namespace, service, domain) if "." not in other else name


def forwarded_headers(plan: Plan) -> tuple[str, ...]:
    """What an instrumented application propagates: baggage, tracestate, the routing header and any plain
    header the policy reads the key from."""
    spec = plan.policy.spec
    headers = ["baggage", "tracestate", spec.routing_header]
    headers += [s.key for s in spec.propagation if s.kind == "header" and s.key not in headers]
    return tuple(headers)


def _echo(workload: Workload, directory: Path, logs: Path) -> Process:
    log = logs / f"{workload.namespace}_{workload.identity.replace('@', '_')}.log"
    log.unlink(missing_ok=True)  # readiness reads this log: no line from an earlier run may count
    return Process(f"workload {workload.identity}", [
        sys.executable, "-m", "meshgen.testenv.echo", "--identity", workload.identity,
        "--listen", f"{workload.address}:{workload.port}", "--serves", ",".join(workload.services),
        "--directory", str(directory),
    ], log, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _listening(process: Process, address: str) -> Callable[[], bool]:
    """Ready when the workload logs that it bound its socket. (Connecting is no proof: another process holding
    the address would accept too, while the workload itself fails to bind.)"""
    line = f"listening on {address}"

    def check() -> bool:
        try:
            return line in process.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return False

    return check

"""A running local mesh: one Envoy (the Envoy backend's configuration) and one echo process per workload.

:meth:`RunningMesh.apply` takes a Plan to the running mesh: it starts the echo processes of new workloads, updates
Envoy make-before-break, and only then stops workloads nothing routes to, so a changed plan drops no request.
Workloads that stay (same identity, address and role) keep running across applies, which is what keeps a test
session that applies many golden cases fast.

Everything runs on a loopback network ``127.<network>.0.0/16`` picked at random per mesh (unless given), so two
meshes on one machine (two test runs, a test run and a demo) do not collide.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from meshgen import traffic
from meshgen.backends import envoy as envoy_backend
from meshgen.backends.localmesh import Addresses, LocalMesh, Workload
from meshgen.baseline.model import SERVICE, resolve_host
from meshgen.errors import InvalidInput, Problem
from meshgen.plan.model import Plan
from meshgen.testenv.envoy import Envoy
from meshgen.testenv.processes import Process, stop_all, wait_until

DIRECTORY_FILE = "directory.json"
REQUEST_TIMEOUT = 30.0


@dataclass(frozen=True)
class _EchoKey:
    identity: str
    address: str
    port: int
    serves: tuple[str, ...]


class RunningMesh:
    """Envoy plus echo workloads for whatever plan was applied last. Use as a context manager."""

    def __init__(self, workdir: Path | None = None, network: int | None = None,
                 progress: Callable[[str], None] | None = None) -> None:
        self._owns_workdir = workdir is None
        self.workdir = workdir if workdir is not None else Path(tempfile.mkdtemp(prefix="meshgen-mesh-"))
        # From the OS, not the seeded module generator: two meshes on one machine must not pick the same network.
        self.network = network if network is not None else random.SystemRandom().randrange(100, 250)
        self.progress = progress or (lambda line: None)
        self.envoy = Envoy(self.workdir / "envoy")
        self.echoes: dict[_EchoKey, Process] = {}
        self.addresses: Addresses | None = None
        self.config: envoy_backend.EnvoyConfig | None = None

    def __enter__(self) -> RunningMesh:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close(keep_logs=exc is not None)

    def start(self) -> None:
        """Start Envoy, empty."""
        self.progress(f"starting envoy (admin on a free port, loopback network 127.{self.network}.0.0/16)")
        self.envoy.start()

    def apply(self, plan: Plan, topology: traffic.Topology | None = None) -> envoy_backend.EnvoyConfig:
        """Make the mesh run ``plan``; ``topology`` says which services call which."""
        mesh = LocalMesh(network=self.network, config_dir=str(self.envoy.config_dir))
        config = envoy_backend.build(plan, mesh)
        laid_out = config.addresses
        self._write_directory(plan, laid_out, topology or traffic.Topology())
        wanted = {_EchoKey(w.identity, w.address, w.port, w.services): w for w in laid_out.workloads}
        new = [key for key in wanted if key not in self.echoes]
        # A workload that changed but keeps its address must stop before its successor can bind.
        taken = {(key.address, key.port) for key in new}
        stop_all([self.echoes.pop(key) for key in list(self.echoes) if (key.address, key.port) in taken])
        if new:
            self.progress(f"starting {len(new)} workload(s): {', '.join(k.identity for k in new)}")
        for key in new:
            self.echoes[key] = self._echo(wanted[key]).start()
        for key in new:
            wait_until(_listening(self.echoes[key], f"{key.address}:{key.port}"),
                       f"workload {key.identity} on {key.address}:{key.port}", [self.echoes[key]])
        self.progress(f"envoy: applying {len(config.listeners)} listener(s), {len(config.clusters)} cluster(s), "
                      f"{len(config.route_configs)} route table(s)")
        self.envoy.apply(config)
        stale = [key for key in self.echoes if key not in wanted]
        stop_all([self.echoes.pop(key) for key in stale])
        self.addresses, self.config = laid_out, config
        return config

    def send(self, request: traffic.Request) -> traffic.Response:
        """Send ``request`` to the mesh listener of its host, the way a client inside the mesh would (or, with
        ``via: edge``, to the edge listener, from ``request.source`` if given)."""
        if self.addresses is None or request.host not in self.addresses.hosts:
            known = ", ".join(self.addresses.hosts) if self.addresses else "none: nothing applied yet"
            raise InvalidInput([Problem(None, f"request host {request.host} is not a service host of the mesh",
                                        f"use a fully qualified service host; hosts: {known}")])
        if request.via == "edge":
            address, port = self.addresses.edge_listener(request.host, request.port)
        else:
            address, port = self.addresses.listener(request.host, request.port)
        source = (request.source, 0) if request.source else None
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

    def processes(self) -> list[Process]:
        """Every process of the mesh (Envoy first)."""
        return [p for p in [self.envoy.process, *self.echoes.values()] if p is not None]

    def close(self, keep_logs: bool = False) -> None:
        """Stop every process; remove the working directory if this mesh created it, unless ``keep_logs`` (a
        failure: the error names log files there)."""
        stop_all(self.processes())
        self.echoes.clear()
        if self._owns_workdir and not keep_logs:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _echo(self, workload: Workload) -> Process:
        log = self.workdir / "logs" / f"{workload.namespace}_{workload.identity.replace('@', '_')}.log"
        log.unlink(missing_ok=True)  # readiness reads this log: no line from an earlier run may count
        return Process(f"workload {workload.identity}", [
            sys.executable, "-m", "meshgen.testenv.echo", "--identity", workload.identity,
            "--listen", f"{workload.address}:{workload.port}", "--serves", ",".join(workload.services),
            "--directory", str(self.workdir / DIRECTORY_FILE),
        ], log, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def _write_directory(self, plan: Plan, laid_out: Addresses, topology: traffic.Topology) -> None:
        listeners = {fqdn: list(laid_out.listener(fqdn)) for fqdn in laid_out.hosts}
        body = {"listeners": listeners, "calls": resolve_calls(plan, topology), "forward": _forwarded_headers(plan)}
        path = self.workdir / DIRECTORY_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(body, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(temporary, path)


def resolve_calls(plan: Plan, topology: traffic.Topology) -> dict[str, list[str]]:
    """The topology by host: caller fqdn -> callee fqdns. Names are Service names (``name`` in the caller's
    namespace, or ``name.namespace``)."""
    domain = plan.policy.spec.cluster_domain
    services = plan.baseline.of_kind(SERVICE)
    known = {resolve_host(s.name, s.namespace, domain) for s in services}
    calls: dict[str, list[str]] = {}
    problems = []
    for caller, callees in topology.calls.items():
        matched = [s for s in services if caller in (s.name, f"{s.name}.{s.namespace}")]
        if not matched:
            problems.append(Problem(None, f"topology: no Service named {caller!r} in the baseline"))
        for service in matched:
            targets = [resolve_host(c, service.namespace, domain) for c in callees]
            problems.extend(Problem(None, f"topology: {caller} calls {c!r}, which is not a Service of the baseline")
                            for c, t in zip(callees, targets, strict=True) if t not in known)
            calls[resolve_host(service.name, service.namespace, domain)] = targets
    if problems:
        raise InvalidInput(problems)
    return calls


def _forwarded_headers(plan: Plan) -> tuple[str, ...]:
    """What an instrumented application propagates: baggage, tracestate, the routing header and any plain
    header the policy reads the key from."""
    spec = plan.policy.spec
    headers = ["baggage", "tracestate", spec.routing_header]
    headers += [s.key for s in spec.propagation if s.kind == "header" and s.key not in headers]
    return tuple(headers)


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

"""A running local mesh: one Envoy (the Envoy backend's configuration) and one echo process per workload.

:meth:`RunningMesh.apply` takes a Plan to the running mesh: it starts the echo processes of new workloads, updates
Envoy make-before-break, and only then stops workloads nothing routes to, so a changed plan drops no request.
Workloads that stay (same identity, address and role) keep running across applies, which is what keeps a test
session that applies many golden cases fast.

Everything runs on a loopback network ``127.<network>.0.0/16`` leased per mesh (:mod:`meshgen.testenv.networks`),
so two meshes on one machine (two test runs, a test run and a demo) never collide.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from meshgen import traffic
from meshgen.backends import envoy as envoy_backend
from meshgen.backends.localmesh import Addresses, LocalMesh
from meshgen.documents import JsonObject
from meshgen.plan.model import Plan
from meshgen.testenv import networks, workloads
from meshgen.testenv.envoy import Envoy
from meshgen.testenv.processes import Process, stop_all

DIRECTORY_FILE = "directory.json"


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
        # Leased machine-wide: two meshes on one machine must never share a network.
        self._lease = networks.lease(network)
        self.network = self._lease.network
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

    def apply(self, plan: Plan, topology: traffic.Topology | None = None,
              specs: Sequence[JsonObject] = ()) -> envoy_backend.EnvoyConfig:
        """Make the mesh run ``plan``; ``topology`` says which services call which. (``specs``, the documents the
        plan was compiled from, are not needed: this mesh takes the plan itself.)"""
        mesh = LocalMesh(network=self.network, config_dir=str(self.envoy.config_dir))
        config = envoy_backend.build(plan, mesh)
        laid_out = config.addresses
        listeners = {fqdn: laid_out.listener(fqdn) for fqdn in laid_out.hosts}
        workloads.write_directory(self.workdir / DIRECTORY_FILE, listeners, plan, topology or traffic.Topology())
        wanted = {_EchoKey(w.identity, w.address, w.port, w.services): w for w in laid_out.workloads}
        new = [key for key in wanted if key not in self.echoes]
        # A workload that changed but keeps its address must stop before its successor can bind.
        taken = {(key.address, key.port) for key in new}
        stop_all([self.echoes.pop(key) for key in list(self.echoes) if (key.address, key.port) in taken])
        if new:
            self.progress(f"starting {len(new)} workload(s): {', '.join(k.identity for k in new)}")
        started = workloads.start([(wanted[key], self.workdir / DIRECTORY_FILE) for key in new], self.workdir / "logs")
        self.echoes.update(zip(new, started, strict=True))
        self.progress(f"envoy: applying {len(config.listeners)} listener(s), {len(config.clusters)} cluster(s), "
                      f"{len(config.route_configs)} route table(s)")
        self.envoy.apply(config)
        stale = [key for key in self.echoes if key not in wanted]
        stop_all([self.echoes.pop(key) for key in stale])
        self.addresses, self.config = laid_out, config
        return config

    def send(self, request: traffic.Request) -> traffic.Response:
        """Send ``request`` to the mesh listener of its host from the test client of the host's namespace, the way
        a client inside the mesh would, or, with ``via: edge``, to the edge gateway (which routes any Host its
        VirtualServices name); from ``request.source`` if given."""
        if self.addresses is not None and request.via == "edge":
            return workloads.send(*self.addresses.edge_listener(), request)
        if self.addresses is None or request.host not in self.addresses.hosts:
            raise workloads.unknown_host(request, list(self.addresses.hosts) if self.addresses else [])
        if request.source is None:  # from the test client of the host's namespace, as in the istiod mesh
            client = self.addresses.clients[self.addresses.hosts[request.host].namespace]
            request = request.model_copy(update={"source": client})
        return workloads.send(*self.addresses.listener(request.host, request.port), request)

    def processes(self) -> list[Process]:
        """Every process of the mesh (Envoy first)."""
        return [p for p in [self.envoy.process, *self.echoes.values()] if p is not None]

    def close(self, keep_logs: bool = False) -> None:
        """Stop every process; remove the working directory if this mesh created it, unless ``keep_logs`` (a
        failure: the error names log files there)."""
        try:
            stop_all(self.processes())
            self.echoes.clear()
            if self._owns_workdir and not keep_logs:
                shutil.rmtree(self.workdir, ignore_errors=True)
        finally:
            self._lease.release()

"""Which local mesh a command's traffic goes through: ``envoy`` (the Envoy backend's configuration in one Envoy)
or ``istio`` (real istiod configuring an Envoy sidecar per workload, on a local kube-apiserver)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from meshgen.testenv import istiomesh
from meshgen.testenv.mesh import RunningMesh

VIAS = ("envoy", "istio")


@contextlib.contextmanager
def running(via: str, progress: Callable[[str], None] | None = None) -> Iterator[RunningMesh | istiomesh.IstioMesh]:
    """Start the mesh named ``via``, yield it, stop everything."""
    if via == "istio":
        with istiomesh.running(progress=progress) as mesh:
            yield mesh
        return
    with RunningMesh(progress=progress) as envoy_mesh:
        yield envoy_mesh

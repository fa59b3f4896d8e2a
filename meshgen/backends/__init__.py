"""Backends: Plan -> resources for one mesh. One module or package per backend, one entry in :data:`BACKENDS`;
what a backend is to the rest of meshgen: :mod:`meshgen.backends.backend`."""

from __future__ import annotations

from meshgen.apis import Kind
from meshgen.backends import envoy, gateway_api, istio
from meshgen.backends.backend import Backend, Rendering
from meshgen.documents import JsonObject

__all__ = ["BACKENDS", "CLUSTER_BACKENDS", "Backend", "Rendering", "of", "render", "rendered_kinds", "rendering"]
from meshgen.plan.model import Plan
from meshgen.spec.models import MeshPolicy

BACKENDS: dict[str, Backend] = {b.name: b for b in (envoy.BACKEND, gateway_api.BACKEND, istio.BACKEND)}
# The backends a cluster's MeshPolicy can name (``spec.backend``): those that render objects for a cluster.
CLUSTER_BACKENDS = tuple(name for name, b in BACKENDS.items() if b.cluster)


def of(policy: MeshPolicy) -> Backend:
    """The backend a policy names (``spec.backend``): what a cluster is written with."""
    return BACKENDS[policy.spec.backend.value]


def rendering(plan: Plan, backend: str | None = None) -> Rendering:
    """Render ``plan`` with the named backend (by default the one its policy names), with its warnings."""
    return (BACKENDS[backend] if backend is not None else of(plan.policy)).render(plan)


def render(plan: Plan, backend: str | None = None) -> list[JsonObject]:
    """Render ``plan`` with the named backend (by default the one its policy names)."""
    return rendering(plan, backend).objects


def rendered_kinds() -> tuple[Kind, ...]:
    """Every kind some backend writes or edits, each once: what meshgen may create, change or delete anywhere."""
    return tuple(dict.fromkeys(k for b in BACKENDS.values() if b.cluster for k in b.kinds))

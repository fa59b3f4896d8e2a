"""Backends: Plan -> resources for one mesh. One module per mesh, one entry in :data:`BACKENDS`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from meshgen.backends import envoy, istio
from meshgen.documents import JsonObject
from meshgen.plan.model import Diagnostic, Plan


@dataclass(frozen=True)
class Rendering:
    """A backend's objects for a plan, and what it warns about (a field it accepts without translating it)."""

    objects: list[JsonObject]
    warnings: tuple[Diagnostic, ...] = ()


def _envoy(plan: Plan) -> Rendering:
    config = envoy.build(plan)
    return Rendering(config.resources(), config.warnings)


def _istio(plan: Plan) -> Rendering:
    return Rendering(istio.render(plan))


Backend = Callable[[Plan], Rendering]

BACKENDS: dict[str, Backend] = {"envoy": _envoy, "istio": _istio}


def rendering(plan: Plan, backend: str = "istio") -> Rendering:
    """Render ``plan`` with the named backend, with its warnings."""
    return BACKENDS[backend](plan)


def render(plan: Plan, backend: str = "istio") -> list[JsonObject]:
    """Render ``plan`` with the named backend."""
    return rendering(plan, backend).objects

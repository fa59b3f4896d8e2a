"""Backends: Plan -> resources for one mesh. One module per mesh, one entry in :data:`BACKENDS`."""

from __future__ import annotations

from collections.abc import Callable

from meshgen.backends import envoy, istio
from meshgen.documents import JsonObject
from meshgen.plan.model import Plan

Backend = Callable[[Plan], list[JsonObject]]

BACKENDS: dict[str, Backend] = {"envoy": envoy.render, "istio": istio.render}


def render(plan: Plan, backend: str = "istio") -> list[JsonObject]:
    """Render ``plan`` with the named backend."""
    return BACKENDS[backend](plan)

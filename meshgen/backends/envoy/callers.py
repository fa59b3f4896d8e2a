"""Caller views: routes that depend on who calls (``sourceLabels``, ``sourceNamespace``), in one shared Envoy.

istiod evaluates a match block's ``sourceLabels`` and ``sourceNamespace`` when it builds one proxy's routes: a
sidecar whose pod lacks the labels (or lives in another namespace) never has the route. The Envoy backend's one
Envoy stands for every sidecar, so it tells callers apart by the address their connections come from (each
workload calls from its own loopback address, each namespace's test client from its own, see
:mod:`meshgen.backends.localmesh`):

- callers are grouped by which source conditions of the baseline's routes they satisfy; a group satisfying none
  sees the default route configurations (``<port>``), as any unknown caller does;
- every other group is a *view*: its own route configuration per port (``<port>~<view>``, the routes translated
  for one of its callers), and in every HTTP listener a filter chain matching its callers' addresses
  (``source_prefix_ranges``) ahead of the default chain.

Without any source condition in the baseline (or in a caller copy the planner adds for a fork: both from
:meth:`meshgen.plan.serving.Serving.source_conditions`) there are no views, and nothing changes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from meshgen.backends.localmesh import Addresses, Caller
from meshgen.documents import JsonObject
from meshgen.plan.serving import Condition, Serving


@dataclass(frozen=True)
class View:
    """A group of callers that see the same routes: its name, one caller to translate for, and all addresses."""

    name: str
    caller: Caller | None
    addresses: tuple[str, ...] = ()

    def route_config(self, port: int) -> str:
        """The name of this view's route configuration for ``port``."""
        return f"{port}~{self.name}" if self.name else str(port)

    def chain_match(self) -> JsonObject:
        """The filter chain match that picks this view's chain: its callers' addresses (none: the default)."""
        if not self.addresses:
            return {}
        return {"source_prefix_ranges": [{"address_prefix": a, "prefix_len": 32} for a in self.addresses]}


DEFAULT_VIEW = View("", None)


def _satisfies(caller: Caller, condition: Condition) -> bool:
    labels, namespace = condition
    return all(caller.labels.get(k) == v for k, v in labels) and namespace in ("", caller.namespace)


def views(serving: Serving, laid_out: Addresses) -> tuple[View, ...]:
    """The views of the plan's callers other than the default one, sorted by name."""
    conditions = serving.source_conditions()
    if not conditions:
        return ()
    groups: dict[tuple[Condition, ...], list[Caller]] = {}
    for caller in laid_out.callers():
        satisfied = tuple(c for c in conditions if _satisfies(caller, c))
        if satisfied:
            groups.setdefault(satisfied, []).append(caller)
    out = []
    for satisfied, members in groups.items():
        name = hashlib.sha256(json.dumps(satisfied).encode()).hexdigest()[:10]
        out.append(View(name, members[0], tuple(sorted(m.address for m in members))))
    return tuple(sorted(out, key=lambda v: v.name))

"""Make-before-break: the order in which changes are written, from a small table of rules (kapp's diffgraph idea).

A rule ``(later, earlier)`` says every change matching ``later`` waits for every change matching ``earlier``. A
matcher is ``(operation, kind)``; the operation is "upsert" (create or update) or "delete". From the rules:

- a fork's policies (copies of the label-keyed policies that govern the original) exist before its pods;
- a fork's workload, Service and DestinationRule, and the routing-key filter, exist before any VirtualService
  route that sends traffic to them;
- VirtualService routes are removed before what they pointed to is deleted, and a fork's policies after its pods.

The rules are checked for cycles (:func:`ranks` raises ``graphlib.CycleError``); within one rank, changes are
ordered by kind, namespace and name, so the order is deterministic.
"""

from __future__ import annotations

import graphlib
from collections.abc import Iterable, Mapping

from meshgen.kube.diffing import Action, Change

UPSERT = "upsert"
DELETE = "delete"
Matcher = tuple[str, str]  # (operation, kind)

_WORKLOADS = ("Deployment", "StatefulSet")
_POLICIES = ("AuthorizationPolicy", "PeerAuthentication", "RequestAuthentication", "NetworkPolicy")
_BACKENDS = (*_WORKLOADS, "Service", "DestinationRule", "EnvoyFilter", *_POLICIES)
RULES: tuple[tuple[Matcher, Matcher], ...] = (
    # upsert routes after upserting what they route to
    *(((UPSERT, "VirtualService"), (UPSERT, kind)) for kind in _BACKENDS),
    # a fork's policies before its pods; its pods before the Service that selects them, both before its
    # DestinationRule
    *(((UPSERT, w), (UPSERT, p)) for w in _WORKLOADS for p in _POLICIES),
    *(((UPSERT, "Service"), (UPSERT, w)) for w in _WORKLOADS),
    ((UPSERT, "DestinationRule"), (UPSERT, "Service")),
    # remove routes before deleting what they routed to; deletions happen after every upsert
    ((DELETE, "VirtualService"), (UPSERT, "VirtualService")),
    *(((DELETE, kind), (DELETE, "VirtualService")) for kind in _BACKENDS),
    *(((DELETE, w), (DELETE, "Service")) for w in _WORKLOADS),
    ((DELETE, "Service"), (DELETE, "DestinationRule")),
    *(((DELETE, p), (DELETE, w)) for w in _WORKLOADS for p in _POLICIES),
)


def matcher(change: Change) -> Matcher:
    return (DELETE if change.action is Action.DELETE else UPSERT, change.ref.kind)


def ranks(rules: Iterable[tuple[Matcher, Matcher]] = RULES) -> Mapping[Matcher, int]:
    """Each matcher's rank: its position in a topological order of the rules (cycles raise CycleError)."""
    graph: dict[Matcher, set[Matcher]] = {}
    for later, earlier in rules:
        graph.setdefault(later, set()).add(earlier)
        graph.setdefault(earlier, set())
    sorter = graphlib.TopologicalSorter(graph)
    sorter.prepare()
    order: dict[Matcher, int] = {}
    rank = 0
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        for node in ready:
            order[node] = rank
        sorter.done(*ready)
        rank += 1
    return order


_RANKS = ranks()


def ordered(changes: Iterable[Change]) -> list[Change]:
    """Changes in make-before-break order."""
    last = max(_RANKS.values()) + 1
    return sorted(changes, key=lambda c: (_RANKS.get(matcher(c), last), c.ref))

"""Make-before-break: the order in which changes are written, from a small table of rules (kapp's diffgraph idea).

A rule ``(later, earlier)`` says every change matching ``later`` waits for every change matching ``earlier``. A
matcher is ``(operation, kind)``; the operation is "upsert" (create or update) or "delete". The rules are the
backend's (:func:`meshgen.backends.backend.make_before_break`):

- a fork's policies (copies of the label-keyed policies that govern the original) exist before its pods;
- a fork's workload, Service and DestinationRule, and the routing-key filter, exist before any route (a
  VirtualService's, an HTTPRoute's) that sends traffic to them;
- routes are removed before what they pointed to is deleted, and a fork's policies after its pods.

The rules are checked for cycles (:func:`ranks` raises ``graphlib.CycleError``); within one rank, the objects of
the command's own sandboxes come first, then by kind, namespace and name, so the order is deterministic. Own
first: with many appliers on one host, each makes its own fork before anyone else's (which it makes too, should
that applier stop), so they seldom race to create the same object.
"""

from __future__ import annotations

import functools
import graphlib
from collections.abc import Collection, Iterable, Mapping

from meshgen.backends.backend import DELETE, UPSERT, Matcher, Rule
from meshgen.kube.diffing import Action, Change


def matcher(change: Change) -> Matcher:
    return (DELETE if change.action is Action.DELETE else UPSERT, change.ref.kind)


def ranks(rules: Iterable[Rule]) -> Mapping[Matcher, int]:
    """Each matcher's rank: its position in a topological order of the rules (cycles raise CycleError)."""
    return _ranks(tuple(rules))


@functools.cache
def _ranks(rules: tuple[Rule, ...]) -> Mapping[Matcher, int]:
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


def ordered(changes: Iterable[Change], rules: Iterable[Rule], own: Collection[str] = ()) -> list[Change]:
    """Changes in make-before-break order (the backend's ``rules``); within a rank, the objects of the sandboxes
    in ``own`` first."""
    found = ranks(rules)
    last = max(found.values(), default=0) + 1
    return sorted(changes, key=lambda c: (found.get(matcher(c), last), c.sandbox not in own, c.ref))

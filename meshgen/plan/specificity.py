"""Which Gateway API route wins: the most specific match, then the order written (istiod's ``sortHTTPRoutes``).

The Gateway API does not evaluate rules in the order written. istiod splits every rule into one route per match,
concatenates the routes of all HTTPRoutes and GRPCRoutes of one namespace attached to one Service (oldest object
first, then by namespace and name), and sorts them, stably, by:

1. the path match: exact before prefix before regex (none: last), then the longer value first;
2. a method match before none;
3. more header matches first;
4. more query parameter matches first.

A route with no match at all (a GRPCRoute rule without matches) sorts last.

For meshgen this means a sandbox copy, which is its rule with one more header match (the routing key), always
beats the rule it copies and never a rule that already beat that one, except where the copy *ties* with another
rule (the same path, method, header and query counts): then the order written decides. :func:`anchor` places each
copy directly before the rule it copies, unless a rule written after that one ties with the copy; then after the
last such rule, so every baseline rule that won before still wins (DESIGN invariant 3).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from meshgen.plan.routing import Match, MatchKind, Route

_RANK = {MatchKind.EXACT: 3, MatchKind.PREFIX: 2, MatchKind.SEGMENT_PREFIX: 2, MatchKind.REGEX: 1}

Key = tuple[int, int, int, bool, int, int]


def key(match: Match | None, extra_headers: int = 0) -> Key:
    """How specific one match is (larger is more specific); ``extra_headers``: header matches a copy adds."""
    if match is None:
        return (0, 0, 0, False, 0, 0)
    rank = _RANK[match.path.kind] if match.path is not None else -1
    length = len(match.path.value) if match.path is not None else 0
    return (1, rank, length, match.method is not None, len(match.headers) + extra_headers, len(match.query))


def anchor(routes: Sequence[Route], index: int) -> int:
    """Where the sandbox copies of ``routes[index]`` go in the object's route list: before the route at the
    returned position (``len(routes)``: at the end)."""
    copied = {key(m, 1) for m in routes[index].blocks}  # a copy of a rule without matches gets one
    tying = [j for j in range(index + 1, len(routes)) if {key(m) for m in routes[j].matches} & copied]
    return tying[-1] + 1 if tying else index


def split(route: Route) -> list[Route]:
    """A route as istiod sorts it: one route per match."""
    if len(route.matches) <= 1:
        return [route]
    return [dataclasses.replace(route, matches=(m,)) for m in route.matches]


def ordered(entries: Sequence[tuple[Route, int]]) -> list[Route]:
    """Routes (each with the header matches it has beyond its neutral form: 1 for a sandbox copy, whose key match
    a backend adds) in the order istiod evaluates them."""
    split_entries = [(r, extra) for route, extra in entries for r in split(route)]
    ranked = sorted(split_entries, key=lambda e: key(e[0].matches[0] if e[0].matches else None, e[1]), reverse=True)
    # sorted() is stable only ascending; reverse=True keeps equal keys in their original order as well.
    return [r for r, _ in ranked]

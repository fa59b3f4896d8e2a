"""How much one Gateway API route may hold: at most 16 rules and 128 matches, and 16 header matches in one match
(the HTTPRoute and GRPCRoute CRDs' validation: the API server refuses a route past them).

Sandbox copies add rules (one per copied rule and routing key), and matches (where the target has no normaliser,
one per key condition: :func:`meshgen.plan.targets.key_matches`). Where a route would go past a limit, the most
junior owners yield (their routes are withheld, and a cluster's plan leaves them out: DESIGN invariant 8), so the
route every other sandbox needs is still written.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import Any

from meshgen.errors import Location, Problem
from meshgen.plan import targets
from meshgen.plan.model import Owner, RouteRole, RouteTable
from meshgen.plan.routing import Semantics
from meshgen.spec.models import MeshPolicy

MAX_RULES = 16
MAX_MATCHES = 128
MAX_HEADERS = 16


def size(table: RouteTable, conditions: int, kept: Collection[str]) -> tuple[int, int, int]:
    """Rules, matches, and the most header matches in one match, of ``table`` with only the sandbox routes of
    the routing keys in ``kept``."""
    rules = [r for r in table.routes if r.role is not RouteRole.SANDBOX
             or (r.owner is not None and r.owner.routing_key in kept)]
    matches = sum(len(table.baseline[r.baseline_index].blocks) * (conditions if r.role is RouteRole.SANDBOX else 1)
                  for r in rules)
    headers = max((len(m.headers) + 1 for r in rules if r.role is RouteRole.SANDBOX
                   for m in table.baseline[r.baseline_index].blocks), default=0)
    return len(rules), matches, headers


def _over(found: tuple[int, int, int]) -> bool:
    rules, matches, headers = found
    return rules > MAX_RULES or matches > MAX_MATCHES or headers > MAX_HEADERS


def check(tables: Iterable[RouteTable], policy: MeshPolicy, seniority: Callable[[tuple[str, str]], Any],
          where: Callable[[str, str], Location]) -> list[Problem]:
    """A problem for each owner that must yield for a route to stay within the limits, most junior first."""
    problems = []
    conditions = len(targets.key_matches(policy, policy.spec.routing_header, "key"))
    for table in tables:
        if table.semantics is not Semantics.SPECIFICITY:
            continue
        owners: list[Owner] = sorted(table.owners(), key=lambda o: seniority((o.kind.value, o.name)))
        kept = [o.routing_key for o in owners]
        while kept and _over(size(table, conditions, kept)):
            junior = owners[len(kept) - 1]
            rules, matches, headers = size(table, conditions, kept)
            problems.append(Problem(
                where(junior.kind.value, junior.name).at("spec"),
                f"{table.kind} {table.namespace}/{table.name} would hold {rules} rules and {matches} matches (up to "
                f"{headers} header matches in one) with the sandbox routes of {junior.kind.value} {junior.name}; "
                f"the Gateway API allows at most {MAX_RULES} rules and {MAX_MATCHES} matches in one route and "
                f"{MAX_HEADERS} header matches in one match, so the API server would refuse it",
                "delete a sandbox on this host (meshgen delete NAME), or split the route into several routes for "
                "the same Service"))
            kept.pop()
    return problems

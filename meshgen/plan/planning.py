"""specs + baseline + policy -> Plan. Pure: no I/O, nothing global; every problem is collected and raised at once.

On a cluster the specs are many tenants' (DESIGN invariant 8): a stored sandbox that no longer compiles (its
workload deleted, a guardrail tightened, a key taken by an older sandbox) must not fail everyone else's apply.
:func:`isolating_plan` blames every problem on the sandbox or route group it belongs to (by where it was found),
leaves the blamed ones out and plans the rest again; only problems of owners it may not leave out (the specs being
applied now) or of no owner at all (the baseline, the policy) are raised. Who yields is decided by seniority, a
function of what is stored, so every applier looking at the same cluster leaves out the same owners.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from meshgen.baseline.model import (
    DESTINATION_RULE,
    SERVICE,
    Baseline,
    ObjectKey,
    selects,
)
from meshgen.errors import InvalidInput, Location, Problem, raise_if_any
from meshgen.plan import forks as forking
from meshgen.plan import guardrails, reach, route_limits, targets
from meshgen.plan.model import (
    Claim,
    Diagnostic,
    Edge,
    Exclusion,
    ExclusionReason,
    Fork,
    Owner,
    OwnerKind,
    Plan,
    RouteTable,
)
from meshgen.plan.routes import plan_tables
from meshgen.plan.sources import Sources
from meshgen.plan.traffic_policy import HostPolicies
from meshgen.spec.loading import Specs
from meshgen.spec.models import MeshPolicy

Where = Callable[[str, str], Location]
OwnerId = tuple[str, str]  # (kind, name) of a sandbox or route group
# Lower sorts first = more senior. Default: sandboxes, then route groups, each by name.
Seniority = Callable[[OwnerId], Any]


def by_name(owner: OwnerId) -> tuple[int, str]:
    """The default seniority: sandboxes before route groups, then by name (what an offline compile uses)."""
    return (0 if owner[0] == OwnerKind.SANDBOX.value else 1, owner[1])


def build_plan(specs: Specs, baseline: Baseline, policy: MeshPolicy) -> Plan:
    """Compile sandboxes and route groups over a baseline into a Plan, or raise :class:`InvalidInput`."""
    plan, problems, _ = _attempt(specs, baseline, policy, by_name)
    raise_if_any(problems)
    assert plan is not None
    return plan


def isolating_plan(specs: Specs, baseline: Baseline, policy: MeshPolicy, tolerated: Collection[OwnerId],
                   seniority: Seniority = by_name) -> Plan:
    """Plan ``specs``, leaving out every owner in ``tolerated`` that has a problem (recorded in
    ``Plan.excluded``), until the rest plans cleanly. Raises :class:`InvalidInput` with the problems of owners
    not tolerated, and with problems that belong to no owner."""
    excluded: dict[OwnerId, list[Problem]] = {}
    while True:
        kept = _without(specs, excluded)
        plan, problems, claims = _attempt(kept, baseline, policy, seniority)
        if not problems:
            assert plan is not None
            return dataclasses.replace(plan, excluded=tuple(
                Exclusion(OwnerKind(kind), name, _reason(found), tuple(found))
                for (kind, name), found in sorted(excluded.items())))
        fatal: list[Problem] = []
        blamed: dict[OwnerId, list[Problem]] = {}
        documents = {(o.source, o.document): owner for owner, o in kept.origins.items() if owner[0] != "MeshPolicy"}
        for problem in problems:
            owners = _blame(problem, documents, baseline, claims, policy.spec.cluster_domain)
            if not owners or not owners <= set(tolerated):
                fatal.append(problem)
            else:
                for owner in owners:
                    blamed.setdefault(owner, []).append(problem)
        raise_if_any(fatal)
        for owner, found in blamed.items():
            excluded.setdefault(owner, []).extend(found)


def _reason(problems: Iterable[Problem]) -> ExclusionReason:
    if any(p.message.startswith(guardrails.PREFIX) for p in problems):
        return ExclusionReason.GUARDRAIL_VIOLATED
    return ExclusionReason.COMPILE_FAILED


def _without(specs: Specs, excluded: Collection[OwnerId]) -> Specs:
    if not excluded:
        return specs
    return Specs(tuple(s for s in specs.sandboxes if ("Sandbox", s.name) not in excluded),
                 tuple(g for g in specs.route_groups if ("RouteGroup", g.name) not in excluded),
                 specs.policies, specs.origins)


def _blame(problem: Problem, documents: Mapping[tuple[str, int], OwnerId], baseline: Baseline,
           claims: Iterable[Claim], cluster_domain: str) -> set[OwnerId]:
    """Who a problem belongs to: the sandbox or route group in whose document it was found; for a problem in a
    baseline routing object (one meshgen cannot add routes to), every sandbox claiming a host it binds or sends
    to."""
    where = problem.location
    if where is None:
        return set()
    owner = documents.get((where.source, where.document))
    if owner is not None:
        return {owner}
    for source in Sources(baseline, cluster_domain).all():
        at = source.resource.location
        if at is not None and (at.source, at.document) == (where.source, where.document):
            touched = {*source.hosts, *(h for r in source.routes for h in r.destination_hosts())}
            return {("Sandbox", c.sandbox) for c in claims if c.host in touched}
    return set()


def _attempt(specs: Specs, baseline: Baseline, policy: MeshPolicy,
             seniority: Seniority) -> tuple[Plan | None, list[Problem], list[Claim]]:
    """One planning pass: the plan (None when there are problems), every problem, and every claim made."""
    domain = policy.spec.cluster_domain
    hosts = {h.fqdn: h for h in (forking.host_of(s, domain) for s in baseline.routable(baseline.of_kind(SERVICE)))}
    sources = Sources(baseline, domain)
    traffic = HostPolicies(baseline, sources, domain)
    problems: list[Problem] = []
    warnings: list[Diagnostic] = []

    def where(kind: str, name: str) -> Location:
        return specs.origin(kind, name) or Location(f"<{kind} {name}>")

    # Problems between two owners (a shared key, a generated name, a host's sandbox limit) are found on the
    # junior one: owners are visited by seniority.
    sandboxes = tuple(sorted(specs.sandboxes, key=lambda s: seniority(("Sandbox", s.name))))
    groups = tuple(sorted(specs.route_groups, key=lambda g: seniority(("RouteGroup", g.name))))
    owners = {s.name: Owner(OwnerKind.SANDBOX, s.name, s.routing_key) for s in sandboxes}
    group_owners = {g.name: Owner(OwnerKind.ROUTE_GROUP, g.name, g.routing_key) for g in groups}
    everyone = sorted([*owners.values(), *group_owners.values()], key=lambda o: seniority((o.kind.value, o.name)))
    problems.extend(_duplicate_keys(everyone, where))
    forks: list[Fork] = []
    claims_by_sandbox: dict[str, list[Claim]] = {}
    for sandbox in sandboxes:
        origin = where("Sandbox", sandbox.name)
        owner = owners[sandbox.name]
        claims: list[Claim] = []
        fronted: dict[str, Fork] = {}
        for i in range(len(sandbox.spec.forks)):
            try:
                fork = forking.build_fork(baseline, sandbox, owner.routing_key, i, origin.at("spec", "forks", i),
                                          domain, hosts, traffic)
            except InvalidInput as exc:
                problems.extend(exc.problems)
                continue
            shared = [s.baseline for s in fork.services if s.baseline.fqdn in fronted]
            if shared:
                other = fronted[shared[0].fqdn]
                problems.append(Problem(
                    origin.at("spec", "forks", i, "forkOf"),
                    f"{fork.workload} and {other.workload} are both behind Service "
                    f"{shared[0].namespace}/{shared[0].name}; one routing key can reach only one fork per host",
                    "fork one of them in this sandbox, and the other in a second sandbox",
                ))
                continue
            opaque = reach.unreachable(fork, origin.at("spec", "forks", i, "forkOf"))
            if opaque is not None:
                problems.append(opaque)
                continue
            fronted.update((s.baseline.fqdn, fork) for s in fork.services)
            forks.append(fork)
            warnings.extend(Diagnostic(f"Sandbox {sandbox.name}", note) for note in fork.notes)
            if not fork.services:
                warnings.append(Diagnostic(
                    f"Sandbox {sandbox.name}", f"no Service with ports selects {fork.workload}; its fork runs but no "
                    "request can be routed to it"))
            warnings.extend(reach.partly_opaque(fork))
            claims.extend(Claim(owner, s.baseline.fqdn, s.fork.fqdn, sandbox.name) for s in fork.services
                          if s.baseline.routes_requests)
        for i, virtual in enumerate(sandbox.spec.virtual):
            try:
                workload = forking.find_workload(baseline, virtual.workload,
                                                 origin.at("spec", "virtual", i, "workload"))
            except InvalidInput as exc:
                problems.extend(exc.problems)
                continue
            for service in baseline.services_fronting(workload):
                host = forking.host_of(service, domain)
                if host.routes_requests:  # an opaque host routes connections: no key to claim it by
                    claims.append(Claim(owner, host.fqdn, host.fqdn, sandbox.name))
        problems.extend(_conflicting_claims(claims, origin, f"sandbox {sandbox.name}"))
        claims_by_sandbox[sandbox.name] = claims

    all_claims = [c for s in sandboxes for c in claims_by_sandbox.get(s.name, [])]
    for group in groups:
        owner = group_owners[group.name]
        members = [s for s in sandboxes if group.spec.match.matches(s.metadata.labels)]
        if not members:
            warnings.append(Diagnostic(f"RouteGroup {group.name}", "matches no sandbox; its key routes to the "
                                       "baseline everywhere"))
        group_claims = [Claim(owner, c.host, c.target, c.sandbox) for s in members
                        for c in claims_by_sandbox.get(s.name, [])]
        problems.extend(_conflicting_claims(group_claims, where("RouteGroup", group.name).at("spec", "match"),
                                            f"route group {group.name}"))
        all_claims.extend(group_claims)

    problems.extend(_name_collisions(forks, baseline, where))
    warnings.extend(_rules_left_behind(forks, baseline))
    sandbox_claims = [c for s in sandboxes for c in claims_by_sandbox.get(s.name, [])]
    problems.extend(guardrails.check(policy, sandboxes, forks, sandbox_claims, baseline, where, groups))
    tables, table_problems, table_warnings = plan_tables(sources, all_claims, hosts, domain, baseline, forks,
                                                         policy.spec.backend)
    problems.extend(table_problems)
    warnings.extend(table_warnings)
    problems.extend(_owned_table_collisions(tables, baseline))
    problems.extend(route_limits.check(tables, policy, seniority, where))
    target_problems, target_warnings = targets.check(policy, forks, where)
    problems.extend(target_problems)
    warnings.extend(target_warnings)
    edge = _edge(policy, baseline, where)
    if isinstance(edge, Problem):
        problems.append(edge)
    if problems:
        return None, problems, all_claims
    assert isinstance(edge, Edge)

    all_claims.sort(key=lambda c: (c.host, c.owner.order))
    return Plan(
        policy=policy,
        baseline=baseline,
        owners=tuple(sorted([*owners.values(), *group_owners.values()], key=lambda o: o.order)),
        forks=tuple(sorted(forks, key=lambda f: (f.sandbox, f.workload.namespace, f.workload.name))),
        claims=tuple(all_claims),
        tables=tables,
        warnings=tuple(warnings),
        hosts=hosts,
        edge=edge,
        sources=sources,
    ), [], all_claims


def _edge(policy: MeshPolicy, baseline: Baseline, where: Where) -> Edge | Problem:
    """The edge trust the policy asks for; in token mode, the token's digest from the Secret it names."""
    ingress = policy.spec.ingress
    ref = ingress.token_secret
    if ref is None or ingress.token is None:
        return Edge(ingress.mode, tuple(ingress.allow_cidrs))
    value = baseline.secret_value(ref.namespace, ref.name, ref.key)
    if not value:
        return Problem(
            where("MeshPolicy", policy.metadata.name).at("spec", "ingress", "token", "secretRef"),
            f"ingress mode token needs the edge token from {ref}, which the baseline does not have",
            f"create it (kubectl -n {ref.namespace} create secret generic {ref.name} "
            f"--from-literal={ref.key}=$(openssl rand -hex 32)); for an offline compile, add its manifest with "
            "--baseline",
        )
    return Edge(ingress.mode, tuple(ingress.allow_cidrs), ingress.token.header, hashlib.sha256(value).hexdigest())


def _duplicate_keys(owners: Iterable[Owner], where: Where) -> list[Problem]:
    seen: dict[str, Owner] = {}
    problems = []
    for owner in owners:
        other = seen.setdefault(owner.routing_key, owner)
        if other is not owner:
            problems.append(Problem(
                where(owner.kind.value, owner.name).at("spec", "routingKey"),
                f"routing key {owner.routing_key!r} of {owner.kind.value} {owner.name} is already used by "
                f"{other.kind.value} {other.name}",
                "give each sandbox and route group its own routing key (or omit it to derive one from the name)",
            ))
    return problems


def _conflicting_claims(claims: list[Claim], where: Location, what: str) -> list[Problem]:
    """One key may send a host to one place only."""
    first: dict[str, Claim] = {}
    problems = []
    for claim in claims:
        other = first.setdefault(claim.host, claim)
        if other.target != claim.target or other.sandbox != claim.sandbox:
            problems.append(Problem(
                where,
                f"{what} routes {claim.host} to two places: {_describe(other)} and {_describe(claim)}",
                "a routing key can reach one fork per host: fork one of these workloads, or narrow the "
                "route group's match so it selects only one of these sandboxes",
            ))
    return problems


def _describe(claim: Claim) -> str:
    what = "its baseline (virtual)" if claim.is_virtual else claim.target
    return f"{what} from sandbox {claim.sandbox}"


def _name_collisions(forks: list[Fork], baseline: Baseline, where: Where) -> list[Problem]:
    """Generated names must not collide with each other or with a baseline object."""
    taken: dict[ObjectKey, str] = {}
    problems = []
    for fork in forks:
        generated = [fork.key, *(ObjectKey(SERVICE, s.fork.namespace, s.fork.name) for s in fork.services),
                     *(p.key for p in fork.policies)]
        for key in generated:
            existing = baseline.get(key.kind, key.namespace, key.name)
            if existing is not None:
                problems.append(Problem(
                    where("Sandbox", fork.sandbox).at("metadata", "name"),
                    f"the fork's {key} would have the name of an existing baseline object",
                    "rename the sandbox",
                ))
            elif key in taken:
                problems.append(Problem(
                    where("Sandbox", fork.sandbox).at("metadata", "name"),
                    f"the fork's {key} has the same generated name as one of sandbox {taken[key]}",
                    "rename one of the sandboxes",
                ))
            taken.setdefault(key, fork.sandbox)
    return problems


def _rules_left_behind(forks: Iterable[Fork], baseline: Baseline) -> list[Diagnostic]:
    """DestinationRules scoped to a forked workload by ``workloadSelector``: the fork's pod labels differ where
    Services select (that is what isolates it), so such a rule may shape the original's outbound calls and not
    the fork's. Worth a warning, not an error: the fork still routes correctly."""
    found = []
    for fork in forks:
        ns = fork.workload.namespace
        rules = [r for r in baseline.of_kind(DESTINATION_RULE, ns) if isinstance(r.spec.get("workloadSelector"), dict)]
        original = baseline.get(fork.workload.kind, ns, fork.workload.name)
        if not rules or original is None:
            continue
        original_labels = baseline.labels_of(original)
        fork_labels = fork.pod_labels
        for rule in rules:
            wanted = rule.spec["workloadSelector"].get("matchLabels") or {}
            if selects(wanted, original_labels) and not selects(wanted, fork_labels):
                found.append(Diagnostic(
                    f"Sandbox {fork.sandbox}",
                    f"DestinationRule {ns}/{rule.name} applies to {fork.workload.name} by its workloadSelector "
                    f"({', '.join(f'{k}={v}' for k, v in sorted(wanted.items()))}) but not to its fork, whose "
                    f"calls to {rule.spec.get('host')} get the host-wide policy; to cover both, select on a label "
                    "no Service selects on (forks keep those)"))
    return found


def _owned_table_collisions(tables: Iterable[RouteTable], baseline: Baseline) -> list[Problem]:
    problems = []
    for table in tables:
        key = table.key
        existing = baseline.get(key.kind, key.namespace, key.name)
        if table.owned and existing is not None:
            problems.append(Problem(
                existing.at("metadata", "name"),
                f"meshgen needs the name {key} for the {key.kind} it owns, and the baseline already has one "
                "by that name that does not bind the same host",
                f"rename that {key.kind}",
            ))
    return problems

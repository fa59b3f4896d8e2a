"""A fork's traffic policy: what the baseline's DestinationRules apply to the original, for the fork host's own rule.

The fork is reached through its own Service, so no baseline DestinationRule names its host; meshgen gives the fork
host a rule whose ``trafficPolicy`` makes istiod build the fork's clusters as it builds the original's. Where the
baseline reaches the original through a *subset*, that is the subset's policy merged over the host's, exactly as
istiod merges them (read in the pinned istio.io/istio module: ``util.MergeSubsetTrafficPolicy``,
``model.MergeTrafficPolicy``, applied by ``ClusterBuilder.buildSubsetCluster``), port by port:

- the host-level policy for a port is its ``portLevelSettings`` entry for that port if it has one (and then only
  that entry's connectionPool, loadBalancer, outlierDetection and tls: nothing is inherited from the top level),
  else the top level;
- the subset's policy for the port is found the same way; each of connectionPool, outlierDetection, loadBalancer
  and tls it sets replaces the host's (all four do when it has a port entry), and so do tunnel, proxyProtocol and
  retryBudget.

A fork rule has no subsets (routes to a fork name no subset), so its trafficPolicy is that merge at the top level
plus a ``portLevelSettings`` entry for every Service port where the merge differs. istiod builds a port's cluster
from a port entry alone, so a port whose merged policy needs tunnel, proxyProtocol or retryBudget besides a port
entry cannot be reproduced: meshgen says so.

Which subset: the ones the baseline's routes (:mod:`meshgen.plan.sources`) send to for the host whose labels select
the original (and "no subset" where a route names none). When those disagree, the first one routed to wins, with a
warning.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from meshgen.baseline.model import DESTINATION_RULE, Baseline, ObjectKey, Resource, resolve_host
from meshgen.documents import JsonObject, clone
from meshgen.plan.model import Host
from meshgen.plan.sources import Sources

PORT_FIELDS = ("connectionPool", "loadBalancer", "outlierDetection", "tls")
FIELDS = (*PORT_FIELDS, "tunnel", "proxyProtocol", "retryBudget")
Policy = Mapping[str, Any]


def host_rule(baseline: Baseline, fqdn: str, namespace: str, cluster_domain: str) -> Resource | None:
    """The DestinationRule whose trafficPolicy applies to ``fqdn``: Istio prefers one in the Service's own
    namespace; rules scoped to workloads (``workloadSelector``) are not host-wide and are skipped."""
    candidates = [rule for rule in _host_rules(baseline, fqdn, namespace, cluster_domain)
                  if isinstance(rule.spec.get("trafficPolicy"), dict)]
    return candidates[0] if candidates else None


def _host_rules(baseline: Baseline, fqdn: str, namespace: str, cluster_domain: str) -> list[Resource]:
    found = [rule for rule in baseline.of_kind(DESTINATION_RULE)
             if resolve_host(str(rule.spec["host"]), rule.namespace, cluster_domain) == fqdn
             and "workloadSelector" not in rule.spec]
    found.sort(key=lambda rule: (rule.namespace != namespace, rule.namespace, rule.name))
    return found


def at_port(policy: Policy | None, port: int | None) -> tuple[Policy | None, bool]:
    """istiod's ``GetPortLevelTrafficPolicy``: a policy's entry for ``port`` (its four port-level fields only)
    and True, or the policy itself and False."""
    if policy is None or port is None:
        return policy, False
    for entry in policy.get("portLevelSettings") or []:
        if isinstance(entry, dict) and (entry.get("port") or {}).get("number") == port:
            return {k: entry[k] for k in PORT_FIELDS if entry.get(k) is not None}, True
    return policy, False


def merged(top: Policy | None, subset: Policy | None, port: int | None) -> dict[str, Any]:
    """istiod's ``MergeSubsetTrafficPolicy`` for one port (None: a port no ``portLevelSettings`` names), as the
    fields it builds a cluster from."""
    host, _ = at_port(top, port)
    if subset is None:
        return _fields(host)
    own, has_port_entry = at_port(subset, port)
    if host is None:
        return _fields(own)
    out = _fields(host)
    assert own is not None
    for key in FIELDS:
        value = own.get(key)
        if value is not None or (has_port_entry and key in PORT_FIELDS):
            out[key] = value
    return {k: v for k, v in out.items() if v is not None}


def _fields(policy: Policy | None) -> dict[str, Any]:
    return {k: policy[k] for k in FIELDS if policy is not None and policy.get(k) is not None}


def fork_policy(top: Policy | None, subset: Policy | None, ports: Sequence[int]) -> tuple[JsonObject | None, bool]:
    """A trafficPolicy for a rule without subsets that gives each of ``ports`` what istiod gives the subset
    (None for no subset: the host's policy as written), and whether that is exact. None when nothing applies."""
    if subset is None:
        return (clone(dict(top)) if top is not None else None), True
    base = merged(top, subset, None)
    out: JsonObject = clone(base)
    entries = []
    exact = True
    for port in sorted(set(ports)):
        wanted = merged(top, subset, port)
        if wanted == base:
            continue
        exact = exact and not any(k in wanted for k in FIELDS if k not in PORT_FIELDS)
        entries.append({"port": {"number": port}, **{k: clone(wanted[k]) for k in PORT_FIELDS if k in wanted}})
    if entries:
        out["portLevelSettings"] = entries
    return (out or None), exact


@dataclass(frozen=True)
class ForkTraffic:
    """What the fork host's DestinationRule carries (``policy`` None: it needs none), the rule it comes from, and
    anything the user should know about it."""

    policy: JsonObject | None
    source: Resource | None
    notes: tuple[str, ...] = ()


class HostPolicies:
    """The baseline's DestinationRules and routes, indexed once per plan."""

    def __init__(self, baseline: Baseline, sources: Sources, cluster_domain: str) -> None:
        self.baseline = baseline
        self.domain = cluster_domain
        # host -> the subsets routes name for it, in route order (None: a destination without a subset)
        self.routed: dict[str, list[str | None]] = {}
        for _, route in sources.routes():
            for dest in route.destinations:
                routed = self.routed.setdefault(dest.host, [])
                if dest.subset not in routed:
                    routed.append(dest.subset)
        self._memo: dict[tuple[str, ObjectKey], ForkTraffic] = {}

    def for_fork(self, host: Host, original: Resource, labels: Mapping[str, str]) -> ForkTraffic:
        """The traffic policy ``original`` (whose pods carry ``labels``) gets behind ``host``, for its fork."""
        memo_key = (host.fqdn, original.key)
        found = self._memo.get(memo_key)
        if found is None:
            found = self._memo[memo_key] = self._decide(host, original, labels)
        return found

    def _decide(self, host: Host, original: Resource, labels: Mapping[str, str]) -> ForkTraffic:
        rules = _host_rules(self.baseline, host.fqdn, host.namespace, self.domain)
        top_rule = next((r for r in rules if isinstance(r.spec.get("trafficPolicy"), dict)), None)
        top: Policy | None = top_rule.spec["trafficPolicy"] if top_rule is not None else None
        subsets: dict[str, tuple[Policy | None, Resource]] = {}
        for rule in rules:  # rules for one host merge: the first definition of a subset wins
            for subset in rule.spec.get("subsets") or []:
                selected = all(labels.get(k) == v for k, v in (subset.get("labels") or {}).items())
                if selected and subset["name"] not in subsets:
                    subsets[subset["name"]] = (subset.get("trafficPolicy"), rule)
        routed = [s for s in self.routed.get(host.fqdn, [None]) if s is None or s in subsets]
        ports = [p.port for p in host.ports]
        options: list[tuple[str | None, JsonObject | None, Resource | None, bool]] = []
        for name in routed or [None]:
            own, defined_in = subsets[name] if name is not None else (None, top_rule)
            policy, exact = fork_policy(top, own, ports)
            if all(policy != other for _, other, _, _ in options):
                options.append((name, policy, defined_in if own is not None else top_rule, exact))
        name, policy, source, exact = options[0]
        notes = []
        if len(options) > 1:
            names = ", ".join(f"subset {n}" if n else "the host without a subset" for n, *_ in options)
            notes.append(f"the baseline reaches {original.key} behind {host.fqdn} through {names}, whose "
                         f"traffic policies differ; its fork gets that of "
                         f"{f'subset {name}' if name else 'the host'} (the first routed to)")
        if not exact and source is not None:
            notes.append(f"DestinationRule {source.namespace}/{source.name}: subset {name}'s traffic policy sets "
                         "tunnel, proxyProtocol or retryBudget for a port with its own portLevelSettings, which a "
                         "rule without subsets cannot reproduce for the fork host")
        return ForkTraffic(policy, source if policy is not None else None, tuple(notes))

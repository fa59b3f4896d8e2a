"""What each target data plane can do (``MeshPolicy.spec.target``), checked at compile time: a limit is an error
or a warning naming the target, never traffic quietly falling back to the baseline.

==================  ==========================  =====================  =================================
target              routing-key normaliser      header regex matches   DestinationRules (fork policy)
==================  ==========================  =====================  =================================
``istio-sidecar``   yes (EnvoyFilter)           yes                    yes
``istio-ambient``   no (waypoints: no filter)   yes (Envoy, RE2)       yes
``linkerd``         no                          yes                    no
``generic``         no                          no (core: Exact only)  no
==================  ==========================  =====================  =================================

With the normaliser, every sandbox route matches one header exactly (the policy's routing header), whatever
propagation source the key came in. Without it, nothing copies a key into that header, so a sandbox route must
match each source itself, as alternatives (match entries, which the Gateway API ORs):

- the routing header, set by the caller, and each ``header`` source: an exact match;
- a ``baggage`` or ``tracestate`` member: a regular expression on that header (RE2, anchored at both ends) for
  the member as a propagator writes it (its name in lower case, the value not encoded), where the target supports
  RegularExpression header matches; where it does not (``generic``), that source is an error.

Without the edge filter, nothing removes routing keys that clients outside the mesh send, so keys are a
capability only if the ingress strips them: a warning says so. A fork's traffic policy (its DestinationRule) needs
DestinationRules: a target without them warns for each fork whose original has one.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from meshgen.errors import Location, Problem
from meshgen.plan.model import Diagnostic, Fork
from meshgen.plan.routing import HeaderMatch, MatchKind, Route, StringMatch
from meshgen.spec.models import MeshPolicy, Target


@dataclass(frozen=True)
class Capabilities:
    """What a target data plane does."""

    normaliser: bool  # runs meshgen's routing-key normaliser and edge filter (an EnvoyFilter)
    header_regex: bool  # honours the Gateway API's RegularExpression header matches
    destination_rules: bool  # applies Istio DestinationRules


CAPABILITIES = {
    Target.ISTIO_SIDECAR: Capabilities(normaliser=True, header_regex=True, destination_rules=True),
    Target.ISTIO_AMBIENT: Capabilities(normaliser=False, header_regex=True, destination_rules=True),
    Target.LINKERD: Capabilities(normaliser=False, header_regex=True, destination_rules=False),
    Target.GENERIC: Capabilities(normaliser=False, header_regex=False, destination_rules=False),
}


def capabilities(policy: MeshPolicy) -> Capabilities:
    return CAPABILITIES[policy.spec.target]


def key_matches(policy: MeshPolicy, routing_header: str, key: str) -> tuple[HeaderMatch, ...]:
    """The header conditions that each identify requests carrying ``key``: a sandbox route matches any of them
    (with the normaliser, just the routing header)."""
    exact = StringMatch(MatchKind.EXACT, key)
    if capabilities(policy).normaliser:
        return (HeaderMatch(routing_header, exact),)
    found: dict[tuple[str, str], HeaderMatch] = {(routing_header, key): HeaderMatch(routing_header, exact)}
    for source in policy.spec.propagation:
        if source.kind == "header":
            found.setdefault((source.key, key), HeaderMatch(source.key, exact))
        elif capabilities(policy).header_regex:
            regex = member_regex(source.kind, source.key, key)
            found.setdefault((source.kind, regex), HeaderMatch(source.kind, StringMatch(MatchKind.REGEX, regex)))
    return tuple(found.values())


def keyed(route: Route, conditions: tuple[HeaderMatch, ...]) -> Route:
    """A sandbox copy as a data plane without the normaliser matches it: each match block once per key condition
    (:func:`key_matches`), with that condition AND-ed in; the blocks are alternatives."""
    return dataclasses.replace(route, matches=tuple(
        dataclasses.replace(block, headers=(*block.headers, condition))
        for block in route.blocks for condition in conditions))


def member_regex(header: str, member: str, key: str) -> str:
    """A full-match RE2 for a ``baggage`` or ``tracestate`` list holding ``member=key`` (baggage: optional spaces
    around ``=``, and properties after ``;``)."""
    name, value = re.escape(member.lower()), re.escape(key)
    if header == "baggage":
        return rf"^(.*,)?[ \t]*{name}[ \t]*=[ \t]*{value}[ \t]*(;[^,]*)?(,.*)?$"
    return rf"^(.*,)?[ \t]*{name}={value}[ \t]*(,.*)?$"


def check(policy: MeshPolicy, forks: Iterable[Fork], where: Callable[[str, str], Location]
          ) -> tuple[list[Problem], list[Diagnostic]]:
    """What the policy's target cannot do with this policy (errors) and these forks (warnings)."""
    can = capabilities(policy)
    target = policy.spec.target.value
    at = where("MeshPolicy", policy.metadata.name)
    problems: list[Problem] = []
    warnings: list[Diagnostic] = []
    mismatch = policy.spec.backend_mismatch()
    if mismatch is not None:
        problems.append(Problem(at.at("spec", "target"), *mismatch))
    if can.normaliser:
        return problems, warnings
    subject = f"MeshPolicy {policy.metadata.name}"
    for i, source in enumerate(policy.spec.propagation):
        if source.kind != "header" and not can.header_regex:
            problems.append(Problem(
                at.at("spec", "propagation", i),
                f"target {target} cannot read routing keys from {source.kind}: no EnvoyFilter runs meshgen's "
                "normaliser there, and the Gateway API's core matches headers exactly only (a "
                f"{source.kind} member is one entry of a list)",
                f"have callers set the routing header {policy.spec.routing_header} (what works on every target), "
                "and remove this source; or choose a target that supports RegularExpression header matches"))
    warnings.append(Diagnostic(subject, (
        f"target {target} runs no edge filter: routing keys that clients outside the mesh send are not removed at "
        f"the ingress, so strip {policy.spec.routing_header} and the routing members of baggage and tracestate "
        "there yourself (a RequestHeaderModifier on the edge's routes), or anyone can pick a fork")))
    if not can.destination_rules:
        for fork in forks:
            for service in fork.services:
                if service.traffic_policy is not None and service.traffic_policy_of is not None:
                    rule = service.traffic_policy_of
                    warnings.append(Diagnostic(f"Sandbox {fork.sandbox}", (
                        f"target {target} has no DestinationRules: the traffic policy of DestinationRule "
                        f"{rule.namespace}/{rule.name} is not applied to {service.fork.fqdn}")))
    return problems, warnings

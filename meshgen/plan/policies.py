"""A fork is governed like what it forks (DESIGN invariant 10): copies of the baseline's policies keyed on pod labels.

A fork's pod labels differ from the original's exactly where Services select (that is what isolates it), so a
policy that reaches the original by such a label does not reach the fork. For each such policy the fork gets a
copy in the policy's namespace, owned by its sandbox (removed with it, written before the fork's pods), that
selects the fork by the fork's own selector (its workload's ``spec.selector``). Every pod of a workload carries its
template's labels, so a selector reaches all of a workload's pods or none: the copy is exact whatever the form of
the original selector (``matchExpressions`` included).

- **AuthorizationPolicy, PeerAuthentication, RequestAuthentication** (security.istio.io) with
  ``spec.selector.matchLabels``, in the original's namespace or the mesh root namespace (``istio-system``, where a
  selector reaches every namespace): the copy is the policy with its selector replaced. Without a selector a policy
  covers its whole namespace (the root namespace: the mesh), the fork included: nothing to copy. A policy bound by
  ``targetRef``/``targetRefs`` applies at a Gateway or a Service's waypoint, not to pods: it is not copied, and if
  it targets a Service in front of the original meshgen warns (the fork's Service is not a target).
- **NetworkPolicy**: a ``podSelector`` that selects the original gets a copy selecting the fork, its rules kept (a
  peer in them that names the original names the fork too, beside it). A peer (``ingress[].from``,
  ``egress[].to``) whose ``podSelector`` selects the original is *additive*: a copy with the same ``podSelector``
  and only those rules, each allowing the fork as the original peer allows the original (its ``namespaceSelector``
  kept, ports kept), for the directions the policy governs. A peer with a ``namespaceSelector`` may name another
  namespace; namespaces' labels are not read, so such a peer is copied whenever its ``podSelector`` selects the
  original (a copy whose namespace selector misses is harmless: it allows nothing the original did not).

The copies carry the original's apiVersion family at its current version (``security.istio.io/v1``,
``networking.k8s.io/v1``) and are named ``<policy>-<fork>`` (``<policy>-peer-<fork>`` for a peer copy).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from meshgen.baseline.model import (
    NETWORK_POLICY,
    POLICY_KINDS,
    SECURITY_POLICY_KINDS,
    SERVICE,
    Baseline,
    Resource,
    label_selector_matches,
    selects,
)
from meshgen.documents import JsonObject, clone
from meshgen.ownership import ANNOTATION_FORK_OF, ANNOTATION_POLICY_OF, owner_labels
from meshgen.plan.model import Fork, ForkPolicy
from meshgen.spec.names import fit_name

# Istio's default mesh root namespace: a selector policy there applies to workloads in every namespace.
ROOT_NAMESPACE = "istio-system"
SECURITY_API = "security.istio.io/v1"
NETWORKING_API = "networking.k8s.io/v1"
_NAME_MAX = 253  # policy names are DNS subdomains
_RULE_PEERS = (("ingress", "from", "Ingress"), ("egress", "to", "Egress"))


def copies(baseline: Baseline, original: Mapping[str, str], fork: Fork) -> tuple[tuple[ForkPolicy, ...], list[str]]:
    """The policy copies ``fork`` needs (its original's pods carry ``original``), and notes on what is not
    copied."""
    if not any(baseline.of_kind(kind) for kind in POLICY_KINDS):
        return (), []
    out: list[ForkPolicy] = []
    notes: list[str] = []
    namespace = fork.workload.namespace
    fronting = {s.baseline.name for s in fork.services if s.baseline.namespace == namespace}
    for kind in SECURITY_POLICY_KINDS:
        scopes = [namespace] if namespace == ROOT_NAMESPACE else [namespace, ROOT_NAMESPACE]
        for policy in (p for scope in scopes for p in baseline.of_kind(kind, scope)):
            targets = [policy.spec.get("targetRef"), *(policy.spec.get("targetRefs") or [])]
            named = sorted({str(t.get("name")) for t in targets if isinstance(t, dict) and t.get("kind") == SERVICE
                            and t.get("name") in fronting and (t.get("namespace") or policy.namespace) == namespace})
            if named:
                notes.append(f"{kind} {policy.namespace}/{policy.name} applies to Service {', '.join(named)} by "
                             f"targetRef, not to {fork.workload}'s fork behind its own Service: meshgen copies "
                             "policies that select pods, not ones bound to a Service; select the pods with "
                             "spec.selector to cover the fork")
            wanted = (policy.spec.get("selector") or {}).get("matchLabels") or {}
            if wanted and selects(wanted, original) and not selects(wanted, fork.pod_labels):
                spec = {**clone(dict(policy.spec)), "selector": {"matchLabels": dict(fork.selector)}}
                out.append(_copy(policy, SECURITY_API, fit_name(policy.name, fork.name, _NAME_MAX), spec, fork))
    for policy in baseline.of_kind(NETWORK_POLICY):
        out.extend(_network_copies(policy, original, fork))
    return tuple(out), notes


def _network_copies(policy: Resource, original: Mapping[str, str], fork: Fork) -> Iterable[ForkPolicy]:
    namespace = fork.workload.namespace
    spec = policy.spec
    target = policy.namespace == namespace and label_selector_matches(spec.get("podSelector"), original) \
        and not label_selector_matches(spec.get("podSelector"), fork.pod_labels)
    if target:
        copy = clone(dict(spec))
        copy["podSelector"] = {"matchLabels": dict(fork.selector)}
        for rules_key, peers_key, _ in _RULE_PEERS:
            for rule in copy.get(rules_key) or []:
                if isinstance(rule, dict) and rule.get(peers_key):
                    rule[peers_key] = [p for peer in rule[peers_key]
                                       for p in ([peer, _fork_peer(peer, fork)]
                                                 if _names_original(peer, policy, original, fork) else [peer])]
        yield _copy(policy, NETWORKING_API, fit_name(policy.name, fork.name, _NAME_MAX), copy, fork)
    governed = spec.get("policyTypes") or ["Ingress", *(["Egress"] if spec.get("egress") else [])]
    additive: JsonObject = {"podSelector": clone(spec.get("podSelector") or {}), "policyTypes": []}
    for rules_key, peers_key, direction in _RULE_PEERS:
        if direction not in governed:
            continue
        rules = []
        for rule in spec.get(rules_key) or []:
            peers = [_fork_peer(p, fork) for p in (rule or {}).get(peers_key) or []
                     if _names_original(p, policy, original, fork)]
            if peers:
                rules.append({**clone(dict(rule)), peers_key: peers})
        if rules:
            additive[rules_key] = rules
            additive["policyTypes"].append(direction)
    if additive["policyTypes"]:
        yield _copy(policy, NETWORKING_API, fit_name(f"{policy.name}-peer", fork.name, _NAME_MAX), additive, fork)


def _names_original(peer: Any, policy: Resource, original: Mapping[str, str], fork: Fork) -> bool:
    """Whether a NetworkPolicy peer selects the original's pods and not the fork's. A peer without a
    ``podSelector`` (a namespace or an address block) reaches the fork as it reaches the original."""
    if not isinstance(peer, dict) or not isinstance(peer.get("podSelector"), dict):
        return False
    if peer.get("namespaceSelector") is None and policy.namespace != fork.workload.namespace:
        return False
    return label_selector_matches(peer["podSelector"], original) and \
        not label_selector_matches(peer["podSelector"], fork.pod_labels)


def _fork_peer(peer: Mapping[str, Any], fork: Fork) -> JsonObject:
    return {**clone(dict(peer)), "podSelector": {"matchLabels": dict(fork.selector)}}


def _copy(policy: Resource, api_version: str, name: str, spec: JsonObject, fork: Fork) -> ForkPolicy:
    body: JsonObject = {
        "apiVersion": api_version,
        "kind": policy.key.kind,
        "metadata": {
            "name": name,
            "namespace": policy.namespace,
            "labels": owner_labels(fork.sandbox),
            "annotations": {ANNOTATION_POLICY_OF: f"{policy.namespace}/{policy.name}",
                            ANNOTATION_FORK_OF: f"{fork.workload.namespace}/{fork.workload.name}"},
        },
        "spec": spec,
    }
    return ForkPolicy(policy.key, body)

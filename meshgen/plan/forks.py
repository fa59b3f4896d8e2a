"""Deriving a fork: its workload (baseline copy + customizations), the Services that front it, the traffic policy
its host gets, and the copies of the policies that govern the original.

The isolation rule (DESIGN invariant 2) is enforced here: every pod label some baseline Service selects on gets a
sandbox-specific value, and the result is checked against every Service in the namespace, after the user's
patch, so no baseline Service can ever select a fork's pods.

What a fork is, by the kind it forks:

- a **Deployment**'s fork is a Deployment: the original's spec with one replica and the fork's selector and pod
  labels;
- an **Argo Rollout**'s (argoproj.io/v1alpha1) is a Deployment made from its pod template (``spec.template``, or
  for a Rollout with ``workloadRef`` the template of the Deployment it names); the rollout strategy does not apply
  to a one-replica fork, so only the fields a Deployment shares are kept (minReadySeconds, revisionHistoryLimit,
  progressDeadlineSeconds);
- a **StatefulSet**'s is a one-replica StatefulSet. Its volume claims are its own: a claim's name derives from the
  claim template and the StatefulSet's name, and the fork's name differs; they are deleted with the fork
  (``persistentVolumeClaimRetentionPolicy.whenDeleted: Delete``: a sandbox's data is disposable). Its
  ``serviceName`` names the fork's copy of the governing Service when that Service selects the original (so the
  fork's pods get their own stable DNS names), else stays as written.

Every container and init container of the fork gets ``MESHGEN_SANDBOX_NAME`` and ``MESHGEN_ROUTING_KEY`` (first
in ``env``, so other variables may refer to them as ``$(MESHGEN_ROUTING_KEY)``), set after the patch, so a patch
can neither remove them nor add a container without them; the original's values of those names are replaced, and
a patch that sets them is an error.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from typing import Any

from meshgen.baseline.model import (
    DEPLOYMENT,
    ROLLOUT,
    STATEFUL_SET,
    WORKLOAD_KINDS,
    Baseline,
    Resource,
    selects,
    service_fqdn,
)
from meshgen.documents import JsonObject, clone
from meshgen.errors import InvalidInput, Location, Problem
from meshgen.ownership import (
    ANNOTATION_FORK_OF,
    ANNOTATION_ROUTING_KEY,
    ANNOTATION_SERVICE_OF,
    LABEL_FORK_OF,
    LABEL_SANDBOX,
    owner_labels,
)
from meshgen.plan import pods, policies
from meshgen.plan.model import Fork, ForkService, Host, ServicePort
from meshgen.plan.patching import PatchFailed, apply_patch
from meshgen.plan.sources import Sources
from meshgen.plan.traffic_policy import HostPolicies
from meshgen.spec import models as spec
from meshgen.spec.models import ENV_ROUTING_KEY, ENV_SANDBOX, RESERVED_ENV
from meshgen.spec.names import DNS_LABEL_MAX, fit_name

# Metadata the API server owns or that would make other tools claim the fork; never copied from the baseline.
_SERVER_METADATA = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields",
                    "ownerReferences", "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds", "finalizers")
# The fields of a Rollout's spec that mean the same in a Deployment's.
_ROLLOUT_DEPLOYMENT_FIELDS = ("minReadySeconds", "revisionHistoryLimit", "progressDeadlineSeconds")


def find_workload(baseline: Baseline, ref: spec.WorkloadRef, where: Location) -> Resource:
    """The baseline workload ``ref`` names, or an error suggesting what the user may have meant."""
    found = baseline.get(ref.kind, ref.namespace, ref.name)
    if found is not None:
        return found
    other = [kind for kind in WORKLOAD_KINDS if baseline.get(kind, ref.namespace, ref.name) is not None]
    names = baseline.names_of(ref.kind, ref.namespace)
    close = difflib.get_close_matches(ref.name, names, n=3)
    plural = f"{ref.kind}s"
    if other:
        fix = f"{ref.namespace}/{ref.name} is a {other[0]}: set kind: {other[0]}"
    elif close:
        fix = f"did you mean {', '.join(close)}?"
    elif names:
        fix = f"{plural} in namespace {ref.namespace}: {', '.join(names[:10])}"
    else:
        fix = f"the baseline has no {plural} in namespace {ref.namespace}; check --baseline and the namespace"
    raise InvalidInput.one(where, f"{ref} is not in the baseline", fix)


def build_fork(
    baseline: Baseline,
    sandbox: spec.Sandbox,
    routing_key: str,
    index: int,
    where: Location,
    cluster_domain: str,
    hosts: Mapping[str, Host] | None = None,
    traffic: HostPolicies | None = None,
) -> Fork:
    """Derive the fork of ``sandbox.spec.forks[index]``, reached with ``routing_key`` (the sandbox's key, computed
    once by the caller). ``where`` locates that entry for errors; ``hosts`` are the baseline's hosts by fqdn and
    ``traffic`` the baseline's traffic policies, when the caller has them already."""
    fork_spec = sandbox.spec.forks[index]
    ref = fork_spec.fork_of
    original = find_workload(baseline, ref, where.at("forkOf"))
    template = baseline.template(original)
    if not template:
        target = original.spec.get("workloadRef") or {}
        raise InvalidInput.one(
            where.at("forkOf"),
            f"{ref} takes its pod template from {target.get('kind', DEPLOYMENT)} {original.namespace}/"
            f"{target.get('name')} (workloadRef), which is not in the baseline",
            "add that Deployment to the baseline (it is what the fork is made from)")
    name = fit_name(original.name, sandbox.name)
    original_labels = baseline.labels_of(original)
    labels = fork_pod_labels(baseline, original, sandbox.name, original_labels)
    selector = _fork_selector(original, labels)
    fronting = baseline.services_fronting(original)

    body = _copy_workload(original, template, name, routing_key, labels, selector,
                          {s.name: fit_name(s.name, sandbox.name) for s in fronting})
    _customize(body, fork_spec.customizations, where.at("customizations"))
    if fork_spec.customizations.patch is not None:
        patch = fork_spec.customizations.patch
        try:
            body = apply_patch(body, patch.type, patch.value)
        except PatchFailed as exc:
            raise InvalidInput.one(where.at("customizations", "patch", "value"), str(exc)) from None
        pods.check_fork(body, original, where.at("customizations", "patch"), patch.value)
        _check_patched(body, original, name, selector, where.at("customizations", "patch"))
    _set_identity(body, sandbox.name, routing_key, where.at("customizations", "patch"))
    _check_isolated(baseline, original, body, where)

    traffic = traffic or HostPolicies(baseline, Sources(baseline, cluster_domain), cluster_domain)
    services = tuple(
        _fork_service(svc, sandbox.name, selector, cluster_domain, ref, hosts or {}, traffic, original,
                      original_labels) for svc in fronting
    )
    fork = Fork(sandbox.name, routing_key, ref, name, body, services)
    copies, notes = policies.copies(baseline, original_labels, fork)
    notes += [n for s in services if s.traffic_policy_of is not None
              for n in traffic.for_fork(s.baseline, original, original_labels).notes]
    if not copies and not notes:
        return fork
    return dataclasses.replace(fork, policies=copies, notes=tuple(dict.fromkeys(notes)))


def fork_pod_labels(baseline: Baseline, original: Resource, sandbox: str,
                    original_labels: Mapping[str, str]) -> dict[str, str]:
    """The fork's pod labels: the original's (``original_labels``), with every key a Service selects on made
    sandbox-specific."""
    keys = baseline.selector_keys(original.namespace)
    labels = {k: (_label_value(v, sandbox) if k in keys else v) for k, v in original_labels.items()}
    labels.update(owner_labels(sandbox))
    labels[LABEL_FORK_OF] = _label_value(original.name, "")
    return labels


def _label_value(value: str, sandbox: str) -> str:
    joined = fit_name(value, sandbox) if sandbox else value
    return joined[:DNS_LABEL_MAX].rstrip("-._")


def _fork_selector(original: Resource, labels: dict[str, str]) -> dict[str, str]:
    match_labels = (original.spec.get("selector") or {}).get("matchLabels") or {}
    selector = {k: labels[k] for k in match_labels if k in labels}
    selector[LABEL_SANDBOX] = labels[LABEL_SANDBOX]
    selector[LABEL_FORK_OF] = labels[LABEL_FORK_OF]
    return selector


def _copy_workload(
    original: Resource, template: Mapping[str, Any], name: str, routing_key: str, labels: dict[str, str],
    selector: dict[str, str], fork_services: Mapping[str, str],
) -> JsonObject:
    """The fork's workload object before customizations: see the module docstring for each kind."""
    if original.key.kind == ROLLOUT:
        spec_: JsonObject = {k: clone(original.spec[k]) for k in _ROLLOUT_DEPLOYMENT_FIELDS if k in original.spec}
        body: JsonObject = {"apiVersion": "apps/v1", "kind": DEPLOYMENT, "spec": spec_}
    else:
        body = {k: clone(v) for k, v in original.body.items() if k not in ("metadata", "status")}
        spec_ = body["spec"]
    # Baseline annotations (revision, last-applied, GitOps tracking) describe the original, not the fork.
    body["metadata"] = {
        "name": name,
        "namespace": original.namespace,
        "labels": {k: v for k, v in labels.items()},
        "annotations": {
            ANNOTATION_FORK_OF: f"{original.namespace}/{original.name}",
            ANNOTATION_ROUTING_KEY: routing_key,
        },
    }
    spec_["replicas"] = 1
    spec_["selector"] = {"matchLabels": dict(selector)}
    if original.key.kind == ROLLOUT:  # others have their template in the spec just copied
        spec_["template"] = clone(dict(template))
    template_meta = spec_["template"].setdefault("metadata", {})
    for key in _SERVER_METADATA:
        template_meta.pop(key, None)
    template_meta["labels"] = dict(labels)
    if original.key.kind == STATEFUL_SET:
        governing = str(spec_.get("serviceName") or "")
        if governing in fork_services:
            spec_["serviceName"] = fork_services[governing]
        for claim in spec_.get("volumeClaimTemplates") or []:
            if isinstance(claim, dict):
                claim.pop("status", None)
                for key in _SERVER_METADATA:
                    (claim.get("metadata") or {}).pop(key, None)
        retention = dict(spec_.get("persistentVolumeClaimRetentionPolicy") or {})
        spec_["persistentVolumeClaimRetentionPolicy"] = {**retention, "whenDeleted": "Delete"}
    for container in _containers(body):
        if container.get("env"):
            container["env"] = [e for e in container["env"] if not _reserved(e)]
    return body


def _reserved(var: Any) -> bool:
    return isinstance(var, dict) and var.get("name") in RESERVED_ENV


def _containers(body: Any) -> list[dict[str, Any]]:
    """Every container and init container of a (possibly patched) workload's pod template."""
    pod = (((body.get("spec") or {}).get("template") or {}).get("spec") or {}) if isinstance(body, dict) else {}
    found = [c for key in ("containers", "initContainers") for c in pod.get(key) or []] if isinstance(pod, dict) else []
    return [c for c in found if isinstance(c, dict)]


def _container(body: JsonObject, name: str | None, where: Location) -> dict[str, Any]:
    containers = _containers(body)
    names = [c.get("name") for c in containers]
    if name is None:
        main = body["spec"]["template"]["spec"]["containers"]
        if len(main) == 1:
            return main[0]  # type: ignore[no-any-return]
        raise InvalidInput.one(
            where.at("container"),
            f"the pod has {len(main)} containers, so the container must be named",
            f"add container: one of {', '.join(str(n) for n in names)}",
        )
    for container in containers:
        if container.get("name") == name:
            return container
    raise InvalidInput.one(where.at("container"), f"no container {name!r} in the workload",
                           f"containers: {', '.join(str(n) for n in names)}")


def _customize(body: JsonObject, custom: spec.Customizations, where: Location) -> None:
    problems: list[Problem] = []
    for i, image in enumerate(custom.images):
        try:
            _container(body, image.container, where.at("images", i))["image"] = image.image
        except InvalidInput as exc:
            problems.extend(exc.problems)
    for i, env in enumerate(custom.env):
        try:
            container = _container(body, env.container, where.at("env", i))
        except InvalidInput as exc:
            problems.extend(exc.problems)
            continue
        var: dict[str, Any] = {"name": env.name}
        if env.value_from is not None:
            var["valueFrom"] = clone(env.value_from)
        else:
            var["value"] = env.value
        _set_env(container, var)
    if problems:
        raise InvalidInput(problems)


def _set_identity(body: JsonObject, sandbox: str, routing_key: str, where: Location) -> None:
    """The sandbox's own identity in every container, so a fork can tag callbacks with its key (a downward API
    for sandboxes); after the patch, which may add containers but not set these."""
    for container in _containers(body):
        env = container.get("env") or []
        taken = sorted({str(e.get("name")) for e in env if _reserved(e)})
        if taken:
            raise InvalidInput.one(
                where, f"the patch sets {', '.join(taken)} in container {container.get('name')!r}, which meshgen "
                "sets in every container of a fork (the sandbox's name and routing key)",
                "remove it from the patch; read it in the application instead")
        container["env"] = [{"name": ENV_SANDBOX, "value": sandbox}, {"name": ENV_ROUTING_KEY, "value": routing_key},
                            *env]


def _set_env(container: dict[str, Any], var: dict[str, Any]) -> None:
    env = container["env"] = container.get("env") or []
    for i, existing in enumerate(env):
        if isinstance(existing, dict) and existing.get("name") == var["name"]:
            env[i] = var
            return
    env.append(var)


def _check_patched(body: Any, original: Resource, name: str, selector: dict[str, str], where: Location) -> None:
    """A patch may change the pod freely, but not the fork's identity or the selector that isolates it."""
    meta = body.get("metadata") if isinstance(body, dict) else None
    if not isinstance(meta, dict) or meta.get("name") != name or meta.get("namespace") != original.namespace:
        raise InvalidInput.one(where, "the patch changes the fork's name or namespace", "patch only the pod")
    spec_ = body.get("spec") or {}
    if (spec_.get("selector") or {}).get("matchLabels") != selector:
        raise InvalidInput.one(where, "the patch changes spec.selector, which meshgen sets to isolate the fork",
                               "remove spec.selector from the patch")
    labels = ((spec_.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if not selects(selector, labels):
        raise InvalidInput.one(where, "the patch removes pod labels the fork's selector needs",
                               f"keep these labels: {', '.join(f'{k}={v}' for k, v in sorted(selector.items()))}")


def _check_isolated(baseline: Baseline, original: Resource, body: JsonObject, where: Location) -> None:
    labels = body["spec"]["template"]["metadata"]["labels"]
    selecting = baseline.services_selecting(original.namespace, labels)
    if selecting:
        names = ", ".join(s.name for s in selecting)
        raise InvalidInput.one(
            where,
            f"baseline Service(s) {names} would select the fork's pods, sending baseline traffic to the fork",
            "do not set pod labels that baseline Services select on (patch or customizations)",
        )


def _fork_service(
    service: Resource, sandbox: str, selector: dict[str, str], cluster_domain: str, ref: spec.WorkloadRef,
    hosts: Mapping[str, Host], traffic: HostPolicies, original: Resource, original_labels: Mapping[str, str],
) -> ForkService:
    name = fit_name(service.name, sandbox)
    known = hosts.get(service_fqdn(service.namespace, service.name, cluster_domain))
    baseline_host = known if known is not None else host_of(service, cluster_domain)
    spec_body: JsonObject = {"selector": dict(selector), "ports": [_fork_port(p) for p in service.spec["ports"]]}
    if service.spec.get("clusterIP") == "None":
        spec_body["clusterIP"] = "None"  # headless stays headless: clients resolve pods the same way
    body: JsonObject = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": service.namespace,
            "labels": owner_labels(sandbox),
            "annotations": {ANNOTATION_FORK_OF: f"{ref.namespace}/{ref.name}",
                            ANNOTATION_SERVICE_OF: f"{service.namespace}/{service.name}"},
        },
        "spec": spec_body,
    }
    fork_host = Host(service.namespace, name, service_fqdn(service.namespace, name, cluster_domain),
                     baseline_host.ports)
    policy = traffic.for_fork(baseline_host, original, original_labels)
    return ForkService(baseline_host, fork_host, body, policy.policy, policy.source)


def _service_port(port: dict[str, Any]) -> ServicePort:
    return ServicePort(str(port.get("name", "")), int(port["port"]), str(port.get("protocol", "TCP")),
                       port.get("appProtocol"))


def _fork_port(port: dict[str, Any]) -> dict[str, Any]:
    # nodePort is cluster-unique and would collide with the baseline; a fork is reached through the mesh only.
    return {k: clone(v) for k, v in port.items() if k != "nodePort"}


def host_of(service: Resource, cluster_domain: str) -> Host:
    """The mesh host of a baseline Service."""
    ports = tuple(_service_port(p) for p in service.spec.get("ports") or [])
    return Host(service.namespace, service.name, service_fqdn(service.namespace, service.name, cluster_domain), ports)


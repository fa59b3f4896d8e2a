"""Deriving a fork: its Deployment (baseline copy + customizations) and the Services that front it.

The isolation rule (DESIGN invariant 2) is enforced here: every pod label some baseline Service selects on gets a
sandbox-specific value, and the result is checked against every Service in the namespace, after the user's
patch, so no baseline Service can ever select a fork's pods.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from meshgen.baseline.model import DEPLOYMENT, Baseline, Resource, pod_labels, selects, service_fqdn
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
from meshgen.plan import pods
from meshgen.plan.model import Fork, ForkService, Host, ServicePort
from meshgen.plan.patching import PatchFailed, apply_patch
from meshgen.spec import models as spec
from meshgen.spec.names import DNS_LABEL_MAX, fit_name

ENV_SANDBOX = "MESHGEN_SANDBOX_NAME"
ENV_ROUTING_KEY = "MESHGEN_ROUTING_KEY"

# Metadata the API server owns or that would make other tools claim the fork; never copied from the baseline.
_SERVER_METADATA = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields",
                    "ownerReferences", "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds", "finalizers")


def find_workload(baseline: Baseline, ref: spec.WorkloadRef, where: Location) -> Resource:
    """The baseline Deployment ``ref`` names, or an error suggesting what the user may have meant."""
    found = baseline.get(DEPLOYMENT, ref.namespace, ref.name)
    if found is not None:
        return found
    names = baseline.names_of(DEPLOYMENT, ref.namespace)
    close = difflib.get_close_matches(ref.name, names, n=3)
    if close:
        fix = f"did you mean {', '.join(close)}?"
    elif names:
        fix = f"Deployments in namespace {ref.namespace}: {', '.join(names[:10])}"
    else:
        fix = f"the baseline has no Deployments in namespace {ref.namespace}; check --baseline and the namespace"
    raise InvalidInput.one(where, f"{ref} is not in the baseline", fix)


def build_fork(
    baseline: Baseline,
    sandbox: spec.Sandbox,
    routing_key: str,
    index: int,
    where: Location,
    cluster_domain: str,
    hosts: Mapping[str, Host] | None = None,
) -> Fork:
    """Derive the fork of ``sandbox.spec.forks[index]``, reached with ``routing_key`` (the sandbox's key, computed
    once by the caller). ``where`` locates that entry for errors; ``hosts`` are the baseline's hosts by fqdn, when
    the caller has them already."""
    fork_spec = sandbox.spec.forks[index]
    ref = fork_spec.fork_of
    original = find_workload(baseline, ref, where.at("forkOf"))
    name = fit_name(original.name, sandbox.name)
    labels = fork_pod_labels(baseline, original, sandbox.name)
    selector = _fork_selector(original, labels)

    body = _copy_deployment(original, name, routing_key, labels, selector)
    _customize(body, sandbox.name, routing_key, fork_spec.customizations, where.at("customizations"))
    if fork_spec.customizations.patch is not None:
        patch = fork_spec.customizations.patch
        try:
            body = apply_patch(body, patch.type, patch.value)
        except PatchFailed as exc:
            raise InvalidInput.one(where.at("customizations", "patch", "value"), str(exc)) from None
        pods.check_fork(body, original, where.at("customizations", "patch"), patch.value)
        _check_patched(body, original, name, selector, where.at("customizations", "patch"))
    _check_isolated(baseline, original, body, where)

    services = tuple(
        _fork_service(svc, sandbox.name, selector, cluster_domain, ref, hosts or {}) for svc in
        baseline.services_fronting(original)
    )
    return Fork(sandbox.name, routing_key, ref, name, body, services)


def fork_pod_labels(baseline: Baseline, original: Resource, sandbox: str) -> dict[str, str]:
    """The fork's pod labels: the original's, with every key a Service selects on made sandbox-specific."""
    keys = baseline.selector_keys(original.namespace)
    labels = {k: (_label_value(v, sandbox) if k in keys else v) for k, v in pod_labels(original).items()}
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


def _copy_deployment(
    original: Resource, name: str, routing_key: str, labels: dict[str, str], selector: dict[str, str]
) -> JsonObject:
    body: JsonObject = {k: clone(v) for k, v in original.body.items() if k not in ("metadata", "status")}
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
    spec_ = body["spec"]
    spec_["replicas"] = 1
    spec_["selector"] = {"matchLabels": dict(selector)}
    template = spec_["template"]
    template_meta = template.setdefault("metadata", {})
    for key in _SERVER_METADATA:
        template_meta.pop(key, None)
    template_meta["labels"] = dict(labels)
    return body


def _containers(body: JsonObject) -> list[dict[str, Any]]:
    pod = body["spec"]["template"]["spec"]
    return [c for key in ("containers", "initContainers") for c in pod.get(key) or [] if isinstance(c, dict)]


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


def _customize(body: JsonObject, sandbox: str, routing_key: str, custom: spec.Customizations,
               where: Location) -> None:
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
    # The sandbox's own identity, so a fork can tag callbacks with its key (a downward API for sandboxes).
    for container in body["spec"]["template"]["spec"]["containers"]:
        existing = {e.get("name") for e in container.get("env") or []}
        for name, value in ((ENV_SANDBOX, sandbox), (ENV_ROUTING_KEY, routing_key)):
            if name not in existing:
                _set_env(container, {"name": name, "value": value})


def _set_env(container: dict[str, Any], var: dict[str, Any]) -> None:
    env = container.setdefault("env", [])
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
    hosts: Mapping[str, Host],
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
    return ForkService(baseline_host, fork_host, body)


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


"""What the apiserver (and the kubelet) require of a fork's workload, checked offline before anything is written.

A fork is the baseline's workload after customizations and the user's patch, and a patch can produce anything:
``containers: null``, ``replicas: "many"``, a container without an image, an env entry with both ``value`` and
``valueFrom``, a label the apiserver refuses. Each of those used to reach the cluster as a raw 422 (or a pod that
never pulls); here each is a finding with the field path inside the workload, what is wrong and how to fix it.
The rules are the apiserver's own (Kubernetes API validation of Deployments and pod templates), for the fields a
workload's pods are made from; the kind does not matter (Deployment, StatefulSet, Argo Rollout: ``spec.replicas``
and ``spec.template`` alike).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from meshgen.baseline.model import Resource
from meshgen.errors import FieldPath, InvalidInput, Location, Problem, format_path
from meshgen.spec import images, names

# The sources an env entry's valueFrom may name, exactly one of them (core/v1 EnvVarSource).
_ENV_SOURCES = frozenset({"fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef", "fileKeyRef"})
_CONTAINER_LISTS = ("containers", "initContainers")


@dataclass(frozen=True)
class Finding:
    """One thing the apiserver would refuse: where in the workload, what, and how to fix it."""

    path: FieldPath
    message: str
    fix: str


def check_fork(workload: Any, original: Resource, where: Location, patch: Any = None) -> None:
    """Raise :class:`InvalidInput` with every finding in a fork's patched ``workload``. ``where`` locates the patch
    that made it (``patch``: its value); a finding is located at the deepest field of the patch on its path, and
    one the original has too (same path, same message) is the baseline's, located there."""
    findings = workload_findings(workload)
    if not findings:
        return
    inherited = set(workload_findings(original.body))
    problems = []
    for finding in findings:
        if finding in inherited:
            problems.append(Problem(original.at(*finding.path) or where, f"{original.key}: {finding.message}",
                                    finding.fix))
        else:
            shown = format_path(finding.path) or "the workload"
            problems.append(Problem(where.at("value", *_within(patch, finding.path)),
                                    f"the patched workload's {shown}: {finding.message}", finding.fix))
    raise InvalidInput(problems)


def _within(patch: Any, path: FieldPath) -> FieldPath:
    """The longest start of ``path`` that names fields of a (merge or strategic) patch: where the patch wrote
    what the finding is about. List positions of a strategic patch differ from the result's, so it stops there."""
    found: list[str | int] = []
    for part in path:
        if not (isinstance(part, str) and isinstance(patch, dict) and part in patch):
            break
        found.append(part)
        patch = patch[part]
    return tuple(found)


def workload_findings(workload: Any) -> list[Finding]:
    """Everything wrong with a workload's replicas, labels and pod template, in field order."""
    if not isinstance(workload, dict):
        return [Finding((), "the workload is not an object", "patch fields of the workload, not the whole of it")]
    return list(_workload(workload))


def _workload(body: dict[str, Any]) -> Iterator[Finding]:
    yield from _metadata(body.get("metadata"), ("metadata",))
    spec = body.get("spec")
    if not isinstance(spec, dict):
        yield Finding(("spec",), "spec is missing or not an object", "keep the workload's spec")
        return
    replicas = spec.get("replicas")
    if replicas is not None and (isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0):
        yield Finding(("spec", "replicas"), f"replicas must be a whole number of at least 0 (got {replicas!r})",
                      "set replicas: 1 (or leave it out: a fork runs 1)")
    selector = spec.get("selector")
    if isinstance(selector, dict):
        yield from _labels(selector.get("matchLabels"), ("spec", "selector", "matchLabels"))
    template = spec.get("template")
    if not isinstance(template, dict):
        yield Finding(("spec", "template"), "the pod template is missing or not an object",
                      "keep spec.template; patch fields inside it")
        return
    yield from _metadata(template.get("metadata"), ("spec", "template", "metadata"))
    pod = template.get("spec")
    if not isinstance(pod, dict):
        yield Finding(("spec", "template", "spec"), "the pod spec is missing or not an object",
                      "keep spec.template.spec; patch fields inside it")
        return
    yield from _pod(pod, ("spec", "template", "spec"))


def _metadata(meta: Any, path: FieldPath) -> Iterator[Finding]:
    if meta is None:
        return
    if not isinstance(meta, dict):
        yield Finding(path, "metadata is not an object", "metadata holds labels and annotations")
        return
    yield from _labels(meta.get("labels"), (*path, "labels"))
    yield from _labels(meta.get("annotations"), (*path, "annotations"), "annotation")


def _labels(labels: Any, path: FieldPath, what: str = "label") -> Iterator[Finding]:
    """Labels (or annotations: ``what``): a mapping of qualified-name keys to strings (label values: valid ones)."""
    if labels is None:
        return
    if not isinstance(labels, dict):
        yield Finding(path, f"{what}s must be a mapping of strings", "key: value")
        return
    for key, value in labels.items():
        problem = names.label_key_problem(str(key), f"{what} key")
        if problem:
            yield Finding((*path, key), problem, "use a key like app or example.com/team")
        if not isinstance(value, str):
            yield Finding((*path, key), f"{'a' if what == 'label' else 'an'} {what} value must be a string "
                          f"(got {value!r})", "quote the value")
            continue
        problem = names.label_value_problem(value) if what == "label" else None
        if problem:
            yield Finding((*path, key), problem, "shorten the value, or use only A-Z a-z 0-9 - _ .")


def _pod(pod: dict[str, Any], path: FieldPath) -> Iterator[Finding]:
    containers = pod.get("containers")
    if not isinstance(containers, list) or not containers:
        yield Finding((*path, "containers"), "a pod needs at least one container "
                      f"(got {'none' if not containers else repr(containers)[:40]})",
                      "do not remove or empty containers in the patch")
    seen: dict[str, FieldPath] = {}
    for key in _CONTAINER_LISTS:
        items = pod.get(key)
        if items is None or (key == "containers" and not isinstance(items, list)):
            continue
        if not isinstance(items, list):
            yield Finding((*path, key), f"{key} must be a list of containers", f"{key}: [{{name, image}}]")
            continue
        for i, container in enumerate(items):
            yield from _container(container, (*path, key, i), seen)
    if pod.get("ephemeralContainers"):
        yield Finding((*path, "ephemeralContainers"), "a pod template cannot have ephemeral containers (the "
                      "apiserver refuses them; they are added to running pods with kubectl debug)",
                      "remove ephemeralContainers from the patch")
    volumes = pod.get("volumes")
    for i, volume in enumerate(volumes if isinstance(volumes, list) else []):
        source = volume.get("image") if isinstance(volume, dict) else None
        if isinstance(source, dict):
            reference = source.get("reference")
            problem = images.reference_problem(reference) if isinstance(reference, str) else (
                "an image volume needs reference: <image>")
            if problem:
                yield Finding((*path, "volumes", i, "image", "reference"), problem,
                              "use an image reference like registry.example.com/team/data:1")


def _container(container: Any, path: FieldPath, seen: dict[str, FieldPath]) -> Iterator[Finding]:
    if not isinstance(container, dict):
        yield Finding(path, "a container must be an object with name and image", "{name: app, image: ...}")
        return
    name = container.get("name")
    problem = names.dns_label_problem(name) if isinstance(name, str) else "a container needs a name"
    if problem:
        yield Finding((*path, "name"), problem, "give every container a DNS-label name")
    elif isinstance(name, str) and name in seen:
        yield Finding((*path, "name"), f"container name {name!r} is used twice", "give each container its own name")
    elif isinstance(name, str):
        seen[name] = path
    image = container.get("image")
    problem = images.reference_problem(image) if isinstance(image, str) else "a container needs an image"
    if problem:
        yield Finding((*path, "image"), problem, "set image to a reference like registry.example.com/team/app:1.2")
    env = container.get("env")
    if env is None:
        return
    if not isinstance(env, list):
        yield Finding((*path, "env"), "env must be a list of {name, value} entries", "env: [{name: X, value: y}]")
        return
    for i, entry in enumerate(env):
        yield from _env(entry, (*path, "env", i))


def _env(entry: Any, path: FieldPath) -> Iterator[Finding]:
    # Values are never quoted: they may be credentials.
    if not isinstance(entry, dict):
        yield Finding(path, "an env entry must be an object {name, value} or {name, valueFrom}", "{name: X, value: y}")
        return
    name = entry.get("name")
    if not isinstance(name, str) or not name or "=" in name or not name.isascii() or not name.isprintable():
        yield Finding((*path, "name"), "an env entry needs a name of printable ASCII characters other than '='",
                      "name it like MY_SETTING")
    value, source = entry.get("value"), entry.get("valueFrom")
    if value is not None and not isinstance(value, str):
        yield Finding((*path, "value"), "an env value must be a string", "quote the value")
    if value and source is not None:
        yield Finding(path, "an env entry sets both value and valueFrom", "keep one of value and valueFrom")
    if source is not None:
        named = sorted(source) if isinstance(source, Mapping) else []
        if len(named) != 1 or named[0] not in _ENV_SOURCES:
            yield Finding((*path, "valueFrom"), "valueFrom must name exactly one of "
                          f"{', '.join(sorted(_ENV_SOURCES))}", "keep one source in valueFrom")

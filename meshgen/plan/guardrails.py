"""Guardrails: the limits a MeshPolicy sets on sandboxes (and, for ``requiredLabels``, route groups), checked
while planning, before anything is written.

Every violation names the rule (``guardrail maxTTL``), points at the offending field of the offending spec, and
says what the policy allows, so the author of a sandbox can fix it without reading the policy.

The messages are made by the functions below and nowhere else: the ValidatingAdmissionPolicy ``meshgen install``
writes (:mod:`meshgen.kube.admission`) builds its CEL messages from the same functions, so a violation reads the
same whether meshgen or the API server refuses it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from meshgen.baseline.model import Baseline
from meshgen.errors import Location, Problem
from meshgen.plan.model import Claim, Fork
from meshgen.spec import images
from meshgen.spec.models import Guardrails, MeshPolicy, RouteGroup, Sandbox, WorkloadRef

Where = Callable[[str, str], Location]
PREFIX = "guardrail "


def check(
    policy: MeshPolicy,
    sandboxes: Sequence[Sandbox],
    forks: Sequence[Fork],
    claims: Iterable[Claim],
    baseline: Baseline,
    where: Where,
    groups: Sequence[RouteGroup] = (),
) -> list[Problem]:
    """Every guardrail violation among ``sandboxes`` (and ``groups``: a route group is owned, so it carries the
    required labels too; the other rules concern what only sandboxes hold) and what was derived from them."""
    rules = policy.spec.guardrails
    name = policy.metadata.name
    by_workload = {(f.sandbox, f.workload): f for f in forks}
    problems: list[Problem] = []
    for group in groups:
        problems.extend(_labels(rules, name, group, where("RouteGroup", group.name)))
    for sandbox in sandboxes:
        origin = where("Sandbox", sandbox.name)
        problems.extend(_labels(rules, name, sandbox, origin))
        problems.extend(_ttl(rules, name, sandbox, origin))
        problems.extend(_namespaces(rules, name, sandbox, origin))
        problems.extend(_registries(rules, name, sandbox, origin, by_workload, baseline))
    problems.extend(_per_host(rules, name, claims, where))
    return problems


def _rule(rule: str, policy: str, message: str) -> str:
    return f"{PREFIX}{rule} (MeshPolicy {policy}): {message}"


# -- the messages (shared with the admission policy) ----------------------------------------------------------

def missing_labels_message(policy: str, kind: str, name: str, missing: str) -> str:
    """``kind``: ``sandbox`` or ``route group``; ``missing``: the label keys, joined with ", "."""
    return _rule("requiredLabels", policy, f"{kind} {name} lacks label(s) {missing}")


def kind_word(kind: str) -> str:
    """How a message names a kind of spec: ``sandbox``, ``route group``."""
    return "route group" if kind == "RouteGroup" else "sandbox"


def ttl_missing_message(policy: str) -> str:
    return _rule("maxTTL", policy, "a sandbox must set spec.ttl")


def ttl_too_long_message(policy: str, duration: str, limit: str) -> str:
    return _rule("maxTTL", policy, f"ttl {duration} is longer than {limit}")


def denied_namespace_message(policy: str, namespace: str) -> str:
    return _rule("deniedNamespaces", policy, f"namespace {namespace} is denied")


def namespace_not_allowed_message(policy: str, namespace: str, allowed: Sequence[str]) -> str:
    return _rule("allowedNamespaces", policy, f"namespace {namespace} is not one of: {', '.join(allowed)}")


def registry_message(policy: str, image: str, allowed: Sequence[str]) -> str:
    return _rule("allowedRegistries", policy, f"image {image} is not from an allowed registry ({', '.join(allowed)})")


# -- the checks -----------------------------------------------------------------------------------------------

def _labels(rules: Guardrails, policy: str, spec: Sandbox | RouteGroup, origin: Location) -> list[Problem]:
    missing = [k for k in rules.required_labels if k not in spec.metadata.labels]
    if not missing:
        return []
    return [Problem(origin.at("metadata", "labels"),
                    missing_labels_message(policy, kind_word(spec.kind), spec.name, ", ".join(missing)),
                    f"add {', '.join(f'{k}: <value>' for k in missing)} under metadata.labels")]


def _ttl(rules: Guardrails, policy: str, sandbox: Sandbox, origin: Location) -> list[Problem]:
    limit = rules.max_ttl_seconds
    if limit is None or rules.max_ttl is None:
        return []
    ttl = sandbox.spec.ttl
    if ttl is None:
        return [Problem(origin.at("spec"), ttl_missing_message(policy),
                        f"add ttl: {{duration: {rules.max_ttl}}} (or shorter) under spec")]
    if ttl.seconds > limit:
        return [Problem(origin.at("spec", "ttl", "duration"), ttl_too_long_message(policy, ttl.duration, rules.max_ttl),
                        f"use a duration of at most {rules.max_ttl}")]
    return []


def _namespace_problem(rules: Guardrails, policy: str, ref: WorkloadRef) -> str | None:
    if ref.namespace in rules.denied_namespaces:
        return denied_namespace_message(policy, ref.namespace)
    if rules.allowed_namespaces and ref.namespace not in rules.allowed_namespaces:
        return namespace_not_allowed_message(policy, ref.namespace, rules.allowed_namespaces)
    return None


def _namespaces(rules: Guardrails, policy: str, sandbox: Sandbox, origin: Location) -> list[Problem]:
    problems = []
    refs = [(("forks", i, "forkOf"), f.fork_of) for i, f in enumerate(sandbox.spec.forks)]
    refs += [(("virtual", i, "workload"), v.workload) for i, v in enumerate(sandbox.spec.virtual)]
    for path, ref in refs:
        message = _namespace_problem(rules, policy, ref)
        if message:
            problems.append(Problem(origin.at("spec", *path, "namespace"), message,
                                    "sandboxes may only fork workloads in namespaces the policy allows"))
    return problems


def image_allowed(rules: Guardrails, image: str) -> bool:
    """Whether ``image`` comes from a registry ``allowedRegistries`` lists, matched on reference boundaries.

    This is the one rule, written so that a CEL expression (the admission policy) can state it as it is. With
    ``I`` the image normalized (:func:`meshgen.spec.images.normalized`: Docker Hub spelled out) and ``E`` an entry
    without its trailing ``/`` (grammar: :data:`meshgen.spec.images.REGISTRY_PATTERN`, ``host[:port][/path]``),
    ``I`` is allowed by ``E`` iff::

        I.startsWith(E + "/")                                       // E's registry (and path), then a path
        || (E.contains("/") && (I == E || I.startsWith(E + ":") || I.startsWith(E + "@")))
                                                                    // E names the repository itself

    So ``registry.example.com`` admits ``registry.example.com/x:1`` but neither
    ``registry.example.com.evil.io/x:1`` nor ``registry.example.com:5000/x:1`` (another host, another port), and
    ``registry.example.com/team`` admits ``registry.example.com/team/app`` and ``registry.example.com/team:1``,
    never ``registry.example.com/teamx/app``. An empty list allows every image. Comparison is exact (case as
    written); an image that is not a valid reference is never allowed."""
    if not rules.allowed_registries:
        return True
    if images.reference_problem(image) is not None:
        return False
    full = images.normalized(image)
    return any(registry_admits(entry, full) for entry in rules.allowed_registries)


def registry_admits(entry: str, image: str) -> bool:
    """Whether the allowedRegistries ``entry`` admits the normalized ``image`` (the rule of :func:`image_allowed`)."""
    base = entry.rstrip("/")
    if image.startswith(base + "/"):
        return True
    return "/" in base and (image == base or image.startswith((base + ":", base + "@")))


def _registry_problem(rules: Guardrails, policy: str, image: str) -> str:
    return registry_message(policy, image, rules.allowed_registries)


def _registries(rules: Guardrails, policy: str, sandbox: Sandbox, origin: Location,
                forks: dict[tuple[str, WorkloadRef], Fork], baseline: Baseline) -> list[Problem]:
    """Images set in ``customizations.images``, and any a patch brings in, must come from allowed registries."""
    if not rules.allowed_registries:
        return []
    problems = []
    for i, fork_spec in enumerate(sandbox.spec.forks):
        where = origin.at("spec", "forks", i, "customizations")
        custom = fork_spec.customizations
        for j, image in enumerate(c.image for c in custom.images):
            if not image_allowed(rules, image):
                problems.append(Problem(where.at("images", j, "image"), _registry_problem(rules, policy, image),
                                        "push the image to an allowed registry"))
        fork = forks.get((sandbox.name, fork_spec.fork_of))
        original = baseline.get(fork_spec.fork_of.kind, fork_spec.fork_of.namespace, fork_spec.fork_of.name)
        if fork is None or original is None or custom.patch is None:
            continue
        introduced = pod_images(fork.body) - pod_images({"spec": {"template": baseline.template(original)}}) - {
            c.image for c in custom.images}
        for image in sorted(introduced):
            if not image_allowed(rules, image):
                problems.append(Problem(where.at("patch"), _registry_problem(rules, policy, image),
                                        "the patch adds this image; push it to an allowed registry"))
    return problems


def pod_images(workload: dict[str, Any]) -> set[str]:
    """Every image a workload's pods would pull: containers, init and ephemeral containers, and image volumes
    (``volumes[].image.reference``)."""
    spec = workload.get("spec")
    template = spec.get("template") if isinstance(spec, dict) else None
    pod = template.get("spec") if isinstance(template, dict) else None
    if not isinstance(pod, dict):
        return set()
    found = set()
    for key in ("containers", "initContainers", "ephemeralContainers"):
        items = pod.get(key)
        for container in items if isinstance(items, list) else []:
            if isinstance(container, dict) and container.get("image"):
                found.add(str(container["image"]))
    volumes = pod.get("volumes")
    for volume in volumes if isinstance(volumes, list) else []:
        source = volume.get("image") if isinstance(volume, dict) else None
        if isinstance(source, dict) and source.get("reference"):
            found.add(str(source["reference"]))
    return found


def _per_host(rules: Guardrails, policy: str, claims: Iterable[Claim], where: Where) -> list[Problem]:
    limit = rules.max_sandboxes_per_host
    if limit is None:
        return []
    # Claims come senior sandboxes first: the junior ones beyond the limit are the ones in violation.
    by_host: dict[str, dict[str, None]] = {}
    for claim in claims:
        if not claim.is_virtual:
            by_host.setdefault(claim.host, {})[claim.sandbox] = None
    problems = []
    for host, senior_first in sorted(by_host.items()):
        if len(senior_first) <= limit:
            continue
        ordered = sorted(senior_first)
        for extra in list(senior_first)[limit:]:
            problems.append(Problem(
                where("Sandbox", extra).at("spec", "forks"),
                _rule("maxSandboxesPerHost", policy,
                      f"{len(ordered)} sandboxes fork {host} ({', '.join(ordered)}); at most {limit} may"),
                "delete a sandbox on this host (meshgen delete NAME), or wait for one to expire",
            ))
    return problems

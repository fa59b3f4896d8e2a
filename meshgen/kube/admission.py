"""The guardrails as ValidatingAdmissionPolicies: the API server itself refuses a violating Sandbox or RouteGroup,
however it is written (``kubectl apply`` as much as ``meshgen apply``).

Generated from the stored MeshPolicy by ``meshgen install`` (admissionregistration.k8s.io/v1, CEL, GA since
Kubernetes 1.30; no webhook server). What CEL can decide from the Sandbox alone is here: allowed and denied
namespaces, requiredLabels, maxTTL, allowedRegistries for ``customizations.images``. What needs more than the
object (images a patch adds: the baseline Deployment; maxSandboxesPerHost: the other sandboxes) stays in meshgen's
own check. A RouteGroup carries only ``requiredLabels`` (the rest concern what only sandboxes hold), in a policy of
its own: CEL is type-checked against each kind's schema, and a RouteGroup has no ``forks``. Every message is built
by the functions of :mod:`meshgen.plan.guardrails` that meshgen's check uses, turned into a CEL
``messageExpression``, so both say the same thing.

A policy cannot tell when the API server starts enforcing it (its status is written by a controller a bare
control plane lacks), so one validation of each refuses a *probe*: an object of its kind annotated with this
policy's hash. :func:`wait_enforced` sends the probes as server-side dry runs until both are refused.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from meshgen.documents import JsonObject
from meshgen.errors import ClusterError
from meshgen.kube import kinds
from meshgen.kube.client import Client, Invalid
from meshgen.ownership import LABEL_INDEXED
from meshgen.plan import guardrails
from meshgen.spec import images
from meshgen.spec.models import API_VERSION, Guardrails, MeshPolicy

NAME = "meshgen-guardrails"
ROUTE_GROUP_NAME = "meshgen-guardrails-route-groups"
PROBE_ANNOTATION = "meshgen.dev/admission-probe"
ADMISSION_V1 = "admissionregistration.k8s.io/v1"
_DURATION = r"^(?:[0-9]+w)?(?:[0-9]+d)?(?:[0-9]+h)?(?:[0-9]+m)?(?:[0-9]+s)?$"
_UNIT_SECONDS = (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
_PLACEHOLDER = re.compile("\u27e6([0-9]+)\u27e7")  # ⟦n⟧: never in a policy name, a namespace or a label key


@dataclass(frozen=True)
class Cel:
    """A CEL expression, as an argument to a message function (everything else is a literal)."""

    expression: str


def literal(text: str) -> str:
    """A CEL string literal (CEL's escapes are a superset of JSON's)."""
    return json.dumps(text)


def literal_list(items: Sequence[str]) -> str:
    return "[" + ", ".join(literal(i) for i in items) + "]"


def message_expression(build: Callable[..., str], *args: str | Cel | Sequence[str]) -> str:
    """The CEL string expression that evaluates to ``build(*args)``, each :class:`Cel` argument evaluated by the
    API server: the message function runs once with placeholders, which are then replaced by the expressions."""
    expressions = [a.expression for a in args if isinstance(a, Cel)]
    placeholders = iter(range(len(expressions)))
    text = build(*(f"\u27e6{next(placeholders)}\u27e7" if isinstance(a, Cel) else a for a in args))
    parts: list[str] = []
    position = 0
    for match in _PLACEHOLDER.finditer(text):
        if match.start() > position:
            parts.append(literal(text[position:match.start()]))
        parts.append(f"({expressions[int(match.group(1))]})")
        position = match.end()
    if position < len(text):
        parts.append(literal(text[position:]))
    return " + ".join(parts)


def policy_hash(policy: MeshPolicy) -> str:
    """Names this version of the admission policy (what the probe checks)."""
    text = json.dumps(policy.model_dump(by_alias=True, mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# -- the validations ---------------------------------------------------------------------------------------------

_FORKS = "variables.forks"
_VIRTUAL = "variables.virtual"
_IMAGES = "variables.images"
_NO_LABEL = "(!has(object.metadata.labels) || !(k in object.metadata.labels))"


def _validation(expression: str, message: str, reason: str = "Invalid") -> JsonObject:
    return {"expression": expression, "messageExpression": message, "reason": reason}


def _namespaces(policy: str, rules: Guardrails) -> list[JsonObject]:
    out = []
    for refs, field in ((_FORKS, "forkOf"), (_VIRTUAL, "workload")):
        if rules.denied_namespaces:
            denied = literal_list(rules.denied_namespaces)
            bad = f"{refs}.filter(r, r.{field}.namespace in {denied})[0].{field}.namespace"
            out.append(_validation(f"{refs}.all(r, !(r.{field}.namespace in {denied}))",
                                   message_expression(guardrails.denied_namespace_message, policy, Cel(bad))))
        if rules.allowed_namespaces:
            allowed = literal_list(rules.allowed_namespaces)
            # Denied wins, as in meshgen's check: a denied namespace gets the denied message only.
            outside = f"!(r.{field}.namespace in {allowed}) && !(r.{field}.namespace in " \
                      f"{literal_list(rules.denied_namespaces)})"
            bad = f"{refs}.filter(r, {outside})[0].{field}.namespace"
            out.append(_validation(f"!{refs}.exists(r, {outside})",
                                   message_expression(guardrails.namespace_not_allowed_message, policy, Cel(bad),
                                                      rules.allowed_namespaces)))
    return out


def _labels(policy: str, rules: Guardrails, kind: kinds.Kind) -> list[JsonObject]:
    if not rules.required_labels:
        return []
    required = literal_list(rules.required_labels)
    missing = f"{required}.filter(k, {_NO_LABEL}).join(', ')"
    return [_validation(f"!{required}.exists(k, {_NO_LABEL})",
                        message_expression(guardrails.missing_labels_message, policy, guardrails.kind_word(kind.kind),
                                           Cel("object.metadata.name"), Cel(missing)))]


def seconds_expression(duration: str) -> str:
    """CEL for the seconds in a duration (``1d12h``), for one that matches the duration grammar and has no
    number of ten digits or more (so the sum stays far inside int64)."""
    terms = []
    for unit, factor in _UNIT_SECONDS:
        part = f"{duration}.find('[0-9]+{unit}')"
        terms.append(f"({part} == '' ? 0 : int({part}.replace('{unit}', '')) * {factor})")
    return " + ".join(terms)


def _ttl(policy: str, rules: Guardrails) -> list[JsonObject]:
    limit, written = rules.max_ttl_seconds, rules.max_ttl
    if limit is None or written is None:
        return []
    duration = "variables.ttl"
    # A malformed duration is not maxTTL's business (meshgen's check names it); one with a ten-digit number is
    # at least 31 years long.
    too_long = (f"{duration}.matches({literal(_DURATION)}) && ({duration}.matches('[0-9]{{10}}') || "
                f"{seconds_expression(duration)} > {limit})")
    return [
        _validation(f"{duration} != ''", literal(guardrails.ttl_missing_message(policy))),
        _validation(f"!({too_long})", message_expression(guardrails.ttl_too_long_message, policy, Cel(duration),
                                                         written)),
    ]


def normalized_expression(image: str) -> str:
    """CEL for an image reference with Docker Hub's implicit registry spelled out, as
    :func:`meshgen.plan.guardrails.image_allowed` normalizes it: the first component is a registry if it holds a
    ``.`` or ``:``, is ``localhost`` or is not all lower case; without one (or with ``docker.io``,
    ``index.docker.io``) the image is ``docker.io/<rest>``, or ``docker.io/library/<rest>`` for a one-part name."""
    first = f"{image}.find('^[^/]*')"
    has_registry = (f"({image}.contains('/') && ({first}.contains('.') || {first}.contains(':') || "
                    f"{first} == 'localhost' || {first} != {first}.lowerAscii()))")
    on_hub = f"({first} == 'docker.io' || {first} == 'index.docker.io')"
    rest = f"({has_registry} ? {image}.substring({first}.size() + 1) : {image})"
    return (f"(({has_registry} && !{on_hub}) ? {image} : ({rest}.contains('/') ? 'docker.io/' + {rest} : "
            f"'docker.io/library/' + {rest}))")


def allowed_expression(image: str, registries: Sequence[str]) -> str:
    """CEL: whether the image reference ``image`` (a CEL string) is from one of ``registries``, by the rule of
    :func:`meshgen.plan.guardrails.image_allowed`: a valid reference (:data:`meshgen.spec.images.REFERENCE_PATTERN`,
    RE2 as it is; its name's 255-character limit stays meshgen's) whose normalized form ``I``, with ``E`` an entry
    without its trailing ``/``, starts with ``E/``, or ``E`` names a repository (holds a ``/``) and ``I`` is ``E``
    or continues it with ``:`` (a tag) or ``@`` (a digest)."""
    full = normalized_expression(image)
    tests = []
    for entry in registries:
        base = entry.rstrip("/")
        tests.append(f"{full}.startsWith({literal(base + '/')})")
        if "/" in base:
            tests += [f"{full} == {literal(base)}", f"{full}.startsWith({literal(base + ':')})",
                      f"{full}.startsWith({literal(base + '@')})"]
    return f"{image}.matches({literal(images.REFERENCE_PATTERN)}) && ({' || '.join(tests)})"


def _registries(policy: str, rules: Guardrails) -> list[JsonObject]:
    if not rules.allowed_registries:
        return []
    allowed = allowed_expression("i", rules.allowed_registries)
    bad = f"{_IMAGES}.filter(i, !({allowed}))[0]"
    return [_validation(f"{_IMAGES}.all(i, {allowed})",
                        message_expression(guardrails.registry_message, policy, Cel(bad), rules.allowed_registries))]


_VARIABLES = [
    {"name": "forks", "expression": "has(object.spec.forks) && object.spec.forks != null ? object.spec.forks : []"},
    {"name": "virtual",
     "expression": "has(object.spec.virtual) && object.spec.virtual != null ? object.spec.virtual : []"},
    {"name": "ttl", "expression": "has(object.spec.ttl) && object.spec.ttl != null && has(object.spec.ttl.duration) "
                                  "? string(object.spec.ttl.duration) : ''"},
    # Every customization image, as one list (a fork without customizations has none).
    {"name": "images", "expression": "variables.forks.map(f, has(f.customizations) && f.customizations != null && "
                                     "has(f.customizations.images) && f.customizations.images != null ? "
                                     "f.customizations.images.map(c, string(c.image)) : []).flatten()"},
]


def _probe_validation(policy: MeshPolicy) -> JsonObject:
    probe = policy_hash(policy)
    annotation = f"object.metadata.annotations[{literal(PROBE_ANNOTATION)}]"
    probed = (f"has(object.metadata.annotations) && {literal(PROBE_ANNOTATION)} in object.metadata.annotations && "
              f"{annotation} == {literal(probe)}")
    return _validation(f"!({probed})", literal(probe_message(probe)))


def validations(policy: MeshPolicy, kind: kinds.Kind = kinds.SANDBOX) -> list[JsonObject]:
    """Every validation the policy's guardrails make of a Sandbox (or a RouteGroup), and the probe."""
    name, rules = policy.metadata.name, policy.spec.guardrails
    if kind == kinds.ROUTE_GROUP:
        return [*_labels(name, rules, kind), _probe_validation(policy)]
    return [
        *_namespaces(name, rules), *_labels(name, rules, kind), *_ttl(name, rules), *_registries(name, rules),
        _probe_validation(policy),
    ]


def probe_message(probe: str) -> str:
    return f"meshgen admission probe {probe}: this guardrails policy is enforced"


# Each admission policy: its name, the kind it admits, the CEL variables its validations use.
_POLICIES: tuple[tuple[str, kinds.Kind, list[JsonObject]], ...] = (
    (NAME, kinds.SANDBOX, _VARIABLES), (ROUTE_GROUP_NAME, kinds.ROUTE_GROUP, []))


def objects(policy: MeshPolicy) -> list[JsonObject]:
    """The ValidatingAdmissionPolicies for Sandboxes and for RouteGroups, each with its binding."""
    out: list[JsonObject] = []
    for name, kind, variables in _POLICIES:
        spec: JsonObject = {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": [kind.group], "apiVersions": [kind.version],
                "operations": ["CREATE", "UPDATE"], "resources": [kind.plural]}]},
        }
        if variables:
            spec["variables"] = variables
        spec["validations"] = validations(policy, kind)
        out.append({
            "apiVersion": ADMISSION_V1, "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "meshgen"},
                         "annotations": {"meshgen.dev/policy": policy.metadata.name,
                                         "meshgen.dev/policy-hash": policy_hash(policy)}},
            "spec": spec,
        })
        out.append({
            "apiVersion": ADMISSION_V1, "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "meshgen"}},
            "spec": {"policyName": name, "validationActions": ["Deny"]},
        })
    return out


def probe(policy: MeshPolicy, kind: kinds.Kind = kinds.SANDBOX) -> JsonObject:
    """The object of ``kind`` the admission policy of ``policy`` refuses, and nothing else would: it has every
    required label; a Sandbox probe has a one-second TTL, forks nothing and uses no image, a RouteGroup probe
    matches a label no sandbox has."""
    labels = {k: "probe" for k in policy.spec.guardrails.required_labels}
    spec: JsonObject = ({"ttl": {"duration": "1s"}} if kind == kinds.SANDBOX else
                        {"match": {"all": [{"label": {"key": PROBE_ANNOTATION, "value": "probe"}}]}})
    return {"apiVersion": API_VERSION, "kind": kind.kind,
            "metadata": {"name": "meshgen-admission-probe", "labels": labels,
                         "annotations": {PROBE_ANNOTATION: policy_hash(policy)}},
            "spec": spec}


def wait_enforced(client: Client, policy: MeshPolicy, timeout: float = 30.0) -> None:
    """Return once the API server refuses both probes (server-side dry runs: nothing is stored)."""
    expected = probe_message(policy_hash(policy))
    deadline = time.monotonic() + timeout
    for name, kind, _ in _POLICIES:
        while True:
            try:
                client.create(probe(policy, kind), dry_run=True)
            except Invalid as exc:
                if expected in str(exc):
                    break
            if time.monotonic() > deadline:
                raise ClusterError(f"the API server does not enforce ValidatingAdmissionPolicy {name} after "
                                   f"{timeout:.0f}s (is the admission plugin ValidatingAdmissionPolicy enabled?)")
            time.sleep(0.2)


# -- the index kept honest ----------------------------------------------------------------------------------------

INDEX_NAME = "meshgen-index"


def index_objects() -> list[JsonObject]:
    """The MutatingAdmissionPolicy (admissionregistration.k8s.io/v1, GA since Kubernetes 1.36) that unindexes a
    spec edited around meshgen, and its binding (:mod:`meshgen.kube.indexes`): an update of a Sandbox or RouteGroup
    that changes its spec and leaves ``meshgen.dev/indexed`` as it was loses that label. meshgen's own writes
    change the label with the spec (its value holds the spec's hash), so they pass as written; ``kubectl edit``
    or ``kubectl apply`` over a stored spec keep labels they do not mention, so the spec becomes one every
    command lists (``!meshgen.dev/indexed``) and re-indexes. The status subresource is not matched."""
    label = literal(LABEL_INDEXED)
    kept = (f"has(object.metadata.labels) && {label} in object.metadata.labels && "
            f"has(oldObject.metadata.labels) && {label} in oldObject.metadata.labels && "
            f"object.metadata.labels[{label}] == oldObject.metadata.labels[{label}]")
    spec = {
        "failurePolicy": "Fail",
        "reinvocationPolicy": "Never",
        "matchConstraints": {"resourceRules": [{
            "apiGroups": [kinds.SANDBOX.group], "apiVersions": [kinds.SANDBOX.version], "operations": ["UPDATE"],
            "resources": [kinds.SANDBOX.plural, kinds.ROUTE_GROUP.plural]}]},
        "matchConditions": [{"name": "spec-edited-around-meshgen",
                             "expression": f"{kept} && object.spec != oldObject.spec"}],
        "mutations": [{"patchType": "JSONPatch", "jsonPatch": {"expression": (
            f"[JSONPatch{{op: \"remove\", path: \"/metadata/labels/\" + jsonpatch.escapeKey({label})}}]")}}],
    }
    meta = {"name": INDEX_NAME, "labels": {"app.kubernetes.io/part-of": "meshgen"}}
    return [{"apiVersion": ADMISSION_V1, "kind": kinds.MUTATING_POLICY.kind, "metadata": meta, "spec": spec},
            {"apiVersion": ADMISSION_V1, "kind": kinds.MUTATING_BINDING.kind, "metadata": meta,
             "spec": {"policyName": INDEX_NAME}}]

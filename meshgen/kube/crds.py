"""meshgen's CustomResourceDefinitions (Sandbox, RouteGroup, MeshPolicy) and the RBAC of its two identities.

The CRD schemas are derived from the pydantic models, so the API server and ``meshgen validate`` agree on the
shape of a spec. They are made *structural* (what apiextensions/v1 requires): references inlined, ``Optional``
as ``nullable``, no ``default`` (the server must store exactly what the user wrote), free-form values
(``valueFrom``, ``patch.value``) as ``x-kubernetes-preserve-unknown-fields``. Checks pydantic runs in code
(DNS names, durations, routing keys) stay in meshgen: every write is validated locally first.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from meshgen import backends
from meshgen.documents import JsonObject
from meshgen.errors import ClusterError
from meshgen.kube import diffing, discovery, kinds
from meshgen.kube.client import Client, NotFound
from meshgen.kube.kinds import Ref
from meshgen.ownership import ANNOTATION_DESIRED_HASH
from meshgen.spec.models import DEFAULT_POLICY, MeshPolicy, MeshPolicySpec, RouteGroupSpec, SandboxSpec

_KEEP = ("description", "minLength", "maxLength", "minItems", "maxItems", "enum", "required", "minimum",
         "maximum")
PRESERVE = "x-kubernetes-preserve-unknown-fields"


def structural(schema: JsonObject, defs: JsonObject) -> JsonObject:
    """One pydantic JSON-schema node as a structural OpenAPI v3 schema node."""
    if "$ref" in schema:
        target = structural(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
        return {**target, **({"description": schema["description"]} if "description" in schema else {})}
    if "anyOf" in schema:
        options = [o for o in schema["anyOf"] if o.get("type") != "null"]
        nullable = len(options) < len(schema["anyOf"])
        # several shapes (a patch value: a mapping or a list of operations) -> free-form
        chosen: JsonObject = structural(options[0], defs) if len(options) == 1 else {PRESERVE: True}
        if nullable:
            chosen["nullable"] = True
        if "description" in schema:
            chosen["description"] = schema["description"]
        return chosen
    out: JsonObject = {k: schema[k] for k in _KEEP if k in schema}
    if "const" in schema:
        out["enum"] = [schema["const"]]
    kind = schema.get("type")
    if kind is not None:
        out["type"] = kind
    if kind == "object":
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        if properties:
            out["properties"] = {name: structural(p, defs) for name, p in properties.items()}
        elif isinstance(extra, dict) and extra:
            out["additionalProperties"] = structural(extra, defs)
        else:
            out[PRESERVE] = True
    elif kind == "array":
        out["items"] = structural(schema.get("items") or {}, defs) if schema.get("items") else {PRESERVE: True}
    elif kind is None and "enum" not in out:
        out[PRESERVE] = True
    return out


def spec_schema(model: type[BaseModel]) -> JsonObject:
    """The structural schema of a spec model (its body, ``spec``)."""
    schema = model.model_json_schema(by_alias=True)
    return structural(schema, schema.get("$defs", {}))


def definition(kind: kinds.Kind, model: type[BaseModel], columns: list[JsonObject], short: list[str],
               status: bool = True) -> JsonObject:
    """A cluster-scoped CRD (with a status subresource, unless ``status`` is false)."""
    root = {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema(model),
            **({"status": {"type": "object", PRESERVE: True}} if status else {}),
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{kind.plural}.{kind.group}", "labels": {"app.kubernetes.io/part-of": "meshgen"}},
        "spec": {
            "group": kind.group,
            "scope": "Cluster",
            "names": {"kind": kind.kind, "plural": kind.plural, "singular": kind.kind.lower(),
                      "listKind": f"{kind.kind}List", "shortNames": short, "categories": ["meshgen"]},
            "versions": [{
                "name": kind.version, "served": True, "storage": True,
                "subresources": {"status": {}} if status else {},
                "additionalPrinterColumns": columns,
                "schema": {"openAPIV3Schema": root},
            }],
        },
    }


def definitions() -> list[JsonObject]:
    """Every CRD meshgen needs, sorted by name."""
    age = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
    key = {"name": "Routing-Key", "type": "string", "jsonPath": ".status.routingKey"}
    reconciled = '.status.conditions[?(@.type=="Reconciled")]'
    status = [{"name": "Status", "type": "string", "jsonPath": f"{reconciled}.status"},
              {"name": "Reason", "type": "string", "jsonPath": f"{reconciled}.reason"}]
    header = {"name": "Routing-Header", "type": "string", "jsonPath": ".spec.routingHeader"}
    return [
        definition(kinds.MESH_POLICY, MeshPolicySpec, [header, age], ["mp"], status=False),
        definition(kinds.ROUTE_GROUP, RouteGroupSpec, [key, *status, age], ["rg"]),
        definition(kinds.SANDBOX, SandboxSpec, [key, *status, {"name": "TTL", "type": "string",
                                                                "jsonPath": ".spec.ttl.duration"}, age], ["sbx"]),
    ]


_VERBS_OWNED = ["get", "list", "create", "patch", "delete"]
CI_GROUP = "meshgen-appliers"
PLATFORM_GROUP = "meshgen-platform"


def _applier_rules(policy: MeshPolicy, every_backend: bool = False) -> list[dict[str, Any]]:
    """What ``meshgen apply|diff|delete|get|gc`` use: the stored specs and their status, the objects the policy's
    backend writes and edits (forks and their policy copies included; with ``every_backend``, what any backend
    does), reading the rest of the baseline (Argo Rollouts, the other backend's routing objects), and reading
    (never writing) the platform's MeshPolicy."""
    rules: list[dict[str, Any]] = [
        {"apiGroups": ["meshgen.dev"], "resources": ["sandboxes", "routegroups"], "verbs": _VERBS_OWNED},
        {"apiGroups": ["meshgen.dev"], "resources": ["sandboxes/status", "routegroups/status"], "verbs": ["update"]},
        {"apiGroups": ["meshgen.dev"], "resources": ["meshpolicies"], "verbs": ["list"]},
    ]
    written = backends.rendered_kinds() if every_backend else backends.of(policy).kinds
    rules += _by_group(written, _VERBS_OWNED)
    rules += _by_group([k for k in discovery.listed_kinds(policy) if k not in written], ["list"])
    return rules


def _by_group(found: Iterable[kinds.Kind], verbs: list[str]) -> list[dict[str, Any]]:
    """One rule per API group (in the order the groups first appear) for ``verbs`` on these kinds."""
    groups: dict[str, list[str]] = {}
    for kind in found:
        groups.setdefault(kind.group, []).append(kind.plural)
    return [{"apiGroups": [group], "resources": plurals, "verbs": list(verbs)} for group, plurals in groups.items()]


def _platform_rules(policy: MeshPolicy) -> list[dict[str, Any]]:
    """What ``meshgen install`` uses besides: the CRDs, the MeshPolicy, the admission policy and its binding
    (and, to reconcile every host after a policy change, everything an applier of any backend may do: a change of
    ``spec.backend`` removes the routes the old one wrote)."""
    rules = _applier_rules(policy, every_backend=True)
    rules[2] = {"apiGroups": ["meshgen.dev"], "resources": ["meshpolicies"], "verbs": _VERBS_OWNED}
    return [
        {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
         "verbs": ["get", "list", "create", "patch"]},
        {"apiGroups": ["admissionregistration.k8s.io"],
         "resources": ["validatingadmissionpolicies", "validatingadmissionpolicybindings",
                       "mutatingadmissionpolicies", "mutatingadmissionpolicybindings"],
         "verbs": ["get", "create", "patch"]},
        *rules,
    ]


def rbac(policy: MeshPolicy = DEFAULT_POLICY, subject_group: str = CI_GROUP,
         platform: bool = False) -> list[JsonObject]:
    """A ClusterRole with exactly what ``meshgen apply|diff|delete|get|gc`` use (the CI identity's), or with
    ``platform`` what ``meshgen install`` uses too (the platform's identity: the only one that writes the
    MeshPolicy), and a binding to a group.

    Reads are LISTs; ``get`` serves the re-read after a write conflict and ``meshgen get NAME``. With an edge
    token (ingress mode token), a Role in the Secret's namespace grants ``get`` on that one Secret by name:
    meshgen never lists Secrets."""
    name = "meshgen-platform" if platform else "meshgen-applier"
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": name}, "rules": _platform_rules(policy) if platform else _applier_rules(policy)}
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": name},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": subject_group}]}
    objects: list[JsonObject] = [role, binding]
    secret = policy.spec.ingress.token_secret
    if secret is not None:
        reader = f"{name}-edge-token-reader"
        objects.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                        "metadata": {"name": reader, "namespace": secret.namespace},
                        "rules": [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": [secret.name],
                                   "verbs": ["get"]}]})
        objects.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                        "metadata": {"name": reader, "namespace": secret.namespace},
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": reader},
                        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                                      "name": subject_group}]})
    return objects


def upsert(client: Client, body: JsonObject, dry_run: bool = False) -> str:
    """Create or update an object meshgen defines whole (a CRD, the admission policy), unless it already is
    what meshgen wants (the hash of its last desired form); one summary line."""
    annotations = {**(body["metadata"].get("annotations") or {}), ANNOTATION_DESIRED_HASH: diffing.desired_hash(body)}
    body = {**body, "metadata": {**body["metadata"], "annotations": annotations}}
    ref = Ref.of(body)
    try:
        live = client.get(ref)
    except NotFound:
        client.create(body, dry_run=dry_run)
        return f"{ref} created"
    if diffing.annotation(live, ANNOTATION_DESIRED_HASH) == annotations[ANNOTATION_DESIRED_HASH]:
        return f"{ref} unchanged"
    ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": live["metadata"]["resourceVersion"]},
           {"op": "replace", "path": "/spec", "value": body["spec"]},
           {"op": "add", "path": "/metadata/annotations", "value": annotations}]
    client.patch(ref, ops, dry_run=dry_run)
    return f"{ref} configured"


def install(client: Client, dry_run: bool = False, timeout: float = 60.0) -> list[str]:
    """Create or update meshgen's CRDs and wait until the API serves them; one summary line per CRD."""
    lines = [upsert(client, crd, dry_run) for crd in definitions()]
    if not dry_run:
        wait_established(client, [c["metadata"]["name"] for c in definitions()], timeout)
    return lines


def wait_established(client: Client, names: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = set(names)
    while True:
        for item in client.list(kinds.CRD).items:
            conditions = (item.get("status") or {}).get("conditions") or []
            if any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
                pending.discard(item["metadata"]["name"])
        if not pending:
            return
        if time.monotonic() > deadline:
            raise ClusterError(f"CRDs not established after {timeout:.0f}s: {', '.join(sorted(pending))}")
        time.sleep(0.2)

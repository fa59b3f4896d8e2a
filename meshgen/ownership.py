"""How meshgen marks what it owns. Shared by the planner (which creates), the backends (which render), the
baseline reader (which must not mistake meshgen's output for the baseline) and the reconciler (which may delete
only what carries these marks)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MANAGED_BY = "app.kubernetes.io/managed-by"
MESHGEN = "meshgen"
LABEL_SANDBOX = "meshgen.dev/sandbox"
LABEL_FORK_OF = "meshgen.dev/fork-of"
ANNOTATION_ROUTING_KEY = "meshgen.dev/routing-key"
ANNOTATION_FORK_OF = "meshgen.dev/fork-of"
ANNOTATION_SERVICE_OF = "meshgen.dev/service-of"
# On a fork's copy of a baseline policy (AuthorizationPolicy, NetworkPolicy...): the policy it copies.
ANNOTATION_POLICY_OF = "meshgen.dev/policy-of"
# On every routing object meshgen writes (a VirtualService, an HTTPRoute): the names of the routes meshgen added,
# in order.
ANNOTATION_ROUTES = "meshgen.dev/routes"
ROUTE_PREFIX = "meshgen-"
# Where each kind of routing object keeps its routes (named entries of a list in ``spec``): meshgen adds its own
# there, and removes only those.
ROUTE_LISTS: Mapping[str, str] = {"VirtualService": "http", "HTTPRoute": "rules", "GRPCRoute": "rules"}
# Written by the reconciler on every object it writes: the resourceVersion of the sandbox list the object was
# computed from (fencing: a writer never replaces or deletes an object computed from a newer list).
ANNOTATION_COMPUTED_FROM = "meshgen.dev/computed-from"
# On objects meshgen owns: a hash of what meshgen last wanted them to be (a no-op apply compares it, not the
# server-defaulted body).
ANNOTATION_DESIRED_HASH = "meshgen.dev/desired-hash"
# On stored Sandbox/RouteGroup objects: when their spec last changed (for ttl.offsetFrom: updatedAt).
ANNOTATION_UPDATED_AT = "meshgen.dev/updated-at"
# On stored Sandbox/RouteGroup objects: the labels a command selects them by (meshgen.kube.indexes). meshgen writes
# them with the spec; a spec may not set them.
LABEL_INDEXED = "meshgen.dev/indexed"
LABEL_ROUTING_KEY = "meshgen.dev/routing-key"
WORKLOAD_INDEX = "workload.meshgen.dev"  # one key per workload a sandbox claims: workload.meshgen.dev/<hash>
MATCH_INDEX = "match.meshgen.dev"  # one key per sandbox label a route group matches on: match.meshgen.dev/<hash>
# On every routing object meshgen writes or edits: the hosts its routes concern (bound and routed to), and the
# object's generation when meshgen wrote it; while that is still its generation, a command reads the object whole
# only if one of those hosts concerns it (meshgen.kube.sourcing).
ANNOTATION_HOSTS = "meshgen.dev/hosts"
ANNOTATION_HOSTS_GENERATION = "meshgen.dev/hosts-generation"
# On a user's routing object while it carries meshgen routes (with ANNOTATION_ROUTES): a label, so the users'
# objects meshgen has not edited, whose bodies are as small as the baseline, are listed apart from those it has,
# whose bodies hold a copy of routes per sandbox (meshgen.kube.sourcing).
LABEL_EDITED = "meshgen.dev/edited"


def is_index_label(key: str) -> bool:
    """Whether a label key is one of the index labels meshgen writes on stored specs."""
    return key in (LABEL_INDEXED, LABEL_ROUTING_KEY) or key.startswith((f"{WORKLOAD_INDEX}/", f"{MATCH_INDEX}/"))


def owner_labels(sandbox: str) -> dict[str, str]:
    """Labels on every object meshgen creates for one sandbox."""
    return {MANAGED_BY: MESHGEN, LABEL_SANDBOX: sandbox}


def is_owned(body: Mapping[str, Any]) -> bool:
    """Whether meshgen created this object (and so may change or delete it)."""
    labels = (body.get("metadata") or {}).get("labels") or {}
    return labels.get(MANAGED_BY) == MESHGEN


def meshgen_route_names(body: Mapping[str, Any]) -> frozenset[str]:
    """The names of the routes meshgen added to a VirtualService, from its annotation."""
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    listed = annotations.get(ANNOTATION_ROUTES) or ""
    return frozenset(n for n in listed.split(",") if n)


def without_meshgen_routes(body: Mapping[str, Any]) -> dict[str, Any]:
    """A user's routing object (:data:`ROUTE_LISTS`) as it was before meshgen edited it: meshgen's routes and
    annotation removed. Only routes both listed in the annotation and carrying the meshgen prefix are removed, so a
    user's own route can never be taken for meshgen's."""
    names = meshgen_route_names(body)
    out = dict(body)
    meta = dict(out.get("metadata") or {})
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != ANNOTATION_ROUTES}
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    out["metadata"] = meta
    spec = dict(out.get("spec") or {})
    field = ROUTE_LISTS.get(str(body.get("kind")), "http")
    if field in spec and names:
        spec[field] = [
            r for r in spec[field]
            if not (isinstance(r, dict) and r.get("name") in names and str(r.get("name")).startswith(ROUTE_PREFIX))
        ]
    out["spec"] = spec
    return out

"""Desired objects vs live objects -> changes (create, update, delete, noop).

What counts as "unchanged" decides whether a no-op apply makes zero writes:

- an object meshgen owns is unchanged when the hash of what meshgen wants (``meshgen.dev/desired-hash``, written
  with it) matches; the server's defaults (``imagePullPolicy``, ``clusterIP``...) never show up as changes, and a
  field meshgen stops setting is still noticed (the hash moves).
- a user's routing object (a VirtualService, an HTTPRoute) is unchanged when its spec equals the one meshgen
  computed from it and meshgen's annotation lists the same routes.

The fencing annotation (``meshgen.dev/computed-from``) never counts: writing it alone would be a useless write.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jsonpatch

from meshgen.baseline.stored import SERVER_METADATA
from meshgen.documents import JsonObject
from meshgen.errors import ClusterError
from meshgen.kube import kinds
from meshgen.kube.discovery import revision
from meshgen.kube.kinds import Ref
from meshgen.ownership import (
    ANNOTATION_COMPUTED_FROM,
    ANNOTATION_DESIRED_HASH,
    ANNOTATION_HOSTS,
    ANNOTATION_HOSTS_GENERATION,
    ANNOTATION_ROUTES,
    LABEL_EDITED,
    LABEL_SANDBOX,
    ROUTE_LISTS,
    is_owned,
    meshgen_route_names,
    without_meshgen_routes,
)

MESHGEN_ANNOTATION_PREFIX = "meshgen.dev/"
# Stored specs: meshgen writes them whole (labels, annotations, spec), like objects it owns.
SPEC_KINDS = ("Sandbox", "RouteGroup")
# Metadata only the server sets; dropped before showing an object.


_SELECTOR_IMMUTABLE = frozenset({"Deployment", "StatefulSet", "ReplicaSet", "DaemonSet"})


class Action(enum.StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


class ForeignObject(ClusterError):
    """An object with a name meshgen generates exists and meshgen does not own it: never overwritten."""


@dataclass(frozen=True)
class Change:
    """One write the reconciler wants: ``desired`` is the object after it (None for a delete)."""

    action: Action
    ref: Ref
    desired: JsonObject | None
    live: JsonObject | None

    @property
    def summary(self) -> str:
        """kubectl-style: ``deployment.apps/x -n ns created``, ``virtualservice... configured (1 route added)``."""
        verb = {Action.CREATE: "created", Action.UPDATE: "configured", Action.DELETE: "deleted"}[self.action]
        detail = route_delta(self.live, self.desired) if self.ref.kind in ROUTE_LISTS else ""
        return f"{self.ref} {verb}{detail}"

    def target(self) -> JsonObject | None:
        """The whole object as it should be after the write, live server metadata kept (for an update)."""
        if self.action is not Action.UPDATE:
            return self.desired
        assert self.live is not None and self.desired is not None
        return updated(self.live, self.desired)

    @property
    def sandbox(self) -> str:
        """The sandbox the object belongs to ("" for shared objects: VirtualServices, the EnvoyFilter)."""
        if self.ref.kind == "Sandbox":
            return self.ref.name
        body = self.desired or self.live or {}
        return str(((body.get("metadata") or {}).get("labels") or {}).get(LABEL_SANDBOX, ""))

    @property
    def recreates(self) -> bool:
        """Whether the update changes what the API server never lets change in place: a workload's pod selector
        (``spec.selector``). A fork's selector follows the labels the baseline's Services select on, so a Service
        selecting on one more label changes it; such an object is deleted and created again."""
        if self.action is not Action.UPDATE or self.ref.kind not in _SELECTOR_IMMUTABLE:
            return False
        assert self.live is not None and self.desired is not None
        return bool((self.live.get("spec") or {}).get("selector") != (self.desired.get("spec") or {}).get("selector"))

    def operations(self) -> list[dict[str, Any]]:
        """The JSON patch for an update, guarded by a test on the live resourceVersion."""
        assert self.live is not None
        target = self.target()
        assert target is not None
        ops = jsonpatch.make_patch(without_status(self.live), without_status(target)).patch
        guard = {"op": "test", "path": "/metadata/resourceVersion",
                 "value": self.live["metadata"]["resourceVersion"]}
        return [guard, *ops]


def route_delta(live: Mapping[str, Any] | None, desired: Mapping[str, Any] | None) -> str:
    before = meshgen_route_names(live or {})
    after = meshgen_route_names(desired or {})
    parts = []
    if after - before:
        parts.append(f"{len(after - before)} route{'s' * (len(after - before) != 1)} added")
    if before - after:
        parts.append(f"{len(before - after)} route{'s' * (len(before - after) != 1)} removed")
    return f" ({', '.join(parts)})" if parts else ""


def without_status(body: Mapping[str, Any]) -> JsonObject:
    out = {k: v for k, v in body.items() if k != "status"}
    meta = dict(out.get("metadata") or {})
    meta.pop("managedFields", None)
    out["metadata"] = meta
    return out


def annotation(body: Mapping[str, Any] | None, key: str) -> str | None:
    value = (((body or {}).get("metadata") or {}).get("annotations") or {}).get(key)
    return str(value) if value is not None else None


def computed_from(body: Mapping[str, Any] | None) -> int:
    """The list revision a live object was computed from; 0 if unknown (an object from before fencing)."""
    return revision(annotation(body, ANNOTATION_COMPUTED_FROM) or "") or 0


def is_newer(live: Mapping[str, Any] | None, my_revision: int | None) -> bool:
    """Whether ``live`` was computed from a newer list than mine: then I must not replace or delete it."""
    return my_revision is not None and computed_from(live) > my_revision


def desired_hash(body: Mapping[str, Any]) -> str:
    """A stable hash of an object as meshgen renders it (without its own bookkeeping annotations)."""
    meta = dict(body.get("metadata") or {})
    meta["annotations"] = {k: v for k, v in (meta.get("annotations") or {}).items()
                           if k not in (ANNOTATION_COMPUTED_FROM, ANNOTATION_DESIRED_HASH)}
    text = json.dumps({**body, "metadata": meta}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def decorate(body: JsonObject, list_revision: str) -> JsonObject:
    """A rendered object with meshgen's bookkeeping annotations (a copy: rendered objects are read-only)."""
    meta = dict(body["metadata"])
    annotations = dict(meta.get("annotations") or {})
    if is_owned(body):
        annotations[ANNOTATION_DESIRED_HASH] = desired_hash(body)
    annotations[ANNOTATION_COMPUTED_FROM] = list_revision
    meta["annotations"] = annotations
    return {**body, "metadata": meta}


def meshgen_annotations(body: Mapping[str, Any]) -> dict[str, str]:
    """meshgen's annotations on an object, without those that are bookkeeping of a write (the revision it was
    computed from, the generation it left): writing them alone would change nothing."""
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    return {k: v for k, v in annotations.items()
            if k.startswith(MESHGEN_ANNOTATION_PREFIX) and k not in (ANNOTATION_COMPUTED_FROM,
                                                                    ANNOTATION_HOSTS_GENERATION)}


def written_whole(desired: Mapping[str, Any]) -> bool:
    """Whether meshgen writes all of this object (its labels, annotations and body), not just its routes."""
    return is_owned(desired) or desired.get("kind") in SPEC_KINDS


def user_part(body: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """What a user wrote in a stored spec: labels, annotations (not meshgen's), spec."""
    meta = body.get("metadata") or {}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items()
                   if not k.startswith(MESHGEN_ANNOTATION_PREFIX)}
    return meta.get("labels") or {}, annotations, body.get("spec")


def unchanged(desired: Mapping[str, Any], live: Mapping[str, Any]) -> bool:
    if desired.get("kind") in SPEC_KINDS:
        return user_part(desired) == user_part(live)
    if is_owned(desired):
        return annotation(live, ANNOTATION_DESIRED_HASH) == annotation(desired, ANNOTATION_DESIRED_HASH)
    return (live.get("spec") == desired.get("spec") and meshgen_annotations(live) == meshgen_annotations(desired)
            and _edited_label(live) == edits(desired))


def edits(body: Mapping[str, Any]) -> bool:
    """Whether a user's routing object as meshgen writes it carries meshgen routes (then it has
    :data:`~meshgen.ownership.LABEL_EDITED`)."""
    return ANNOTATION_ROUTES in ((body.get("metadata") or {}).get("annotations") or {})


def _edited_label(body: Mapping[str, Any]) -> bool:
    return LABEL_EDITED in ((body.get("metadata") or {}).get("labels") or {})


def updated(live: Mapping[str, Any], desired: Mapping[str, Any]) -> JsonObject:
    """``live`` changed into ``desired``, keeping the server's metadata.

    Objects meshgen owns take desired's labels, annotations and body wholesale (the server re-applies its
    defaults). A user's routing object keeps its own labels and annotations; only meshgen's annotations and the
    spec (where only meshgen's routes differ) are taken from ``desired``."""
    meta = dict(live["metadata"])
    desired_meta = desired.get("metadata") or {}
    if written_whole(desired):
        out = {k: v for k, v in desired.items() if k != "metadata"}
        if "status" in live:
            out["status"] = live["status"]
        for key in ("labels", "annotations"):
            if desired_meta.get(key):
                meta[key] = dict(desired_meta[key])
            else:
                meta.pop(key, None)
    else:
        out = {k: v for k, v in live.items() if k != "metadata"}
        out["spec"] = desired["spec"]
        annotations = {k: v for k, v in (meta.get("annotations") or {}).items()
                       if not k.startswith(MESHGEN_ANNOTATION_PREFIX)}
        annotations.update({k: v for k, v in (desired_meta.get("annotations") or {}).items()
                            if k.startswith(MESHGEN_ANNOTATION_PREFIX)})
        if ANNOTATION_HOSTS in annotations:
            # The generation this write leaves (the API server adds one when the spec changes): while the object
            # still has it, its recorded hosts are current (meshgen.kube.sourcing).
            moved = 1 if live.get("spec") != desired.get("spec") else 0
            annotations[ANNOTATION_HOSTS_GENERATION] = str(int(meta.get("generation") or 0) + moved)
        if annotations:
            meta["annotations"] = annotations
        else:
            meta.pop("annotations", None)
        labels = {k: v for k, v in (meta.get("labels") or {}).items() if k != LABEL_EDITED}
        if edits(desired):
            labels[LABEL_EDITED] = "true"
        if labels:
            meta["labels"] = labels
        else:
            meta.pop("labels", None)
    out["metadata"] = meta
    return out


def restored(live: Mapping[str, Any]) -> JsonObject:
    """A user's routing object with every meshgen route and annotation removed: exactly the user's spec."""
    body = without_meshgen_routes(live)
    meta = dict(body["metadata"])
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items()
                   if not k.startswith(MESHGEN_ANNOTATION_PREFIX)}
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    return {**body, "metadata": meta}


def foreign_problem(desired: Mapping[str, Any], live: Mapping[str, Any] | None) -> str | None:
    """Why ``desired`` cannot be written over ``live`` (an object meshgen would own that someone else has), or
    ``None``."""
    if live is None or not is_owned(desired) or is_owned(live):
        return None
    return (f"{Ref.of(dict(desired))} exists and is not managed by meshgen (no app.kubernetes.io/managed-by: meshgen "
            "label); meshgen never overwrites it. Rename or remove that object, or rename the sandbox.")


def change_for(desired: JsonObject | None, live: JsonObject | None) -> Change | None:
    """The change that turns ``live`` into ``desired`` (``None`` desired: remove what meshgen put there), or
    ``None`` when there is nothing to do. Raises :class:`ForeignObject` rather than touch what is not ours."""
    if desired is None:
        if live is None:
            return None
        if is_owned(live):
            return Change(Action.DELETE, Ref.of(live), None, live)
        if live.get("kind") in ROUTE_LISTS and annotation(live, ANNOTATION_ROUTES) is not None:
            return Change(Action.UPDATE, Ref.of(live), restored(live), live)
        return None
    ref = Ref.of(desired)
    if live is None:
        return Change(Action.CREATE, ref, desired, None)
    foreign = foreign_problem(desired, live)
    if foreign is not None:
        raise ForeignObject(foreign)
    if unchanged(desired, live):
        return None
    return Change(Action.UPDATE, ref, desired, live)


def changes(desired: Iterable[JsonObject], live: Mapping[Ref, JsonObject]) -> list[Change]:
    """Every change from ``live`` to ``desired``: creates and updates for desired objects, deletes for owned
    objects no longer desired (of any kind some backend writes), restores for users' routing objects meshgen no
    longer edits."""
    wanted = {Ref.of(o): o for o in desired}
    out = [c for ref, body in wanted.items() if (c := change_for(body, live.get(ref))) is not None]
    for ref, body in live.items():
        if ref not in wanted and ref.api in kinds.RENDERED:
            change = change_for(None, body)
            if change is not None:
                out.append(change)
    return out


def shown(body: Mapping[str, Any] | None) -> JsonObject | None:
    """An object as ``diff`` shows it: no status, no server-only metadata."""
    if body is None:
        return None
    out = {k: v for k, v in body.items() if k != "status"}
    out["metadata"] = {k: v for k, v in (body.get("metadata") or {}).items() if k not in SERVER_METADATA}
    return out

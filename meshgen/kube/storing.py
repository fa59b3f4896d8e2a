"""Sandboxes and route groups live in the cluster as ``Sandbox`` / ``RouteGroup`` objects (meshgen.dev).

A stored spec is exactly what the user wrote (apiVersion, kind, name, labels, annotations, spec), plus one
annotation with when its content last changed (``meshgen.dev/updated-at``, for ``ttl.offsetFrom: updatedAt``).
Re-applying an identical spec writes nothing.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Any

from meshgen.documents import JsonObject
from meshgen.kube import diffing
from meshgen.kube.diffing import Action, Change
from meshgen.kube.discovery import StoredSpecs
from meshgen.kube.kinds import Ref
from meshgen.ownership import ANNOTATION_UPDATED_AT
from meshgen.spec.names import parse_duration

STORED_KINDS = ("Sandbox", "RouteGroup")


def now_utc() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def timestamp(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    try:
        return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    except ValueError:
        return None


def stored_form(written: Mapping[str, Any], moment: datetime.datetime) -> JsonObject:
    """The object to store for a spec document as written."""
    meta = written.get("metadata") or {}
    stored_meta: JsonObject = {"name": meta["name"]}
    if meta.get("labels"):
        stored_meta["labels"] = dict(meta["labels"])
    stored_meta["annotations"] = {**(meta.get("annotations") or {}), ANNOTATION_UPDATED_AT: timestamp(moment)}
    return {"apiVersion": written["apiVersion"], "kind": written["kind"], "metadata": stored_meta,
            "spec": written.get("spec") or {}}


def changes(written: Iterable[Mapping[str, Any]], stored: StoredSpecs, moment: datetime.datetime) -> list[Change]:
    """Creates and updates that store the written specs (MeshPolicy documents are not stored)."""
    out = []
    for body in written:
        if body.get("kind") not in STORED_KINDS:
            continue
        desired = stored_form(body, moment)
        change = diffing.change_for(desired, stored.find(desired["kind"], desired["metadata"]["name"]))
        if change is not None:
            out.append(change)
    return out


def deletion(stored: StoredSpecs, kind: str, name: str) -> Change | None:
    """The change deleting a stored spec, or ``None`` if there is no such spec."""
    live = stored.find(kind, name)
    if live is None:
        return None
    return Change(Action.DELETE, Ref.of(live), None, live)


def expires_at(stored: Mapping[str, Any], limit: int | None = None) -> datetime.datetime | None:
    """When a stored sandbox's TTL runs out (``None``: no TTL, or none that can be read). Whatever is stored —
    kubectl writes what it likes — this never raises: a TTL longer than a year counts as a year
    (:func:`~meshgen.spec.names.parse_duration`), and one longer than ``limit`` seconds (the policy's maxTTL) runs
    out after ``limit``."""
    spec = stored.get("spec")
    ttl = spec.get("ttl") if isinstance(spec, dict) else None
    if not isinstance(ttl, dict):
        return None
    seconds = parse_duration(str(ttl.get("duration", "")))
    if not seconds:
        return None
    if limit is not None:
        seconds = min(seconds, limit)
    meta = stored.get("metadata") or {}
    created = parse_timestamp(meta.get("creationTimestamp"))
    start = created
    if ttl.get("offsetFrom") == "updatedAt":
        start = parse_timestamp(str((meta.get("annotations") or {}).get(ANNOTATION_UPDATED_AT) or "")) or created
    return start + datetime.timedelta(seconds=seconds) if start else None


def expired(stored: StoredSpecs, moment: datetime.datetime, limit: int | None = None) -> list[JsonObject]:
    """Stored sandboxes whose TTL (at most ``limit`` seconds) has run out at ``moment``, by name."""
    out = []
    for sandbox in stored.sandboxes:
        end = expires_at(sandbox, limit)
        if end is not None and end <= moment:
            out.append(sandbox)
    return sorted(out, key=lambda s: s["metadata"]["name"])

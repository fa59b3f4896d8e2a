"""Turning parsed documents into validated spec models, with errors that name file, field path and fix."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel

from meshgen.documents import Document, JsonObject
from meshgen.errors import InvalidInput, Location, Problem, raise_if_any
from meshgen.spec.models import API_VERSION, DEFAULT_POLICY, SPEC_KINDS, MeshPolicy, RouteGroup, Sandbox
from meshgen.validation import validate_model

_MODELS: dict[str, type[BaseModel]] = {"Sandbox": Sandbox, "RouteGroup": RouteGroup, "MeshPolicy": MeshPolicy}
_BASELINE_KINDS = {"Deployment", "Service", "VirtualService", "DestinationRule", "StatefulSet", "Pod", "Rollout"}
# Where a workload reference without a namespace points, when nothing else says (kubectl's default).
DEFAULT_NAMESPACE = "default"

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Specs:
    """Everything the user asked for, with where each object came from (for error messages)."""

    sandboxes: tuple[Sandbox, ...] = ()
    route_groups: tuple[RouteGroup, ...] = ()
    policies: tuple[MeshPolicy, ...] = ()
    origins: dict[tuple[str, str], Location] = field(default_factory=dict)

    def origin(self, kind: str, name: str) -> Location | None:
        """Where the object of ``kind`` and ``name`` was defined."""
        return self.origins.get((kind, name))


def with_namespace(body: JsonObject, namespace: str) -> JsonObject:
    """A spec document with ``namespace`` given to every workload reference of a Sandbox that leaves its namespace
    out (``forkOf``, ``virtual[].workload``), like ``kubectl apply -n`` gives it to objects; the document itself
    when none does. Applied before storing, so a stored spec means the same to every reader."""
    spec = body.get("spec")
    if body.get("kind") != "Sandbox" or not isinstance(spec, dict):
        return body
    changed: dict[str, Any] = {}
    for field_name, ref_name in (("forks", "forkOf"), ("virtual", "workload")):
        entries = spec.get(field_name)
        if not isinstance(entries, list):
            continue
        filled = [{**e, ref_name: {**e[ref_name], "namespace": namespace}}
                  if isinstance(e, dict) and isinstance(e.get(ref_name), dict) and e[ref_name].get("namespace") is None
                  else e for e in entries]
        if any(a is not b for a, b in zip(filled, entries, strict=True)):
            changed[field_name] = filled
    return {**body, "spec": {**spec, **changed}} if changed else body


def load_specs(documents: Iterable[Document], namespace: str = DEFAULT_NAMESPACE) -> Specs:
    """Validate documents as spec objects; every problem in every document is reported at once. A workload
    reference without a namespace is in ``namespace`` (:func:`with_namespace`).

    Names must be unique per kind.
    """
    sandboxes: list[Sandbox] = []
    groups: list[RouteGroup] = []
    policies: list[MeshPolicy] = []
    origins: dict[tuple[str, str], Location] = {}
    problems: list[Problem] = []
    for doc in documents:
        try:
            obj = validate_document(Document(doc.location, with_namespace(doc.body, namespace)))
        except InvalidInput as exc:
            problems.extend(exc.problems)
            continue
        key = (obj.kind, obj.metadata.name)
        if key in origins:
            first = origins[key]
            problems.append(
                Problem(
                    doc.location.at("metadata", "name"),
                    f"{obj.kind} {obj.metadata.name!r} is defined twice (first in {first.source})",
                    "rename one of them",
                )
            )
            continue
        origins[key] = doc.location
        if isinstance(obj, Sandbox):
            sandboxes.append(obj)
        elif isinstance(obj, RouteGroup):
            groups.append(obj)
        elif isinstance(obj, MeshPolicy):
            policies.append(obj)
    raise_if_any(problems)
    return Specs(tuple(sandboxes), tuple(groups), tuple(policies), origins)


def validate_document(doc: Document) -> Sandbox | RouteGroup | MeshPolicy:
    """Validate one document as whichever spec kind it declares."""
    body = doc.body
    api_version, kind = body.get("apiVersion"), body.get("kind")
    if not isinstance(kind, str) or kind not in _MODELS:
        if isinstance(kind, str) and kind in _BASELINE_KINDS:
            raise InvalidInput.one(
                doc.location.at("kind"),
                f"{kind} is a baseline object, not a meshgen spec",
                "pass baseline manifests with --baseline DIR, and sandboxes/route groups with -f",
            )
        raise InvalidInput.one(
            doc.location.at("kind") if "kind" in body else doc.location,
            f"kind {kind!r} is not a meshgen spec kind" if kind is not None else "kind is missing",
            f"use one of: {', '.join(SPEC_KINDS)}",
        )
    if api_version != API_VERSION:
        raise InvalidInput.one(
            doc.location.at("apiVersion") if "apiVersion" in body else doc.location,
            f"apiVersion {api_version!r} is not supported" if api_version else "apiVersion is missing",
            f"use apiVersion: {API_VERSION}",
        )
    return validate_model(_MODELS[kind], body, doc.location)  # type: ignore[return-value]


def load_policy(specs: Sequence[Specs]) -> MeshPolicy:
    """The one MeshPolicy among ``specs``, or the built-in default when none is given."""
    found = [(p, s.origin("MeshPolicy", p.metadata.name)) for s in specs for p in s.policies]
    if len(found) > 1:
        raise InvalidInput(
            Problem(loc, "more than one MeshPolicy given; meshgen compiles against exactly one",
                    "pass a single policy with --policy")
            for _, loc in found
        )
    return found[0][0] if found else DEFAULT_POLICY

"""Turning parsed documents into validated spec models, with errors that name file, field path and fix."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pydantic
from pydantic import BaseModel

from meshgen.documents import Document
from meshgen.errors import InvalidInput, Location, Problem, raise_if_any
from meshgen.spec.models import API_VERSION, DEFAULT_POLICY, SPEC_KINDS, MeshPolicy, RouteGroup, Sandbox

_MODELS: dict[str, type[BaseModel]] = {"Sandbox": Sandbox, "RouteGroup": RouteGroup, "MeshPolicy": MeshPolicy}
_BASELINE_KINDS = {"Deployment", "Service", "VirtualService", "DestinationRule", "StatefulSet", "Pod"}

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


def load_specs(documents: Iterable[Document]) -> Specs:
    """Validate documents as spec objects; every problem in every document is reported at once.

    Names must be unique per kind.
    """
    sandboxes: list[Sandbox] = []
    groups: list[RouteGroup] = []
    policies: list[MeshPolicy] = []
    origins: dict[tuple[str, str], Location] = {}
    problems: list[Problem] = []
    for doc in documents:
        try:
            obj = validate_document(doc)
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
    if kind not in _MODELS:
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


def validate_model(model: type[M], body: Any, location: Location) -> M:
    """``model.model_validate(body)``, with pydantic's errors translated into located problems."""
    try:
        return model.model_validate(body)
    except pydantic.ValidationError as exc:
        raise InvalidInput(_problems(model, exc, location)) from None


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


def _problems(model: type[BaseModel], exc: pydantic.ValidationError, location: Location) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        # Union and tagged branches add type names to the path; keep only real field names and indexes.
        loc = tuple(p for p in loc if isinstance(p, int) or not _is_type_tag(p))
        message, fix = _explain(model, err, loc)
        problems.append(Problem(location.at(*loc), message, fix))
    return problems


def _is_type_tag(part: str) -> bool:
    return part[:1].isupper() or part in {"str", "int", "float", "bool", "dict", "list", "tuple", "none"} or (
        "[" in part
    )


def _explain(model: type[BaseModel], err: Any, loc: tuple[str | int, ...]) -> tuple[str, str | None]:
    kind = err["type"]
    if kind == "extra_forbidden":
        name = loc[-1] if loc else "?"
        allowed = _allowed_fields(model, loc[:-1])
        close = difflib.get_close_matches(str(name), allowed, n=1) if allowed else []
        fix = f"did you mean {close[0]!r}?" if close else (
            f"allowed fields here: {', '.join(allowed)}" if allowed else "remove it"
        )
        return f"unknown field {name!r}", fix
    if kind == "missing":
        return "required field is missing", None
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"got {err.get('input')!r}, expected {expected}", None
    if kind == "value_error":
        return str(err["ctx"]["error"]), None
    return f"{err['msg']} (got {_short(err.get('input'))})", None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _allowed_fields(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """The YAML field names accepted at ``loc`` inside ``model`` (for 'did you mean')."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        target = _model_in(current)
        if target is None:
            return []
        by_alias = {(f.alias or n): f for n, f in target.model_fields.items()}
        if part not in by_alias:
            return []
        current = by_alias[part].annotation
    target = _model_in(current)
    if target is None:
        return []
    return sorted(f.alias or n for n, f in target.model_fields.items())


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel inside an annotation like ``tuple[X, ...]`` or ``X | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _model_in(typing.get_args(annotation)[0])
    if origin in (tuple, list, typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None

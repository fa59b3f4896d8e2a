"""Turning pydantic's validation errors into located problems: field path, a message in the user's terms, a fix.

Shared by every model meshgen validates (specs, baseline object shapes, traffic expectations). Values under fields
that may hold credentials are never quoted in a message.
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, TypeVar

import pydantic
from pydantic import BaseModel

from meshgen.errors import InvalidInput, Location, Problem

M = TypeVar("M", bound=BaseModel)


class FieldProblem(ValueError):
    """What a model's validator raises for a value it refuses, with how to fix it (a plain ValueError has no fix)."""

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.fix = fix


def validate_model(model: type[M], body: Any, location: Location) -> M:
    """``model.model_validate(body)``, with pydantic's errors translated into located problems."""
    try:
        return model.model_validate(body)
    except pydantic.ValidationError as exc:
        raise InvalidInput(_problems(model, exc, location)) from None


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
        return f"got {_short(err.get('input'), loc)}, expected {expected}", None
    if kind == "value_error":
        error = err["ctx"]["error"]
        return str(error), getattr(error, "fix", None)
    if kind in _EXPECTED:
        return f"should be {_EXPECTED[kind]} (got {_short(err.get('input'), loc)})", None
    if kind == "too_short":
        return f"should have at least {err.get('ctx', {}).get('min_length', 1)} item(s)", None
    return f"{err['msg']} (got {_short(err.get('input'), loc)})", None


# pydantic's words for a wrong type name its classes ("instance of Meta"); say what the YAML should hold instead.
_EXPECTED = {
    "dict_type": "a mapping", "model_type": "a mapping", "model_attributes_type": "a mapping",
    "list_type": "a list", "tuple_type": "a list", "string_type": "a string", "int_type": "an integer",
    "int_parsing": "an integer", "int_from_float": "an integer", "bool_type": "true or false",
    "bool_parsing": "true or false", "float_type": "a number", "float_parsing": "a number",
}


# Values under these fields may be credentials (an env value, a Secret's data): errors name the field, not the value.
_SENSITIVE = frozenset({"env", "value", "valueFrom", "data", "stringData", "token"})


def _short(value: Any, loc: tuple[str | int, ...]) -> str:
    if _SENSITIVE.intersection(p for p in loc if isinstance(p, str)):
        return f"a {type(value).__name__} value, not shown"
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

"""Scalars and keys as go-yaml v2 resolves them and sigs.k8s.io/yaml turns them into JSON."""

from __future__ import annotations

import base64
import decimal
import math
import re
import struct
from typing import Any

from meshgen.kubeyaml.parsing import YAMLError

_TAG = "tag:yaml.org,2002:"
_STR, _BOOL, _INT, _FLOAT, _NULL, _TIMESTAMP, _BINARY, MERGE = (
    _TAG + t for t in ("str", "bool", "int", "float", "null", "timestamp", "binary", "merge"))
_RESOLVABLE = frozenset({_STR, _BOOL, _INT, _FLOAT, _NULL, _TIMESTAMP})
_SHORT = {t: "!!" + t[len(_TAG):] for t in (_STR, _BOOL, _INT, _FLOAT, _NULL, _TIMESTAMP, _BINARY, MERGE)}

HINTS = frozenset("+-0123456789yYnNtTfFoO~.")
_SPECIAL: dict[str, Any] = {
    **dict.fromkeys(("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"), True),
    **dict.fromkeys(("n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"), False),
    **dict.fromkeys(("", "~", "null", "Null", "NULL"), None),
    **dict.fromkeys((".nan", ".NaN", ".NAN"), math.nan),
    **dict.fromkeys((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), math.inf),
    **dict.fromkeys(("-.inf", "-.Inf", "-.INF"), -math.inf),
}
_GO_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_DOT_FLOAT = re.compile(r"\.[0-9]+([eE][-+]?[0-9]+)?")
_TIMESTAMP_RE = re.compile(
    r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:(?:[Tt]| )[0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(?:\.[0-9]+)?"
    r"(?:Z|[-+][0-9]{2}:[0-9]{2})?)?")
_DIGITS = {16: frozenset("0123456789abcdefABCDEF"), 10: frozenset("0123456789"), 8: frozenset("01234567"),
           2: frozenset("01")}
_INT64 = 1 << 63
MERGE_KEY = object()  # the resolved value of a plain ``<<`` key


def _go_int(text: str) -> int | None:
    """``strconv.ParseInt(text, 0, 64)``, falling back to ``ParseUint`` as go-yaml does (underscores removed)."""
    body, sign = text, 1
    if body[:1] in ("+", "-"):
        sign, body = (-1 if body[0] == "-" else 1), body[1:]
    prefix = body[:2].lower()
    if prefix in ("0x", "0o", "0b"):
        base, digits = {"0x": 16, "0o": 8, "0b": 2}[prefix], body[2:]
    elif body[:1] == "0" and len(body) > 1:
        base, digits = 8, body[1:]
    else:
        base, digits = 10, body
    if not digits or not _DIGITS[base].issuperset(digits):
        return None
    value = sign * int(digits, base)
    if -_INT64 <= value < _INT64 or (text[:1] != "-" and text[:1] != "+" and 0 <= value < 1 << 64):
        return value
    return None


def _go_timestamp(text: str) -> bool:
    return _TIMESTAMP_RE.fullmatch(text) is not None


def resolve(tag: str | None, text: str, plain: bool) -> Any:
    """A scalar's value as go-yaml v2 resolves it into ``interface{}`` (floats still floats; see :func:`value`)."""
    if not tag or tag == "!":
        if not plain or tag == "!":
            return text
        tag = ""
    elif tag not in _RESOLVABLE:
        if tag == _BINARY:
            try:
                raw = base64.b64decode(re.sub(r"[\r\n]", "", text), validate=True)
            except ValueError:
                raise YAMLError("!!binary value contains invalid base64 data") from None
            # Go keeps the bytes; JSON then writes each invalid UTF-8 byte as U+FFFD.
            return re.sub("[\udc80-\udcff]", "\ufffd", raw.decode("utf-8", "surrogateescape"))
        return MERGE_KEY if tag == MERGE and text == "<<" else text
    if tag == _STR:
        return text
    out: Any = text
    kind = _STR
    if not text or text[0] in HINTS:
        if text in _SPECIAL:
            out = _SPECIAL[text]
            kind = _NULL if out is None else (_BOOL if isinstance(out, bool) else _FLOAT)
        elif text[0] == ".":
            if _DOT_FLOAT.fullmatch(text):
                out, kind = float(text), _FLOAT
        elif text[0] not in "yYnNtTfFoO~":
            if tag in ("", _TIMESTAMP) and _go_timestamp(text):
                out, kind = text, _TIMESTAMP
            else:
                plain_text = text.replace("_", "")
                number = _go_int(plain_text)
                if number is not None:
                    out, kind = number, _INT
                elif _GO_FLOAT.fullmatch(plain_text) and not math.isinf(float(plain_text)):
                    out, kind = float(plain_text), _FLOAT
    if text == "<<" and tag == "":
        return MERGE_KEY
    if tag in ("", kind):
        return out
    if tag == _FLOAT and kind == _INT:
        return float(out)
    raise YAMLError(f"cannot decode {_SHORT.get(kind, kind)} `{text}` as a {_SHORT.get(tag, tag)}")


def value(resolved: Any) -> Any:
    """A resolved scalar as the API server holds it after kubectl sent it as JSON: integral floats are integers
    (Go writes the shortest digits, then zeros), integers beyond 64 bits signed are floats there (its JSON decoder
    takes an int64 or else a float64, printed as an integral float is), inf and NaN are refused."""
    if type(resolved) is int and not -_INT64 <= resolved < _INT64:
        resolved = float(resolved)
    if type(resolved) is float:
        if math.isnan(resolved) or math.isinf(resolved):
            raise YAMLError(f"{resolved!r} is not a JSON number (kubectl refuses .inf and .nan values)")
        if resolved.is_integer() and abs(resolved) < 1e21:
            return int(decimal.Decimal(repr(resolved)))
    return resolved


def key(resolved: Any) -> tuple[str, str]:
    """A resolved key as sigs.k8s.io/yaml converts it to a JSON string, with its Go type (``s``, ``i``, ``f``,
    ``b``): keys of different types that print alike are kept apart by the type."""
    if type(resolved) is str:
        return resolved, "s"
    if resolved is True or resolved is False:
        return ("true" if resolved else "false"), "b"
    if type(resolved) is int:
        if not -_INT64 <= resolved < _INT64:
            raise YAMLError(f"unsupported map key {resolved} (an unsigned 64-bit integer)")
        return str(resolved), "i"
    if type(resolved) is float:
        return _float32_text(resolved), "f"
    raise YAMLError("a null key is not allowed (kubectl: unsupported map key)")


def _float32_text(number: float) -> str:
    """``strconv.FormatFloat(number, 'g', -1, 32)``, as sigs.k8s.io/yaml writes a float key."""
    if math.isnan(number):
        return ".nan"
    if math.isinf(number):
        return ".inf" if number > 0 else "-.inf"
    single = struct.unpack("f", struct.pack("f", number))[0]
    if single == 0:
        return "-0" if math.copysign(1, single) < 0 else "0"
    for precision in range(1, 10):  # the shortest digits that read back as the same float32
        text = f"{abs(single):.{precision - 1}e}"
        if struct.unpack("f", struct.pack("f", float(text)))[0] == abs(single):
            break
    mantissa, exponent = text.split("e")
    digits = mantissa.replace(".", "").rstrip("0") or "0"
    exp = int(exponent)
    sign = "-" if single < 0 else ""
    if exp < -4 or exp >= 6:
        head = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{head}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    point = exp + 1
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"



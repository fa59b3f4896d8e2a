"""A fast, deterministic YAML writer for JSON-like data (dicts, lists, strings, numbers, booleans, null).

Why not the YAML library's dumper: it is pure Python per node and takes ~30 s for a 10,000-sandbox compile, and
it writes YAML 1.2, while kubectl (sigs.k8s.io/yaml), Envoy and PyYAML read YAML 1.1, where an unquoted ``on``,
``y`` or ``0755`` is not a string. This writer quotes every scalar that either version could read as anything but
the intended value, uses block style (``|``) for multi-line text, and is checked by a property test that every
output parses back to the same data under both YAML 1.1 and 1.2.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

# Plain (unquoted) scalars: a conservative character set, no leading indicator, no ": " or " #", no trailing ":".
_PLAIN = re.compile(r"^[A-Za-z0-9_/.$(][A-Za-z0-9 _./@+=~,:()$%^-]*$")
# Scalars YAML 1.1 or 1.2 would resolve to something other than a string.
_NON_STRING = re.compile(
    r"""^(?:
        ~|null|Null|NULL|
        y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF|
        [-+]?(?:0b[01_]+|0o?[0-7_]+|0x[0-9a-fA-F_]+|[0-9][0-9_]*(?::[0-5]?[0-9])*)|
        [-+]?(?:[0-9][0-9_]*)?\.[0-9_]*(?:[eE][-+]?[0-9]+)?|
        [-+]?[0-9][0-9_]*(?:[eE][-+]?[0-9]+)|
        [-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|
        [-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)|
        [0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:[Tt ].*)?|
        =|<<
    )$""",
    re.VERBOSE,
)


def dump_all(documents: Iterable[Any], sort_keys: bool = False) -> str:
    """Documents as multi-document YAML, each starting with ``---``; mapping keys sorted if ``sort_keys``."""
    writer = _Writer(sort_keys)
    parts: list[str] = []
    for doc in documents:
        parts.append("---\n")
        parts.extend(writer.node(doc, 0))
    return "".join(parts)


def scalar(value: Any) -> str:
    """One scalar in flow position (a key, or a value after ``key: `` or ``- ``)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, str):
        return _string(value)
    raise TypeError(f"cannot write {type(value).__name__} as YAML")


def _float(value: float) -> str:
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    text = repr(value)
    if "e" in text and "." not in text.split("e")[0]:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}.0e{exponent}"  # YAML 1.1 floats need a dot
    return text


def _string(value: str) -> str:
    if (
        value
        and _PLAIN.fullmatch(value)
        and not _NON_STRING.fullmatch(value)
        and ": " not in value
        and not value.endswith((":", " "))
    ):
        return value
    if value.isprintable():
        return "'" + value.replace("'", "''") + "'"
    return _double_quoted(value)


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r", "\0": "\\0"}


def _double_quoted(value: str) -> str:
    """Double-quoted with YAML escapes; ``\\U`` for astral characters (YAML 1.1 readers do not join surrogates)."""
    out = []
    for ch in value:
        code = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif 0x20 <= code < 0x7F:
            out.append(ch)
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def _literal_ok(value: str) -> bool:
    if "\n" not in value or "\r" in value:
        return False
    lines = value.split("\n")
    first = next((line for line in lines if line), "")
    return (
        bool(first)
        and not first.startswith((" ", "\t"))
        and all(line.isprintable() and line == line.rstrip(" \t") for line in lines)
        and "\t" not in value
    )


def _literal(value: str, indent: int) -> list[str]:
    body = value.rstrip("\n")
    trailing = len(value) - len(body)
    header = "|-" if trailing == 0 else ("|" if trailing == 1 else "|+")
    pad = " " * indent
    lines = [f"{pad}{line}\n" if line else "\n" for line in body.split("\n")]
    lines.extend("\n" for _ in range(max(trailing - 1, 0)))
    return [header + "\n", *lines]


class _Writer:
    """One dump: remembers how each string was written (keys and values repeat a lot in Kubernetes objects)."""

    def __init__(self, sort_keys: bool) -> None:
        self.sort_keys = sort_keys
        self.strings: dict[str, str] = {}

    def scalar(self, value: Any) -> str:
        if type(value) is str:
            text = self.strings.get(value)
            if text is None:
                text = self.strings[value] = _string(value)
            return text
        return scalar(value)

    def node(self, value: Any, indent: int) -> list[str]:
        """Lines for a mapping or sequence at ``indent``; a scalar document is one line."""
        if isinstance(value, Mapping):
            return self.mapping(value, indent) if value else [" " * indent + "{}\n"]
        if isinstance(value, list | tuple):
            return self.sequence(value, indent) if value else [" " * indent + "[]\n"]
        if isinstance(value, str) and _literal_ok(value):
            return _literal(value, indent + 2)
        return [" " * indent + self.scalar(value) + "\n"]

    def mapping(self, value: Mapping[Any, Any], indent: int) -> list[str]:
        pad = " " * indent
        out: list[str] = []
        keys = sorted(value) if self.sort_keys else value
        for key in keys:
            item = value[key]
            head = f"{pad}{self.scalar(key)}:"
            kind = type(item)
            if kind is dict or (kind is not list and isinstance(item, Mapping)):
                if item:
                    out.append(head + "\n")
                    out.extend(self.mapping(item, indent + 2))
                else:
                    out.append(head + " {}\n")
            elif kind is list or kind is tuple:
                if item:
                    out.append(head + "\n")
                    out.extend(self.sequence(item, indent))  # kubectl style: "- " at the key's indentation
                else:
                    out.append(head + " []\n")
            else:
                self.leaf(f"{head} ", item, indent, out)
        return out

    def leaf(self, prefix: str, item: Any, indent: int, out: list[str]) -> None:
        """A scalar after ``key: `` or ``- ``: a literal block for multi-line text, else one line."""
        if type(item) is str and "\n" in item and _literal_ok(item):
            block = _literal(item, indent + 2)
            out.append(prefix + block[0])
            out.extend(block[1:])
        else:
            out.append(f"{prefix}{self.scalar(item)}\n")

    def sequence(self, value: Iterable[Any], indent: int) -> list[str]:
        pad = " " * indent
        out: list[str] = []
        for item in value:
            if isinstance(item, Mapping | list | tuple):
                if item:
                    lines = self.node(item, indent + 2)
                    out.append(pad + "- " + lines[0][indent + 2:])
                    out.extend(lines[1:])
                else:
                    out.append(pad + ("- {}\n" if isinstance(item, Mapping) else "- []\n"))
            else:
                self.leaf(f"{pad}- ", item, indent, out)
        return out

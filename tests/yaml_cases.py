"""Tricky YAML documents and what kubectl reads from each, stated from the source of sigs.k8s.io/yaml v1.6.0 and
go.yaml.in/yaml/v2 v2.4.4 (what kube-apiserver and kubectl 1.37 build with). tests/test_documents.py checks meshgen
against the expectations; tests/kube/test_yaml_dialect.py checks the expectations against a real kube-apiserver, so
a wrong expectation cannot hide there.

A case's ``text`` is the value of ``data`` in a test object: ``expect`` is what ``data`` reads as, or a ``Refused``
(kubectl refuses the document; ``because`` is a word of meshgen's message)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Refused:
    because: str


@dataclass(frozen=True)
class Case:
    name: str
    text: str  # YAML placed after "data:" in a document (indented by the test where needed)
    expect: Any
    # Where meshgen refuses what kubectl reads nondeterministically: the values kubectl may read.
    kubectl_any_of: tuple[Any, ...] = ()


def deep(levels: int) -> str:
    """``levels`` nested lists, block style (libyaml parses deep flow nesting in quadratic time)."""
    return "\n" + "- " * (levels - 1) + "[]"


CASES = [
    # defect 1: ':' inside a plain scalar in a flow collection (libyaml 0.1 refused it)
    Case("flow-colon-image", " {images: [{container: app, image: example/app:1.2}]}",
         {"images": [{"container": "app", "image": "example/app:1.2"}]}),
    Case("flow-colon-key", " {a:1, http://x: y}", {"a:1": None, "http://x": True}),
    Case("flow-colon-before-comma", " [a:, b]", ["a:", "b"]),
    Case("flow-question-mark", " [a?b]", Refused("'?'")),
    # YAML 1.1 booleans and nulls (go-yaml's table)
    Case("bool-words", " [yes, Yes, YES, no, on, ON, off, y, Y, n, N, true, False]",
         [True, True, True, False, True, True, False, True, True, False, False, True, False]),
    Case("bool-not-words", " [yEs, oN, tRue, Off!]", ["yEs", "oN", "tRue", "Off!"]),
    Case("nulls", " [~, null, Null, NULL, '', nUll]", [None, None, None, None, "", "nUll"]),
    Case("empty-value", " {a: , b: ~}", {"a": None, "b": None}),
    # ints: Go's ParseInt base 0 after removing underscores, then ParseUint, then floats
    Case("ints", " [0755, 0o17, 0x1F, 0b101, -0b101, 1_000, 0x_1F, +12, 08, 0o]",
         [493, 15, 31, 5, -5, 1000, 31, 12, 8, "0o"]),
    # beyond int64 the API server's JSON decoder holds a float64 (kubectl sends the digits; the server rounds)
    Case("big-ints", " [9223372036854775807, 18446744073709551615, -9223372036854775809]",
         [9223372036854775807, 18446744073709552000, -9223372036854776000]),
    # floats go through JSON: integral ones are integers there
    Case("floats", " [1.5, 1e3, 1.0, .5, -0.0, 1e20, 1e21, 1e400, 12:30]",
         [1.5, 1000, 1, 0.5, 0, 100000000000000000000, 1e21, "1e400", "12:30"]),
    Case("inf", " .inf", Refused("not a JSON number")),
    Case("nan", " [.nan]", Refused("not a JSON number")),
    # timestamps stay the text written
    Case("timestamps", " [2026-11-26, 2001-12-14t21:59:43.10-05:00, 2001-12-14 21:59:43.10 -5]",
         ["2026-11-26", "2001-12-14t21:59:43.10-05:00", "2001-12-14 21:59:43.10 -5"]),
    # tags
    Case("tags", " [!!str 7, !!int '7', !!float 1, !foo 7, ! 12, !!binary aGk=, !!null '', !!timestamp 2001-01-01]",
         ["7", 7, 1, "7", "12", "hi", None, "2001-01-01"]),
    Case("tag-mismatch", " !!bool 1", Refused("cannot decode")),
    Case("binary-block", " !!binary |\n  aGVs\n  bG8=\n", "hello"),
    Case("collection-tags", " !!set {a, b}", {"a": None, "b": None}),
    # keys become JSON strings
    Case("keys", " {1: a, 0x10: b, 1.5: c, true: d, y: e, 1e7: f, .inf: g, 3.14159265358979: h}",
         {"1": "a", "16": "b", "1.5": "c", "true": "e", "1e+07": "f", ".inf": "g", "3.1415927": "h"}),
    Case("null-key", " {~: a}", Refused("null key")),
    Case("list-key", " {[1]: a}", Refused("invalid map key")),
    Case("keys-equal-as-strings", " {1: a, '1': b}", Refused("two keys"), ({"1": "a"}, {"1": "b"})),
    Case("uint64-key", " {18446744073709551615: a}", Refused("unsupported map key")),
    # duplicate keys: the last wins (kubectl converts without go-yaml's strict mode)
    Case("duplicate-key", " {a: 1, a: 2}", {"a": 2}),
    # anchors and merge keys: go-yaml's order, an explicit key before a merge is overwritten by it
    Case("anchor", "\n  base: &b {x: 1, z: [1, 2]}\n  use: *b\n",
         {"base": {"x": 1, "z": [1, 2]}, "use": {"x": 1, "z": [1, 2]}}),
    Case("merge-then-key", "\n  base: &b {x: 1, w: 2}\n  use: {<<: *b, w: 3}\n",
         {"base": {"x": 1, "w": 2}, "use": {"x": 1, "w": 3}}),
    Case("key-then-merge", "\n  base: &b {x: 1, w: 2}\n  use: {w: 3, <<: *b}\n",
         {"base": {"x": 1, "w": 2}, "use": {"x": 1, "w": 2}}),
    Case("merge-list", " {<<: [{x: 1}, {x: 2, w: 3}]}", {"x": 1, "w": 3}),
    Case("merge-scalar", " {<<: 1}", Refused("map merge")),
    Case("quoted-merge-key", " {'<<': 1}", {"<<": 1}),
    Case("recursive-anchor", " &a [*a]", Refused("contains itself")),
    Case("unknown-anchor", " *nope", Refused("unknown anchor")),
    # escapes: go-yaml has no \/ (libyaml and JSON do)
    Case("slash-escape", ' "a\\/b"', Refused("escape")),
    Case("escapes", ' ["\\t\\u00e9\\x41", "\\U0001F600"]', ["\t\u00e9A", "\U0001f600"]),
    # whitespace
    Case("tab-separator", "\t{a:\tb}", {"a": "b"}),
    Case("tab-indentation", "\n\t- 1\n", Refused("invalid YAML")),
    Case("block-scalar-tab-first", " |\n    \techo\n", Refused("tab character")),
    Case("block-scalar-tab-later", " |\n  all:\n  \techo\n", "all:\n\techo\n"),
    # nesting: at most 10,000 levels in JSON (kubectl's limit); "data" is one level
    Case("deep-9999", deep(9999), "DEEP-9999"),
    Case("deep-10000", deep(10000), Refused("deeper than 10000")),
]


def nested(levels: int) -> list[Any]:
    """``levels`` nested empty lists, built without recursion."""
    inner: list[Any] = []
    for _ in range(levels - 1):
        inner = [inner]
    return inner


def expected(case: Case) -> Any:
    return nested(9999) if case.expect == "DEEP-9999" else case.expect


def document(case: Case, kind: str = "Probe", name: str = "p") -> str:
    """A whole document holding the case's text as ``data``."""
    return f"apiVersion: meshgen-test.dev/v1\nkind: {kind}\nmetadata:\n  name: {name}\ndata:{case.text}\n"


def same(left: Any, right: Any) -> bool:
    """``left == right`` without recursion (the deep cases nest past Python's recursion limit)."""
    work = [(left, right)]
    while work:
        a, b = work.pop()
        if type(a) is not type(b):
            return False
        if isinstance(a, dict):
            if a.keys() != b.keys():
                return False
            work.extend((a[k], b[k]) for k in a)
        elif isinstance(a, list):
            if len(a) != len(b):
                return False
            work.extend(zip(a, b, strict=True))
        elif a != b:
            return False
    return True

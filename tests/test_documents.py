"""The YAML reader: it converts the parser's nodes itself (for speed), so it must read every input exactly as the
YAML library's own constructor would, apart from one deliberate difference: timestamps stay the text written."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML
from ruamel.yaml.constructor import SafeConstructor
from ruamel.yaml.error import YAMLError

from meshgen import yamltext
from meshgen.documents import _scalar_key, parse_documents, parse_list
from meshgen.errors import InvalidInput
from tests.test_yamltext import keys, trees


class _TimestampsAsText(SafeConstructor):
    pass


_TimestampsAsText.add_constructor("tag:yaml.org,2002:timestamp", SafeConstructor.construct_yaml_str)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k if isinstance(k, str) else _scalar_key(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def by_the_library(text: str) -> str:
    """What the library's constructor makes of ``text`` (as plain data), or "error"."""
    loader = YAML(typ="safe", pure=False)
    loader.Constructor = _TimestampsAsText
    try:
        docs = [d for d in loader.load_all(text) if d is not None]
    except (YAMLError, RecursionError, ArithmeticError, LookupError, TypeError, ValueError):
        return "error"
    return "error" if any(not isinstance(d, dict) for d in docs) else repr([_plain(d) for d in docs])


def by_meshgen(text: str) -> str:
    try:
        return repr([d.body for d in parse_documents(text, "t.yaml")])
    except InvalidInput:
        return "error"


TOKENS = ["a", "b", "1", "0x1F", "1_000", "true", "no", "~", "null", ".nan", "-.inf", "2026-11-26",
          "2001-12-14t21:59:43.10-05:00", "<<", "&x", "*x", "!!str", "!!int", "!!binary aGk=", "!!set", "!!omap",
          "!tag", "'q'", '"d\\n"', "|", ">", ":", ": ", "- ", "\n", "\n  ", "\n- ", "{", "}", "[", "]", ",", "? ",
          "---\n", "#c", " "]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=40))
def test_yaml_shaped_text_reads_as_the_library_reads_it(tokens: list[str]) -> None:
    text = "".join(tokens)
    assert by_meshgen(text) == by_the_library(text), text


@settings(max_examples=150, deadline=None)
@given(st.lists(st.dictionaries(keys, trees, max_size=5), min_size=1, max_size=3))
def test_written_documents_read_back_as_the_library_reads_them(documents: list[dict[str, Any]]) -> None:
    text = yamltext.dump_all(documents)
    assert by_meshgen(text) == by_the_library(text)


@pytest.mark.parametrize(
    "text",
    [
        "base: &b {x: 1, y: [a, b]}\nuse: {<<: *b, y: 2}\n",
        "base: &b\n  t: 2001-12-14 21:59:43.10 -5\nuse: {<<: *b, day: 2026-11-26}\n",
        "a: !!str 12\nb: !!int '7'\nc: !!float 1\nd: 0o17\ne: 1_000\nf: .inf\ng: ~\nh: True\n",
        "? [1, 2]\n: complex key\n",
        "1: int key\ntrue: bool key\nnull: null key\n1.5: float key\n",
        "s: !!set {a, b}\no: !!omap [{a: 1}, {b: 2}]\n",
        "bin: !!binary aGVsbG8=\n",
        "a: 1\na: 2\n",
        "x: !custom 1\n",
        "- not a mapping\n",
    ],
)
def test_regular_and_irregular_inputs_agree(text: str) -> None:
    assert by_meshgen(text) == by_the_library(text)


def test_timestamps_stay_as_written() -> None:
    [doc] = parse_documents("at: 2001-12-14t21:59:43.10-05:00\nday: 2026-11-26\n", "t.yaml")
    assert doc.body == {"at": "2001-12-14t21:59:43.10-05:00", "day": "2026-11-26"}
    [merged] = parse_documents("base: &b\n  at: 2001-12-14 21:59:43.10 -5\nuse: {<<: *b, day: 2026-11-26}\n",
                               "t.yaml")
    assert merged.body["use"] == {"at": "2001-12-14 21:59:43.10 -5", "day": "2026-11-26"}  # built by the library


def test_aliases_count_against_the_value_limit() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdef", "bcdefg", strict=True))
    with pytest.raises(InvalidInput, match="expands to more than"):
        parse_documents(bomb, "bomb.yaml")


def test_a_list_file_reads_the_same_way() -> None:
    docs = parse_list("- {a: 1, at: 2026-11-26}\n- {b: !!str 2}\n", "traffic.yaml")
    assert [d.body for d in docs] == [{"a": 1, "at": "2026-11-26"}, {"b": "2"}]
    assert [str(d.location) for d in docs] == ["traffic.yaml: [0]", "traffic.yaml: [1]"]

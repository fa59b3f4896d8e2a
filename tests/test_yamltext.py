"""The YAML writer: every output reads back as the same data under YAML 1.1 (PyYAML, like kubectl and Envoy)
and YAML 1.2 (ruamel), whatever the strings contain."""

from __future__ import annotations

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from meshgen import yamltext

TRICKY = ["on", "off", "y", "n", "yes", "No", "null", "~", "true", "1", "1.0", "1e3", "0x1F", "0755", "0o17",
          "1_000", "12:30", "12:30:45", "2026-11-26", ".inf", "-.nan", "=", "<<", "", " ", "-", "- x", "? x",
          "a: b", "a #c", "#c", "*alias", "&anchor", "!tag", "|", ">", "'", '"', "%x", "@x", "`x", "x:", "[1]",
          "{a}", "a,b", "\ttab", "new\nline", "\n", "a\n\n", "trailing ", "\u2028", "\x85", "\x00", "é"]
keys = st.one_of(st.sampled_from(TRICKY), st.text(max_size=8))
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63),
    st.floats(allow_nan=False, allow_infinity=True), st.sampled_from(TRICKY), st.text(max_size=20),
)
trees = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(keys, inner, max_size=4)), max_leaves=30)


@settings(max_examples=250, deadline=None)
@given(st.lists(st.dictionaries(keys, trees, max_size=5), min_size=1, max_size=3))
def test_round_trip_under_yaml_1_1_and_1_2(documents) -> None:
    text = yamltext.dump_all(documents)
    assert list(yaml.safe_load_all(text)) == documents
    assert list(YAML(typ="safe", pure=True).load_all(text)) == documents


def test_tricky_scalars_are_quoted_and_plain_ones_are_not() -> None:
    assert yamltext.scalar("on") == "'on'"
    assert yamltext.scalar("0755") == "'0755'"
    assert yamltext.scalar("1.20.2") == "1.20.2"
    assert yamltext.scalar("5xx,connect-failure") == "5xx,connect-failure"
    assert yamltext.scalar("x-meshgen-routing-key") == "x-meshgen-routing-key"
    assert yamltext.scalar("@type") == "'@type'"
    assert yamltext.scalar(1e20) == "1.0e+20"


def test_multi_line_strings_are_literal_blocks() -> None:
    assert yamltext.dump_all([{"lua": "a\n  b\n"}]) == "---\nlua: |\n  a\n    b\n"
    assert yamltext.dump_all([{"x": ["one\ntwo"]}]) == "---\nx:\n- |-\n  one\n  two\n"

"""The YAML reader reads what kubectl reads (sigs.k8s.io/yaml over go-yaml v2, after kubectl's document split):
the expectations are stated in tests/yaml_cases.py from those sources and checked against a real kube-apiserver in
tests/kube/test_yaml_dialect.py."""

from __future__ import annotations

import decimal
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshgen import yamltext
from meshgen.documents import locate, parse_documents, parse_list
from meshgen.errors import InvalidInput, Location
from tests.test_yamltext import keys
from tests.yaml_cases import CASES, Case, Refused, document, expected, same


def read(text: str) -> list[Any]:
    return [d.body for d in parse_documents(text, "t.yaml")]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_values_are_what_kubectl_reads(case: Case) -> None:
    text = document(case)
    if isinstance(case.expect, Refused):
        with pytest.raises(InvalidInput, match=case.expect.because.replace("?", r"\?").replace("[", r"\[")):
            read(text)
    else:
        assert same(read(text)[0]["data"], expected(case))


@pytest.mark.parametrize(("text", "documents"), [
    ("a: 1\n---\nb: 2\n", [{"a": 1}, {"b": 2}]),
    ("---\na: 1\n--- # next\nb: 2\n---\n", [{"a": 1}, {"b": 2}]),
    ("a: 1\n...\nthis: [is never read\n", [{"a": 1}]),  # go-yaml reads one document per piece
    ("---\n...\nb: 2\n", []),
    ("\ufeffa: 1\r\nb: |\r\n  x\r\n", [{"a": 1, "b": "x\n"}]),
    ('{"a": 1}\n{"b": 2}{"c": 3}\n', [{"a": 1}, {"b": 2}, {"c": 3}]),  # a JSON stream, as kubectl reads it
    ('{"a": 1}\n---\nb: yes\n', [{"a": 1}, {"b": True}]),  # JSON first, then YAML
    ("~\n---\nnull\n---\n# only a comment\n", []),
])
def test_a_stream_splits_as_kubectl_splits_it(text: str, documents: list[Any]) -> None:
    assert read(text) == documents


@pytest.mark.parametrize(("text", "message"), [
    ("--- {a: 1}\n", "only a comment after ---"),
    ("a: 1\n----\nb: 2\n", "only a comment after ---"),
    ("%YAML 1.1\n---\na: 1\n", "invalid YAML"),  # kubectl's split leaves the directive alone
    ("- a\n", "must be a mapping"),
])
def test_streams_kubectl_refuses(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        read(text)


def test_errors_name_the_line_in_the_whole_stream() -> None:
    text = "a: 1\n---\nkind: X\nspec:\n  ports:\n  - port: 80\n  - {port: 81, name: [x?]}\n"
    with pytest.raises(InvalidInput) as caught:
        read(text)
    assert str(caught.value).startswith("error: t.yaml:7: ")
    assert str(locate(Location("t.yaml", 1, ("spec", "ports", 0, "port")), text)) == "t.yaml:6: spec.ports[0].port"
    json_text = '{"kind": "X",\n "spec": {"a": 1}}\n---\nb: 2\n'
    assert str(locate(Location("t.yaml", 0, ("spec", "a")), json_text)) == "t.yaml:2: spec.a"
    assert str(locate(Location("t.yaml", 1, ("b",)), json_text)) == "t.yaml:4: b"


def test_deep_nesting_is_refused_with_a_message_not_a_crash(tmp_path: Any) -> None:
    """Defect 1: ~30,000 nesting levels crashed the C composer (exit 139) although under the 1 MiB limit."""
    for name, body in (("flow", "a: " + "[" * 30_000 + "]" * 30_000 + "\n"),
                       ("block", "- " * 30_000 + "x\n"),
                       ("aliased", "a: &a\n" + "- " * 9_990 + "x\nb: " + "[" * 12 + "*a" + "]" * 12 + "\n"),
                       ("json", '{"a": ' + "[" * 30_000 + "]" * 30_000 + "}\n")):
        path = tmp_path / f"{name}.yaml"
        path.write_text(body)
        result = subprocess.run([sys.executable, "-m", "meshgen", "validate", "-f", str(path)],
                                capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 2, (name, result.returncode, result.stderr[-500:])
        assert "deeper than 10000 levels" in result.stderr and "Traceback" not in result.stderr, name


def test_aliases_count_against_kubectls_ratio() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdef", "bcdefg", strict=True))
    with pytest.raises(InvalidInput, match="excessive aliasing"):
        read(bomb)


def test_a_list_file_reads_the_same_way() -> None:
    docs = parse_list("- {a: 1, at: 2026-11-26, on: yes}\n- {b: !!str 2}\n", "traffic.yaml")
    assert [d.body for d in docs] == [{"a": 1, "at": "2026-11-26", "true": True}, {"b": "2"}]
    assert [str(d.location) for d in docs] == ["traffic.yaml: [0]", "traffic.yaml: [1]"]


def _as_json(value: Any) -> Any:
    """What a value is once kubectl has sent it as JSON: Go writes an integral float below 1e21 as its shortest
    digits padded with zeros, which the API server reads as an integer."""
    if isinstance(value, dict):
        return {k: _as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_json(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(decimal.Decimal(repr(value)))
    return value


finite = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False,
              allow_infinity=False), st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)), max_leaves=30)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(keys, finite, min_size=1, max_size=5), min_size=1, max_size=3))
def test_written_documents_read_back_as_written(documents: list[dict[str, Any]]) -> None:
    """meshgen's own output (yamltext) means to kubectl exactly the data it was written from."""
    assert read(yamltext.dump_all(documents)) == _as_json(documents)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["a", "1", "yes", "~", "<<", "&x", "*x", "!!str", "!!int", "'q'", '"d\\n"', "|",
                                 ":", ": ", "- ", "\n", "\n  ", "{", "}", "[", "]", ",", "? ", "---\n", "...\n",
                                 "#c", " ", "\t", "a:b"]), max_size=40))
def test_any_text_reads_or_fails_with_a_located_message(tokens: list[str]) -> None:
    try:
        read("".join(tokens))
    except InvalidInput as exc:
        assert all(p.location is not None for p in exc.problems)


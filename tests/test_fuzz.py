"""Fuzzing the loader and the compiler: whatever the input, `meshgen compile` exits 0 or 2 with a message, never a
traceback. `make test` runs a bounded budget; `make fuzz` a long one (HYPOTHESIS_PROFILE=fuzz)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshgen import yamltext
from meshgen.cli import main
from tests.conftest import BOOKINFO
from tests.strategies import baselines, sandbox_sets

FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False),
              st.text(max_size=30)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=20,
)


def compile_files(tmp: Path, specs: str | bytes, baseline: str | bytes | None = None) -> tuple[int, str, str]:
    spec_file = tmp / "specs.yaml"
    spec_file.write_bytes(specs.encode() if isinstance(specs, str) else specs)
    args = ["compile", "-f", str(spec_file), "--baseline", str(BOOKINFO)]
    if baseline is not None:
        base_file = tmp / "baseline.yaml"
        base_file.write_bytes(baseline.encode() if isinstance(baseline, str) else baseline)
        args[-1] = str(base_file)
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def assert_clean(code: int, stdout: str, stderr: str) -> None:
    assert code in (0, 2), (code, stderr)
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    if code == 2:
        assert stderr.startswith("error: ") and stdout == "", stderr
    else:
        assert stdout.startswith("---\n") or stdout == "", stdout


def mutate(data: st.DataObject, tree: Any) -> Any:
    """The tree with one random edit: a value replaced by a random one, a key removed, or an unknown key added."""
    tree = copy.deepcopy(tree)
    node = tree
    while True:
        if isinstance(node, dict) and node:
            key = data.draw(st.sampled_from(sorted(node, key=str)))
            action = data.draw(st.sampled_from(["descend", "replace", "delete", "add"]))
            if action == "descend" and isinstance(node[key], dict | list) and node[key]:
                node = node[key]
                continue
            if action == "delete":
                del node[key]
            elif action == "add":
                node[data.draw(st.text(min_size=1, max_size=8))] = data.draw(json_values)
            else:
                node[key] = data.draw(json_values)
            return tree
        if isinstance(node, list) and node:
            index = data.draw(st.integers(0, len(node) - 1))
            if isinstance(node[index], dict | list) and node[index] and data.draw(st.booleans()):
                node = node[index]
                continue
            node[index] = data.draw(json_values)
            return tree
        return data.draw(json_values)


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes(tmp_path_factory: Any, raw: bytes) -> None:
    assert_clean(*compile_files(tmp_path_factory.mktemp("fuzz"), raw))


@FUZZ
@given(st.lists(st.sampled_from([*"ab:-{}[],&*!|>'\"#%@ \n\t?=.0123456789~", "!!int", "!!float", "!!binary",
                                 "!!timestamp", "!!set", "<<", "true", "null"]), max_size=120))
def test_yaml_shaped_text(tmp_path_factory: Any, pieces: list[str]) -> None:
    text = "".join(pieces)
    assert_clean(*compile_files(tmp_path_factory.mktemp("fuzz"), "apiVersion: meshgen.dev/v1alpha1\n" + text))


@FUZZ
@given(st.lists(st.dictionaries(st.text(max_size=12), json_values, max_size=6), min_size=1, max_size=3))
def test_random_documents(tmp_path_factory: Any, documents: list[dict[str, Any]]) -> None:
    assert_clean(*compile_files(tmp_path_factory.mktemp("fuzz"), yamltext.dump_all(documents)))


@FUZZ
@given(st.data())
def test_mutated_specs_over_mutated_baselines(tmp_path_factory: Any, data: st.DataObject) -> None:
    baseline = data.draw(baselines())
    specs = data.draw(sandbox_sets(baseline))
    for _ in range(data.draw(st.integers(0, 3))):
        index = data.draw(st.integers(0, len(specs) - 1))
        specs[index] = mutate(data, specs[index])
    for _ in range(data.draw(st.integers(0, 2))):
        index = data.draw(st.integers(0, len(baseline) - 1))
        baseline[index] = mutate(data, baseline[index])
    code, stdout, stderr = compile_files(tmp_path_factory.mktemp("fuzz"), yamltext.dump_all(specs),
                                         yamltext.dump_all(baseline))
    assert_clean(code, stdout, stderr)

"""The CLI as users meet it: output formats, determinism, stdin, schema, validate, help."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from meshgen.cli import main
from tests.conftest import BOOKINFO, EXAMPLES, GOLDEN

SANDBOX = """\
apiVersion: meshgen.dev/v1alpha1
kind: Sandbox
metadata: {name: pr-1}
spec:
  routingKey: pr1
  forks: [{forkOf: {namespace: bookinfo, name: reviews-v1}}]
"""


def test_compile_is_byte_identical_across_processes() -> None:
    """Separate interpreters (different hash seeds) must print the same bytes."""
    outputs = set()
    for seed in ("1", "2"):
        proc = subprocess.run(
            [sys.executable, "-m", "meshgen", "compile", "-f", str(EXAMPLES / "sandboxes.yaml"),
             "--baseline", str(EXAMPLES / "baseline")],
            capture_output=True, check=True, env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"},
        )
        outputs.add(proc.stdout)
    assert len(outputs) == 1


def test_json_output_is_a_kubernetes_list(meshgen) -> None:
    result = meshgen("compile", "-f", str(EXAMPLES / "sandboxes.yaml"), "--baseline", str(EXAMPLES / "baseline"),
                     "-o", "json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["kind"] == "List"
    kinds = [(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in data["items"]]
    assert kinds == sorted(kinds)
    assert {"Deployment", "Service", "VirtualService", "DestinationRule", "EnvoyFilter"} <= {k for k, _, _ in kinds}


def test_stdin_and_yaml_output_agree_with_files(meshgen, tmp_path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SANDBOX)
    from_file = meshgen("compile", "-f", str(path), "--baseline", str(BOOKINFO))
    from_stdin = meshgen("compile", "-f", "-", "--baseline", str(BOOKINFO), input=SANDBOX)
    assert from_file.exit_code == from_stdin.exit_code == 0
    assert from_file.stdout == from_stdin.stdout
    assert from_file.stdout.startswith("---\napiVersion: apps/v1\nkind: Deployment\n")


def test_warnings_go_to_stderr(meshgen, tmp_path) -> None:
    (tmp_path / "s.yaml").write_text(SANDBOX + "---\napiVersion: meshgen.dev/v1alpha1\nkind: RouteGroup\n"
                                     "metadata: {name: lonely}\nspec: {match: {all: [{label: {key: a, value: b}}]}}\n")
    result = meshgen("compile", "-f", str(tmp_path / "s.yaml"), "--baseline", str(BOOKINFO))
    assert result.exit_code == 0
    assert "warning: RouteGroup lonely: matches no sandbox" in result.stderr
    assert "warning" not in result.stdout


def test_validate_with_and_without_baseline(meshgen, tmp_path) -> None:
    (tmp_path / "s.yaml").write_text(SANDBOX)
    alone = meshgen("validate", "-f", str(tmp_path / "s.yaml"))
    assert alone.exit_code == 0 and "ok: 1 sandbox(es), 0 route group(s)" in alone.stdout
    full = meshgen("validate", "-f", str(tmp_path / "s.yaml"), "--baseline", str(BOOKINFO))
    assert full.exit_code == 0 and "1 fork(s), 1 routing object(s)" in full.stdout
    (tmp_path / "s.yaml").write_text(SANDBOX.replace("reviews-v1", "nope"))
    assert meshgen("validate", "-f", str(tmp_path / "s.yaml")).exit_code == 0  # spec-only check passes
    assert meshgen("validate", "-f", str(tmp_path / "s.yaml"), "--baseline", str(BOOKINFO)).exit_code == 2


@pytest.mark.parametrize("kind", ["Sandbox", "RouteGroup", "MeshPolicy"])
def test_schema(meshgen, kind: str) -> None:
    result = meshgen("schema", kind)
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema["additionalProperties"] is False
    assert "apiVersion" in schema["properties"]


def test_schema_rejects_unknown_kind(meshgen) -> None:
    result = meshgen("schema", "Pod")
    assert result.exit_code == 2


@pytest.mark.parametrize("command", sorted(main.commands))
def test_every_command_has_help_with_examples(meshgen, command: str) -> None:
    result = meshgen(command, "--help")
    assert result.exit_code == 0
    assert "Example" in result.stdout


def test_policy_flag(meshgen, tmp_path) -> None:
    (tmp_path / "s.yaml").write_text(SANDBOX)
    result = meshgen("compile", "-f", str(tmp_path / "s.yaml"), "--baseline", str(BOOKINFO),
                     "--policy", str(GOLDEN / "signadot-compat" / "policy.yaml"))
    assert result.exit_code == 0
    assert "uberctx-sd-routing-key" in result.stdout


def test_default_policy_file_matches_the_built_in_one() -> None:
    from ruamel.yaml import YAML

    from meshgen.errors import Location
    from meshgen.spec.models import DEFAULT_POLICY, MeshPolicy
    from meshgen.validation import validate_model
    from tests.conftest import POLICIES

    shipped = validate_model(MeshPolicy, YAML(typ="safe").load((POLICIES / "default.yaml").read_text()),
                             Location("default.yaml"))
    assert shipped == DEFAULT_POLICY


def test_a_workload_scoped_rule_the_fork_escapes_is_a_warning(meshgen) -> None:
    """golden/user-destinationrule has a DestinationRule for ratings scoped to app=reviews: a fork of reviews
    carries app=reviews-<sandbox>, so that rule would shape the baseline's calls and not the fork's."""
    case = GOLDEN / "user-destinationrule"
    forks_reviews = SANDBOX.replace("name: pr-1}", "name: pr-9}")
    result = meshgen("compile", "-f", "-", "--baseline", str(case / "baseline"), input=forks_reviews)
    assert result.exit_code == 0, result.stderr
    assert ("warning: Sandbox pr-9: DestinationRule bookinfo/ratings-for-reviews applies to reviews-v1 by its "
            "workloadSelector (app=reviews) but not to its fork") in result.stderr
    forks_ratings = meshgen("compile", "-f", str(case / "sandboxes.yaml"), "--baseline", str(case / "baseline"))
    assert forks_ratings.exit_code == 0 and "warning" not in forks_ratings.stderr

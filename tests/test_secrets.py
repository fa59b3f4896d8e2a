"""Secret data never reaches output: not in compiled resources (YAML or JSON), not in errors, not in warnings."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

from tests.conftest import GOLDEN

TOKEN = "test-edge-token-7f3a9c"  # golden/edge-token/baseline/edge-token-secret.yaml
SECRET_FORMS = (TOKEN, base64.b64encode(TOKEN.encode()).decode())


def assert_hidden(*texts: str) -> None:
    for text in texts:
        for form in SECRET_FORMS:
            assert form not in text


def test_compile_prints_only_the_tokens_digest(meshgen) -> None:
    case = GOLDEN / "edge-token"
    for output in ("yaml", "json"):
        result = meshgen("compile", "-f", str(case / "sandboxes.yaml"), "--baseline", str(case / "baseline"),
                         "--policy", str(case / "policy.yaml"), "-o", output)
        assert result.exit_code == 0, result.stderr
        assert_hidden(result.stdout, result.stderr)
        assert "TOKEN_SHA256" in result.stdout


def test_a_broken_secret_is_reported_without_its_data(meshgen, tmp_path: Path) -> None:
    case = tmp_path / "case"
    shutil.copytree(GOLDEN / "edge-token", case)
    secret = case / "baseline" / "edge-token-secret.yaml"
    secret.write_text(secret.read_text().replace(f"token: {SECRET_FORMS[1]}", f"token: [{SECRET_FORMS[1]}, {TOKEN}]"))
    result = meshgen("compile", "-f", str(case / "sandboxes.yaml"), "--baseline", str(case / "baseline"),
                     "--policy", str(case / "policy.yaml"))
    assert result.exit_code == 2
    assert "data.token: should be a string (got a list value, not shown)" in result.stderr
    assert_hidden(result.stdout, result.stderr)


def test_env_values_are_not_echoed_in_errors(meshgen, tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("apiVersion: meshgen.dev/v1alpha1\nkind: Sandbox\nmetadata: {name: s}\nspec:\n"
                    "  forks: [{forkOf: {namespace: bookinfo, name: reviews-v1}, customizations: {env: "
                    "[{name: DB_PASSWORD, value: [hunter2-secret]}]}}]\n")
    result = meshgen("compile", "-f", str(spec), "--baseline", str(GOLDEN / "_shared"))
    assert result.exit_code == 2
    assert "spec.forks[0].customizations.env[0].value" in result.stderr
    assert "hunter2-secret" not in result.stderr


def test_env_from_secrets_stays_a_reference(meshgen) -> None:
    case = GOLDEN / "multi-port-service"
    result = meshgen("compile", "-f", str(case / "sandboxes.yaml"), "--baseline", str(case / "baseline"))
    assert "secretKeyRef" in result.stdout and "DB_PASSWORD" in result.stdout

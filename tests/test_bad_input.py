"""Every kind of bad input: one clear message naming file, line and field path, exit code 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import BOOKINFO

GOOD = """\
apiVersion: meshgen.dev/v1alpha1
kind: Sandbox
metadata: {name: pr-1}
spec:
  forks: [{forkOf: {namespace: bookinfo, name: reviews-v1}}]
"""


def compile_text(meshgen, tmp_path: Path, text: str | bytes, name: str = "sandboxes.yaml"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return meshgen("compile", "-f", str(path), "--baseline", str(BOOKINFO)), path


def assert_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        pytest.param("kind: Sandbox\nmetadata: {name: [}\n", [":2: invalid YAML"], id="malformed-yaml"),
        # kubectl keeps the last of two equal keys, but picks at random between keys that only print alike
        pytest.param("kind: Sandbox\n1: a\n'1': b\n", [":3: two keys read as '1'"], id="keys-equal-as-strings"),
        pytest.param("- just\n- a list\n", [":1: a document must be a mapping"], id="not-a-mapping"),
        pytest.param("kind: Sandbox\nreplicas: !!int\n", [":2: cannot decode !!null `` as a !!int"],
                     id="empty-tagged-int"),
        pytest.param(GOOD.replace("v1alpha1", "v2"), [":1: apiVersion: apiVersion 'meshgen.dev/v2' is not supported",
                                                      "fix: use apiVersion: meshgen.dev/v1alpha1"], id="api-version"),
        pytest.param(GOOD.replace("kind: Sandbox", "kind: Sandbx"), [":2: kind: kind 'Sandbx' is not a meshgen spec",
                                                                    "fix: use one of: Sandbox, RouteGroup"], id="kind"),
        pytest.param(GOOD.replace("kind: Sandbox", "kind: Deployment"),
                     ["Deployment is a baseline object", "--baseline"], id="baseline-kind-in-specs"),
        pytest.param(GOOD.replace("forks:", "forkz:"), [":5: spec.forkz: unknown field 'forkz'",
                                                        "did you mean 'forks'?"], id="unknown-field"),
        pytest.param(GOOD.replace("forkOf:", "forkof:"), ["spec.forks[0].forkof: unknown field", "'forkOf'"],
                     id="nested-unknown-field"),
        pytest.param(GOOD + "  ttl: {duration: 2 hours}\n",
                     [":6: spec.ttl.duration: duration '2 hours' is not a positive"], id="bad-duration"),
        pytest.param(GOOD.replace("pr-1", "PR_1"), [":3: metadata.name: 'PR_1' is not a DNS-1123 label"],
                     id="name-not-dns"),
        pytest.param(GOOD.replace("pr-1", "a" * 41), ["metadata.name:", "41 characters; at most 40"],
                     id="name-too-long"),
        pytest.param(GOOD + "  routingKey: 'a b'\n", [":6: spec.routingKey: 'a b' is not a routing key"],
                     id="bad-routing-key"),
        pytest.param(GOOD.replace("namespace: bookinfo", "namespace: 7"),
                     ["spec.forks[0].forkOf.namespace: should be a string (got 7)"], id="wrong-type"),
        pytest.param(GOOD.replace("name: reviews-v1", "name: reviews-v9"),
                     [":5: spec.forks[0].forkOf: Deployment bookinfo/reviews-v9 is not in the baseline",
                      "did you mean", "reviews-v1"], id="unknown-workload"),
        pytest.param("", ["holds no documents"], id="empty-file"),
        pytest.param("---\n---\n", ["holds no documents"], id="only-separators"),
        pytest.param(b"\xff\xfe bad", ["not UTF-8"], id="not-utf8"),
    ],
)
def test_bad_spec(meshgen, tmp_path: Path, text: str, fragments: list[str]) -> None:
    result, path = compile_text(meshgen, tmp_path, text)
    assert_error(result, str(path), *fragments)


def test_file_over_one_mebibyte(meshgen, tmp_path: Path) -> None:
    result, path = compile_text(meshgen, tmp_path, GOOD + "# " + "x" * (1 << 20) + "\n")
    assert_error(result, f"{path}: file is larger than 1024 KiB", "split it")


def test_alias_bomb_is_refused_quickly(meshgen, tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    bomb = "apiVersion: meshgen.dev/v1alpha1\nkind: Sandbox\n" + "\n".join(lines) + "\n"
    result, path = compile_text(meshgen, tmp_path, bomb)
    assert_error(result, str(path), "excessive aliasing", "remove YAML anchors")


def test_a_long_string_kubectl_accepts_is_read(meshgen, tmp_path: Path) -> None:
    """A Grafana dashboard ConfigMap holds strings of hundreds of KiB; kubectl applies it, so meshgen reads it."""
    baseline = tmp_path / "baseline.yaml"
    dashboard = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: dashboards}\ndata:\n  d.json: " + "d" * 600_000
    baseline.write_text(BOOKINFO.read_text() + "\n---\n" + dashboard + "\n")
    spec = tmp_path / "specs.yaml"
    spec.write_text(GOOD)
    result = meshgen("compile", "-f", str(spec), "--baseline", str(baseline))
    assert result.exit_code == 0, result.stderr


def test_missing_file(meshgen, tmp_path: Path) -> None:
    result = meshgen("compile", "-f", str(tmp_path / "nope.yaml"), "--baseline", str(BOOKINFO))
    assert_error(result, "nope.yaml: spec file or directory does not exist")


def test_empty_directory(meshgen, tmp_path: Path) -> None:
    result = meshgen("compile", "-f", str(tmp_path), "--baseline", str(BOOKINFO))
    assert_error(result, "no spec files found")


def test_all_problems_in_all_files_are_reported_together(meshgen, tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD.replace("pr-1", "Bad"))
    (tmp_path / "b.yaml").write_text(GOOD.replace("forks:", "forkz:"))
    result = meshgen("compile", "-f", str(tmp_path), "--baseline", str(BOOKINFO))
    assert_error(result, "a.yaml:3: metadata.name", "b.yaml:5: spec.forkz")
    assert result.stderr.count("error:") == 2


def test_stdin_errors_have_lines(meshgen) -> None:
    result = meshgen("compile", "-f", "-", "--baseline", str(BOOKINFO), input=GOOD.replace("forks:", "forkz:"))
    assert_error(result, "-:5: spec.forkz: unknown field")


def test_bad_baseline_object_is_located(meshgen, tmp_path: Path) -> None:
    baseline = tmp_path / "baseline.yaml"
    baseline.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: x, namespace: y}\nspec:\n  ports: 80\n")
    (tmp_path / "s.yaml").write_text(GOOD)
    result = meshgen("compile", "-f", str(tmp_path / "s.yaml"), "--baseline", str(baseline))
    assert_error(result, f"{baseline}:5: spec.ports: should be a list (got 80)")


def test_bad_policy_file(meshgen, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("apiVersion: meshgen.dev/v1alpha1\nkind: MeshPolicy\nmetadata: {name: p}\n"
                      "spec:\n  routingHeader: X-Upper\n")
    result, _ = compile_text(meshgen, tmp_path, GOOD)
    result = meshgen("compile", "-f", str(tmp_path / "sandboxes.yaml"), "--baseline", str(BOOKINFO),
                     "--policy", str(policy))
    assert_error(result, f"{policy}:5: spec.routingHeader: 'X-Upper' is not a lower-case HTTP header name")


def test_usage_errors_exit_2(meshgen) -> None:
    result = meshgen("compile", "--baseline", str(BOOKINFO))
    assert result.exit_code == 2
    assert "Missing option '-f'" in result.stderr


def test_console_script_exit_code_and_no_traceback(tmp_path: Path) -> None:
    """The installed entry point, as a user runs it."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("forks:", "forkz:"))
    proc = subprocess.run(
        [sys.executable, "-m", "meshgen", "compile", "-f", str(bad), "--baseline", str(BOOKINFO)],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert f"error: {bad}:5: spec.forkz: unknown field 'forkz'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_too_many_documents_in_one_file(meshgen, tmp_path: Path) -> None:
    result, path = compile_text(meshgen, tmp_path, "---\n".join(["a: 1\n"] * 5001))
    assert_error(result, f"{path}", "more than 5000 documents in one file", "split the input")

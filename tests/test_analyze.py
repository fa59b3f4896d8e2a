"""istioctl analyze: every golden case's output passes with no error and only the warnings golden/ANALYZE.md lists
with a reason; ``meshgen compile --analyze`` reports analyze's errors as a failed compile."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from meshgen import compiler, golden
from meshgen.testenv import binaries, gateway, istioctl
from tests.conftest import GOLDEN

COMPILING = [c for c in golden.discover(GOLDEN) if (c.path / golden.EXPECTED).exists()]
LISTED = re.compile(r"^\| (IST\d{4}) \| ([^|]+?) \|", re.MULTILINE)
BASELINE_ERRORS = "## Errors a baseline has on purpose"
BASELINE_ERROR = re.compile(r"^\| (IST\d{4}) \| ([^|]+?) \| ([^|]+?) \|", re.MULTILINE)


@pytest.fixture(scope="module")
def binary() -> Path:
    found = binaries.find(binaries.ISTIOCTL)
    if found is None:
        message = f"istioctl analyze tests need istioctl: {binaries.HOW_TO_GET}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="module")
def edge_gateway(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Gateway the local meshes provide (istio-system/meshgen-edge), which the edge cases' VirtualServices bind
    to: a cluster with an ingress gateway has it, so analyze sees it too (else: IST0101, gateway not found)."""
    path = tmp_path_factory.mktemp("edge") / "edge-gateway.yaml"
    path.write_text(compiler.dump([gateway.gateway()]))
    return path


def test_golden_cases_have_no_analyze_error_and_only_listed_warnings(binary: Path, edge_gateway: Path) -> None:
    text = (GOLDEN / "ANALYZE.md").read_text()
    warnings_part, _, errors_part = text.partition(BASELINE_ERRORS)
    listed = set(LISTED.findall(warnings_part))
    assert listed, "golden/ANALYZE.md lists no warning"
    # errors a case's baseline has on purpose (what meshgen does with them is the case), with the case named
    baseline_errors = {(code, origin, case) for code, origin, case in BASELINE_ERROR.findall(errors_part)}
    listed |= {(code, origin) for code, origin, _ in baseline_errors}
    seen: set[tuple[str, str]] = set()
    unexplained = []
    for case in COMPILING:
        inputs = [case.path / golden.EXPECTED, case.path / golden.BASELINE, edge_gateway]
        for finding in istioctl.analyze(inputs, binary):
            if finding.level == istioctl.ERROR:
                assert (finding.code, finding.origin, case.name) in baseline_errors, (
                    f"{case.name}: {finding.render()}")
            seen.add((finding.code, finding.origin))
            if (finding.code, finding.origin) not in listed:
                unexplained.append(f"{case.name}: {finding.render()}")
    assert not unexplained, "warnings not listed in golden/ANALYZE.md:\n" + "\n".join(unexplained)
    assert listed <= seen, f"golden/ANALYZE.md lists warnings no case has any more: {sorted(listed - seen)}"


def test_compile_analyze_fails_on_an_analyze_error(binary: Path, tmp_path: Path, meshgen, monkeypatch) -> None:
    monkeypatch.setenv("PATH", f"{binary.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    case = GOLDEN / "single-fork"
    args = ["compile", "-f", str(case / golden.SANDBOXES), "--analyze"]
    ok = meshgen(*args, "--baseline", str(case / golden.BASELINE))
    assert ok.exit_code == 0 and ok.stdout.startswith("---")
    assert "istioctl analyze: Warning [IST0133] (EnvoyFilter istio-system/meshgen-routing-key <compiled>:" in ok.stderr

    shutil.copytree(case / golden.BASELINE, tmp_path / "baseline")
    (tmp_path / "baseline" / "ratings-vs.yaml").write_text(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: ratings, namespace: bookinfo}\n"
        "spec:\n  hosts: [ratings]\n  http: [{route: [{destination: {host: ratings, subset: v9}}]}]\n")
    bad = meshgen(*args, "--baseline", str(tmp_path / "baseline"))
    assert bad.exit_code == 2 and bad.stdout == ""
    assert "error: istioctl analyze: Error [IST0101] (VirtualService bookinfo/ratings" in bad.stderr


def test_compile_analyze_says_how_to_get_istioctl(tmp_path: Path, meshgen, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("MESHGEN_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("MESHGEN_TESTENV_BIN", raising=False)
    case = GOLDEN / "single-fork"
    result = meshgen("compile", "-f", str(case / golden.SANDBOXES), "--baseline", str(case / golden.BASELINE),
                     "--analyze")
    assert result.exit_code == 2 and result.stdout == ""
    assert "istioctl is not on PATH" in result.stderr

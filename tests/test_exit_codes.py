"""One exit path: 0 success, 1 only for pending changes, 2 for every error, 130 on interrupt, from the real entry
point (``python -m meshgen``, and the function the console script runs), with one line instead of a traceback."""

from __future__ import annotations

import ast
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from meshgen.errors import ChecksFailed, ExitCode, InvalidInput, exit_code, result_code
from tests.conftest import BOOKINFO, GOLDEN, ROOT

SINGLE_FORK = GOLDEN / "single-fork"


def meshgen(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshgen", *args], input=stdin, capture_output=True, text=True,
                          timeout=120, check=False, cwd=ROOT)


def assert_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_the_mapping() -> None:
    assert exit_code(KeyboardInterrupt()) is ExitCode.INTERRUPTED
    chained = RuntimeError("aborted")
    chained.__cause__ = KeyboardInterrupt()
    assert exit_code(chained) is ExitCode.INTERRUPTED  # click re-raises Ctrl-C as its Abort, from the interrupt
    assert exit_code(InvalidInput.one(None, "bad")) is ExitCode.ERROR
    assert exit_code(ChecksFailed("2 failed")) is ExitCode.ERROR
    assert exit_code(SystemExit(1)) is ExitCode.ERROR  # a library's exit 1 is not "changes pending"
    assert exit_code(SystemExit(0)) is ExitCode.OK
    assert exit_code(ValueError("a bug")) is ExitCode.ERROR
    assert [result_code(r) for r in (None, ExitCode.CHANGES, 0, 1)] == [ExitCode.OK, ExitCode.CHANGES, ExitCode.OK,
                                                                         ExitCode.ERROR]


def test_nothing_outside_the_entry_point_exits() -> None:
    """No command chooses its exit code by exiting or by raising click's exception (which exits 1): only
    meshgen/cli/__init__.py and meshgen/__main__.py end the process. (The helper programs the test environment
    starts, echo workloads and the binary builder, are programs of their own.)"""
    entry = {"meshgen/cli/__init__.py", "meshgen/__main__.py", "meshgen/testenv/echo.py",
             "meshgen/testenv/binaries.py"}
    found = []
    for path in sorted((ROOT / "meshgen").rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        if name in entry:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Raise) and node.exc is not None:
                raised = ast.unparse(node.exc.func if isinstance(node.exc, ast.Call) else node.exc)
                exits = raised in ("SystemExit", "click.ClickException", "ClickException", "click.Abort")
            elif isinstance(node, ast.Call):
                exits = ast.unparse(node.func) in ("sys.exit", "ctx.exit", "os._exit", "exit", "quit")
            else:
                continue
            if exits:
                found.append(f"{name}:{node.lineno}: {ast.unparse(node)}")
    assert found == []


def test_usage_errors_exit_2() -> None:
    assert_error(meshgen("compile", "--no-such-flag"), "No such option")
    assert_error(meshgen("compile"), "Missing option '-f'")
    assert_error(meshgen("nope"), "No such command")


def test_help_and_version_exit_0() -> None:
    assert meshgen("--help").returncode == 0
    assert meshgen("--version").returncode == 0


def test_an_empty_path_is_not_the_current_directory() -> None:
    result = meshgen("compile", "-f", "", "--baseline", str(BOOKINFO))
    assert_error(result, "'': an empty spec path", "fix: pass a file, a directory or '-'")
    assert result.stdout == ""
    assert_error(meshgen("compile", "-f", str(SINGLE_FORK / "sandboxes.yaml"), "--baseline", " "),
                 "an empty baseline path")


def test_golden_without_cases_is_an_error(tmp_path: Path) -> None:
    missing = meshgen("golden", "--via", "none", "--cases", str(tmp_path / "nope"))
    assert_error(missing, "the golden cases directory does not exist")
    assert "passed" not in missing.stdout
    assert_error(meshgen("golden", "--via", "none", "--cases", str(tmp_path)), "no golden cases here")


def test_a_failed_golden_case_exits_2(tmp_path: Path) -> None:
    case = tmp_path / "cases" / "drifted"
    case.mkdir(parents=True)
    (case / "sandboxes.yaml").write_text((SINGLE_FORK / "sandboxes.yaml").read_text())
    (case / "baseline").mkdir()
    (case / "baseline" / "bookinfo.yaml").write_text(BOOKINFO.read_text())
    (case / "expected.yaml").write_text("--- {}\n")
    result = meshgen("golden", "--via", "none", "--cases", str(tmp_path / "cases"))
    assert_error(result, "error: 1 of 1 golden case(s) failed")
    assert "0 passed, 1 failed" in result.stdout


@pytest.mark.parametrize(
    ("traffic", "fragments"),
    [
        pytest.param("", ["traffic.yaml: the traffic file holds no checks"], id="empty"),
        pytest.param("- request: {host: reviews.bookinfo.svc.cluster.local, port: 9999}\n  expect: {}\n",
                     ["traffic.yaml:1: [0].request.port: Service bookinfo/reviews does not serve port 9999",
                      "fix: use one of its ports: 9080"], id="port-not-served"),
        pytest.param("- request: {host: reviews.bookinfo.svc.cluster.local, headers: {x-a: \"1\\r\\nx-b: 2\"}}\n"
                     "  expect: {}\n", ["request.headers: header x-a: a value holds CR, LF"], id="crlf-in-value"),
        pytest.param("- request: {host: reviews.bookinfo.svc.cluster.local, headers: {\":authority\": x}}\n"
                     "  expect: {}\n", ["header ':authority' is an HTTP/2 pseudo-header"], id="pseudo-header"),
        pytest.param("- request: {host: reviews.bookinfo.svc.cluster.local, headers: {\"x a\": x}}\n"
                     "  expect: {}\n", ["header name 'x a' is not an HTTP token"], id="space-in-name"),
        pytest.param("- request: {host: reviews.bookinfo.svc.cluster.local, path: \"/a b\"}\n  expect: {}\n",
                     ["path '/a b' has a space"], id="space-in-path"),
        pytest.param("- request: {host: reviewz.bookinfo.svc.cluster.local}\n  expect: {}\n",
                     ["reviewz.bookinfo.svc.cluster.local is not a Service host of the mesh",
                      "did you mean: reviews.bookinfo.svc.cluster.local"], id="unknown-host"),
    ],
)
def test_verify_reports_traffic_file_mistakes_before_starting_anything(tmp_path: Path, traffic: str,
                                                                       fragments: list[str]) -> None:
    path = tmp_path / "traffic.yaml"
    path.write_text(traffic)
    result = meshgen("verify", "-f", str(SINGLE_FORK / "sandboxes.yaml"), "--baseline",
                     str(SINGLE_FORK / "baseline"), "--traffic", str(path))
    assert_error(result, *fragments)
    assert "verify: " not in result.stderr, "nothing was started"


# A Ctrl-C ends a process either with exit code 130 or by SIGINT itself, which the shell reports as 130 too:
# CPython ends that way after an interrupt it saw inside exec'd code (dataclasses build methods so), even when the
# interrupt was handled. Either is an interrupt; 1 or a traceback never is.
INTERRUPTED = (130, -signal.SIGINT)


@pytest.mark.parametrize("delay", [0.0, 0.02, 0.05, 0.1, 0.2, 0.4, 0.8, 2.0])
def test_ctrl_c_at_any_moment_of_start_up_exits_130_without_a_traceback(delay: float) -> None:
    """What the console script runs (``from meshgen.__main__ import run; run()``), interrupted from the moment it
    is called: while it imports the command line, while click parses, and while the command reads stdin."""
    script = "import sys; from meshgen.__main__ import run; print('started', flush=True); run()"
    proc = subprocess.Popen([sys.executable, "-c", script, "compile", "-f", "-", "--baseline", str(BOOKINFO)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "started\n"
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode in INTERRUPTED, err
    assert "Traceback" not in err
    assert err.strip() == "interrupted"


def test_ctrl_c_of_python_dash_m_meshgen_exits_130() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "meshgen", "compile", "-f", "-", "--baseline", str(BOOKINFO)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        time.sleep(3)  # well into the command (or still loading it: either way an interrupt)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode in INTERRUPTED, err
    assert "Traceback" not in err and err.strip() == "interrupted"

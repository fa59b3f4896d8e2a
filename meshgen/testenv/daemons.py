"""Long-running server processes (etcd, kube-apiserver): start with a log file, wait until ready, stop for sure.

A daemon runs in its own process group so that stopping it stops anything it started. Unless it is detached, it
also gets ``PR_SET_PDEATHSIG`` on Linux: if the Python process that started it dies (a killed pytest run), the
kernel kills it too, so no test run leaves a server behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from meshgen.errors import EnvironmentProblem

_PR_SET_PDEATHSIG = 1
STOP_GRACE_SECONDS = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    os.setpgrp()
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class Daemon:
    """One server process and its log."""

    name: str
    argv: Sequence[str]
    log: Path
    detached: bool = False
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        """Start the process; its stdout and stderr go to :attr:`log` (appended, so restarts keep history)."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                list(self.argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                # Only async-signal-safe calls (setpgrp, prctl) run in the child before exec.
                preexec_fn=None if self.detached else _die_with_parent,  # noqa: PLW1509
                start_new_session=self.detached,
            )

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was never started"
        return self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll ``ready`` until it holds; fail with the log's tail if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise EnvironmentProblem(f"{self.name} exited before it was {what}:\n{self.tail()}")
            with contextlib.suppress(OSError):
                if ready():
                    return
            time.sleep(0.1)
        raise EnvironmentProblem(f"{self.name} was not {what} after {timeout:.0f}s:\n{self.tail()}")

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop the process group (``SIGKILL`` for a crash); escalate to SIGKILL after a grace period."""
        if self.process is None:
            return
        if self.process.poll() is None:
            kill_group(self.process.pid, sig)
            try:
                self.process.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                kill_group(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def kill_group(pid: int, sig: signal.Signals) -> None:
    """Signal the process group led by ``pid`` (or just ``pid`` if it leads none)."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def alive(pid: int, expect: str) -> bool:
    """Whether ``pid`` still runs a command containing ``expect`` (guards against a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return expect.encode() in cmdline


def stop_pid(pid: int, expect: str, timeout: float = STOP_GRACE_SECONDS) -> None:
    """Stop a detached daemon by pid, only if it is still the process we started."""
    if not alive(pid, expect):
        return
    kill_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive(pid, expect):
        time.sleep(0.1)
    if alive(pid, expect):
        kill_group(pid, signal.SIGKILL)

"""Child processes for tests and demos (Envoy, echo workloads, etcd, kube-apiserver): each in its own process
group, logging to a file, stopped for sure.

Three layers make sure nothing outlives its owner, even when a test fails or the runner is killed:
:meth:`Process.stop` (TERM the group, KILL after a grace period), an ``atexit`` hook that stops every process still
running, and on Linux ``PR_SET_PDEATHSIG`` so the kernel TERMs a child whose parent dies without running either.
A *detached* process (``meshgen testenv up --detach``) opts out of the last two on purpose: it must outlive the
command that started it, and is stopped later by pid (:func:`stop_pid`).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from meshgen.errors import EnvironmentProblem

_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
_LIVE: dict[int, Process] = {}


class ProcessFailed(EnvironmentProblem):
    """A process exited or did not become ready; the message names it and shows its log tail."""


class Process:
    """One child process, its log file, and how to stop it."""

    def __init__(self, name: str, argv: Sequence[str], log: Path, env: dict[str, str] | None = None,
                 detached: bool = False) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self.env = env
        self.detached = detached
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        """Start the process in a new process group, stdout and stderr going to :attr:`log` (appended, so a
        restart keeps the history)."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                # preexec_fn only calls prctl(2), which is safe after fork even in a threaded parent.
                start_new_session=True, preexec_fn=None if self.detached else _die_with_parent,  # noqa: PLW1509
            )
        if not self.detached:
            _LIVE[self.popen.pid] = self
        return self

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def check(self) -> None:
        """Raise :class:`ProcessFailed` if the process has exited."""
        if self.popen is not None and self.popen.poll() is not None:
            raise ProcessFailed(f"{self.name} exited with code {self.popen.returncode}\n{self.describe()}")

    def describe(self, lines: int = 20) -> str:
        """The process's command line and the tail of its log."""
        return f"  command: {' '.join(self.argv)}\n  log: {self.log}\n{self.log_tail(lines)}"

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of the log, indented."""
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "    (no log)"
        tail = text.splitlines()[-lines:]
        return "\n".join(f"    | {line}" for line in tail) if tail else "    (log is empty)"

    def wait_until(self, ready: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
        """Poll ``ready`` until it holds; fail with the log's tail if this process exits or time runs out."""
        wait_until(ready, what, [self], timeout)

    def stop(self, grace: float = 5.0, sig: signal.Signals = signal.SIGTERM) -> None:
        """Send ``sig`` to the process group (SIGKILL simulates a crash), wait up to ``grace`` seconds, then KILL
        it. Safe to call twice."""
        popen = self.popen
        if popen is None:
            return
        if popen.poll() is None:
            _signal_group(popen.pid, sig)
            try:
                popen.wait(grace)
            except subprocess.TimeoutExpired:
                _signal_group(popen.pid, signal.SIGKILL)
                popen.wait()
        else:
            _signal_group(popen.pid, signal.SIGKILL)  # the leader is gone; reap anything it left in its group
        _LIVE.pop(popen.pid, None)


def stop_all(processes: Iterable[Process], grace: float = 5.0) -> None:
    """Stop several processes: TERM them all first, so their grace periods overlap."""
    procs = [p for p in processes if p.running()]
    for p in procs:
        assert p.popen is not None
        _signal_group(p.popen.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in procs:
        assert p.popen is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.popen.wait(max(0.0, deadline - time.monotonic()))
    for p in procs:
        p.stop(0)


def wait_until(ready: Callable[[], bool], what: str, watched: Sequence[Process], timeout: float = 15.0,
               interval: float = 0.02) -> None:
    """Poll ``ready`` until it is true; fail early (with the log tail) if a watched process exits, and with every
    watched process's log tail on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        for p in watched:
            p.check()
        with contextlib.suppress(OSError):  # e.g. connection refused while a server starts
            if ready():
                return
        if time.monotonic() > deadline:
            tails = "\n".join(f"{p.name}:\n{p.describe()}" for p in watched)
            raise ProcessFailed(f"timed out after {timeout:.0f}s waiting for {what}\n{tails}")
        time.sleep(interval)
        interval = min(interval * 1.5, 0.2)


def _signal_group(pid: int, sig: int) -> None:
    """Signal the process group led by ``pid`` (or just ``pid`` if it leads none)."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def can_bind(port: int, address: str = "127.0.0.1") -> bool | None:
    """Whether this process may bind ``port``: True if it just did, None if something else holds it (binding is
    allowed), False if it is not allowed (a port below 1024 without the right to it)."""
    with socket.socket() as probe:
        try:
            probe.bind((address, port))
        except PermissionError:
            return False
        except OSError:
            return None
    return True


def alive(pid: int, expect: str) -> bool:
    """Whether ``pid`` still runs a command containing ``expect`` (guards against a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return expect.encode() in cmdline


def stop_pid(pid: int, expect: str, timeout: float = 10.0) -> None:
    """Stop a detached process by pid, only if it is still the process we started."""
    if not alive(pid, expect):
        return
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive(pid, expect):
        time.sleep(0.1)
    if alive(pid, expect):
        _signal_group(pid, signal.SIGKILL)


def _die_with_parent() -> None:
    """In the child, before exec: ask the kernel to TERM us when the parent dies (Linux only). "Parent" is the
    spawning thread, so processes are started from the thread that owns them (the main thread here)."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@atexit.register
def _stop_leftovers() -> None:
    stop_all(list(_LIVE.values()), grace=2.0)

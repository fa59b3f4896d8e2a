"""Loopback networks (``127.<n>.0.0/16``) leased to one local mesh at a time, machine-wide.

Two meshes that pick the same network at random collide on addresses (``Address already in use``), and on a
shared machine test runs, benchmarks and demos run side by side. A lease is an exclusive ``flock`` on a file per
network: held for the mesh's lifetime, released by the kernel when its holder exits however it exits (SIGKILL
included), so a crashed run never leaves a network taken.
"""

from __future__ import annotations

import fcntl
import os
import random
import tempfile
from pathlib import Path
from types import TracebackType

from meshgen.errors import EnvironmentProblem

FIRST, LAST = 100, 249  # 127.0.0.0/16 stays free for everything else that binds 127.0.0.1
LOCK_DIR = Path(tempfile.gettempdir()) / "meshgen-networks"


class Lease:
    """One network, exclusively this process's until :meth:`release`."""

    def __init__(self, network: int, fd: int | None) -> None:
        self.network = network
        self._fd = fd

    @property
    def exclusive(self) -> bool:
        """Whether this process holds the lock (an explicitly chosen network may be someone else's)."""
        return self._fd is not None

    def release(self) -> None:
        """Give the network back (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def _try(network: int) -> int | None:
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    fd = os.open(LOCK_DIR / f"{network}.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def lease(network: int | None = None) -> Lease:
    """A free network, tried in random order (from the OS, not the seeded module generator), or ``network``
    itself when given (then held too, so nothing else leases it meanwhile)."""
    if network is not None:
        return Lease(network, _try(network))  # a caller's explicit choice is honoured even if it is taken
    candidates = list(range(FIRST, LAST + 1))
    random.SystemRandom().shuffle(candidates)
    for candidate in candidates:
        fd = _try(candidate)
        if fd is not None:
            return Lease(candidate, fd)
    raise EnvironmentProblem(f"every loopback network 127.{FIRST}-{LAST}.0.0/16 is leased by another local mesh "
                             f"(locks in {LOCK_DIR}); stop some of them")


def lease_many(count: int) -> list[Lease]:
    """``count`` distinct networks (a benchmark runs several proxies side by side)."""
    leases: list[Lease] = []
    try:
        for _ in range(count):
            leases.append(lease())
    except EnvironmentProblem:
        for held in leases:
            held.release()
        raise
    return leases

"""Loopback networks are leased machine-wide: two meshes never get the same one, and a dead holder frees it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from meshgen.testenv import networks

_HOLD = ("from meshgen.testenv import networks; import time; n = networks.lease(); print(n.network, flush=True); "
         "time.sleep(60)")


def test_a_network_another_process_holds_is_not_handed_out_until_that_process_dies() -> None:
    holder = subprocess.Popen([sys.executable, "-c", _HOLD], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        held = int(holder.stdout.readline())
        with networks.lease(held) as taken:
            assert not taken.exclusive
        with networks.lease() as mine:
            assert mine.exclusive and mine.network != held
        os.kill(holder.pid, signal.SIGKILL)  # no chance to clean up: the kernel drops its lock
        holder.wait()
        with networks.lease(held) as again:
            assert again.exclusive
    finally:
        holder.kill()
        holder.wait()

"""``istioctl analyze`` on files: Istio's own checks of compiled output together with the baseline it was compiled
over, without a cluster.

How istioctl behaves here (this build), and so how it is run:

- ``--use-kube=false`` analyzes only the files given (no kubeconfig is read);
- ``-A`` (all namespaces) is required: without it only namespace ``default`` is reported and everything else is
  dropped silently;
- ``-o json`` gives one object per message (``level``, ``code``, ``origin``, ``reference``, ``message``), but then
  the exit code is always 0, so the levels are read from the output; a file istioctl cannot parse is skipped and
  only named on stderr, which is therefore an error here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from meshgen.errors import EnvironmentProblem
from meshgen.testenv import binaries

ERROR = "Error"


@dataclass(frozen=True)
class Finding:
    """One message of istioctl analyze."""

    level: str  # Error, Warning or Info
    code: str  # IST0101, ...
    origin: str  # "VirtualService bookinfo/reviews"
    reference: str  # "file:line"
    message: str

    def render(self) -> str:
        """istioctl's own log format: ``Warning [IST0133] (EnvoyFilter ns/name file:line) message``."""
        return f"{self.level} [{self.code}] ({self.origin} {self.reference}) {self.message}"


def find() -> Path | None:
    """istioctl on PATH (the one matching the user's mesh), else the test environment's build."""
    found = shutil.which("istioctl")
    return Path(found) if found else binaries.find(binaries.ISTIOCTL)


def analyze(paths: Sequence[str | Path], istioctl: Path | None = None) -> list[Finding]:
    """Every finding of ``istioctl analyze`` over ``paths`` (files or directories), sorted by level (errors
    first), reference and code."""
    binary = istioctl or find()
    if binary is None:
        raise EnvironmentProblem("istioctl is not on PATH: install it (https://istio.io/latest/docs/setup/getting-"
                                 "started/#download), or build the test environment's with `make testenv`")
    result = subprocess.run([str(binary), "analyze", "--use-kube=false", "-A", "-o", "json", *map(str, paths)],
                            capture_output=True, text=True, check=False, timeout=120,
                            env={**os.environ, "KUBECONFIG": os.devnull})
    try:
        messages = json.loads(result.stdout or "[]")
    except ValueError:
        messages = None
    unread = "could not be parsed" in result.stderr  # the file is skipped, the exit code stays 0
    if result.returncode != 0 or not isinstance(messages, list) or unread:
        detail = "\n".join(line for line in result.stderr.splitlines() if "INFO memory" not in line).strip()
        raise EnvironmentProblem(f"istioctl analyze failed (exit {result.returncode}):\n{detail}")
    order = {ERROR: 0, "Warning": 1, "Info": 2}
    findings = [Finding(str(m.get("level", "")), str(m.get("code", "")), str(m.get("origin", "")),
                        str(m.get("reference", "")), str(m.get("message", ""))) for m in messages]
    return sorted(findings, key=lambda f: (order.get(f.level, 3), f.reference, f.code))

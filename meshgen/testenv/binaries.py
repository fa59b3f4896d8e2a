"""Finding (or building, once) the servers of the test environment: etcd, kube-apiserver, and Istio's CRDs.

Looked up in this order, first hit wins, per file:

1. ``$MESHGEN_TESTENV_BIN`` — a directory of prebuilt binaries (and optionally ``crd-all.gen.yaml``);
2. ``$KUBEBUILDER_ASSETS`` — what ``setup-envtest use -p path`` prints (etcd and kube-apiserver);
3. the build cache, ``${MESHGEN_CACHE_DIR:-~/.cache/meshgen}/<component>-<version>/``, filled by
   ``testenv/build.sh`` from the versions pinned in ``testenv/<component>/go.mod``.

:func:`ensure` builds whatever is missing with ``testenv/build.sh`` when Go is installed (slow the first time:
about 17 minutes for etcd + kube-apiserver on 2 cores; then cached), and otherwise says how to get the files.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from meshgen.errors import EnvironmentProblem

REPO_TESTENV = Path(__file__).resolve().parents[2] / "testenv"
BUILD_SCRIPT = REPO_TESTENV / "build.sh"
ISTIO_CRDS = "crd-all.gen.yaml"

HOW_TO_GET = (
    "get them one of three ways: install Go >= 1.24 and run `make testenv` (builds once into ~/.cache/meshgen, "
    "~17 min cold on 2 cores); or point MESHGEN_TESTENV_BIN at a directory holding etcd, kube-apiserver and "
    "Istio's crd-all.gen.yaml; or set KUBEBUILDER_ASSETS (setup-envtest) for etcd and kube-apiserver"
)


@dataclass(frozen=True)
class Component:
    """One thing the build script produces: its go.mod directory, pinned module, and the file we need."""

    name: str  # build.sh component and cache-directory prefix
    module: str
    file: str

    def version(self) -> str | None:
        """The version pinned in ``testenv/<dir>/go.mod`` (``None`` outside a source checkout)."""
        directory = "istio" if self.name == "istio" else self.name
        try:
            text = (REPO_TESTENV / directory / "go.mod").read_text()
        except OSError:
            return None
        found = re.search(rf"^\s*(?:require\s+)?{re.escape(self.module)}\s+(v\S+)", text, re.MULTILINE)
        return found.group(1) if found else None


ETCD = Component("etcd", "go.etcd.io/etcd/server/v3", "etcd")
KUBE_APISERVER = Component("kube-apiserver", "k8s.io/kubernetes", "kube-apiserver")
ISTIO_CRDS_FILE = Component("istio", "istio.io/istio", ISTIO_CRDS)
_BUILD_TARGET = {ETCD: "etcd", KUBE_APISERVER: "kube-apiserver", ISTIO_CRDS_FILE: "istio-crds"}


@dataclass(frozen=True)
class Binaries:
    """Paths of everything a control plane needs."""

    etcd: Path
    kube_apiserver: Path
    istio_crds: Path


def cache_dir() -> Path:
    return Path(os.environ.get("MESHGEN_CACHE_DIR") or Path.home() / ".cache" / "meshgen")


def candidates(component: Component) -> list[Path]:
    """Where ``component``'s file may be, in lookup order."""
    out = [Path(os.environ[var]) / component.file for var in ("MESHGEN_TESTENV_BIN", "KUBEBUILDER_ASSETS")
           if os.environ.get(var)]
    version = component.version()
    if version:
        out.append(cache_dir() / f"{component.name}-{version}" / component.file)
    return out


def find(component: Component) -> Path | None:
    """The first existing file for ``component``, or ``None``."""
    for path in candidates(component):
        if path.is_file() and (component is ISTIO_CRDS_FILE or os.access(path, os.X_OK)):
            return path
    return None


def locate() -> Binaries | None:
    """Everything, if all of it is already there (never builds)."""
    found = [find(c) for c in (ETCD, KUBE_APISERVER, ISTIO_CRDS_FILE)]
    if any(p is None for p in found):
        return None
    etcd, apiserver, crds = found
    assert etcd and apiserver and crds
    return Binaries(etcd, apiserver, crds)


def missing() -> list[str]:
    """Names of the files :func:`locate` cannot find."""
    return [c.file for c in (ETCD, KUBE_APISERVER, ISTIO_CRDS_FILE) if find(c) is None]


def can_build() -> bool:
    """Whether :func:`ensure` could build what is missing (a source checkout and Go on PATH)."""
    return BUILD_SCRIPT.is_file() and shutil.which("go") is not None


def ensure() -> Binaries:
    """Everything, building what is missing with ``testenv/build.sh`` (needs Go), or a clear error."""
    for component in (ETCD, KUBE_APISERVER, ISTIO_CRDS_FILE):
        if find(component) is not None:
            continue
        if not can_build():
            raise EnvironmentProblem(f"{component.file} not found (looked in: "
                                     f"{', '.join(map(str, candidates(component))) or 'nowhere'}); {HOW_TO_GET}")
        result = subprocess.run(["bash", str(BUILD_SCRIPT), _BUILD_TARGET[component]], check=False,
                                stdout=subprocess.PIPE, text=True)
        if result.returncode != 0 or find(component) is None:
            raise EnvironmentProblem(f"testenv/build.sh {_BUILD_TARGET[component]} failed (exit "
                                     f"{result.returncode}); see its output above")
    found = locate()
    assert found is not None
    return found


def main(argv: list[str] | None = None) -> int:
    """``python -m meshgen.testenv.binaries [--if-possible]``: make sure the binaries exist (``make testenv``).

    With ``--if-possible`` a machine without Go and without binaries is not an error (the tests then skip and
    say why, or fail under CI=true)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    found = locate()
    if found is None and not can_build() and "--if-possible" in args:
        print(f"meshgen testenv: {', '.join(missing())} not found and no Go to build them; the real-cluster tests "
              f"will skip. To run them, {HOW_TO_GET}", file=sys.stderr)
        return 0
    try:
        found = found or ensure()
    except EnvironmentProblem as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"meshgen testenv: {found.etcd}, {found.kube_apiserver}, {found.istio_crds}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

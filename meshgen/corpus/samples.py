"""Which of Istio's sample files make one baseline of the corpus, and which are skipped, and why.

A baseline is what one user's cluster would hold after ``kubectl apply -n <namespace> -f a.yaml -f b.yaml``: the
files' objects in order, a later object replacing an earlier one of the same kind, namespace and name (Istio's
traffic-shifting tasks apply ``tcp-echo-20-v2.yaml`` over ``tcp-echo-all-v1.yaml`` just so). Objects without a
namespace land in their group's namespace (``bookinfo``; a large group takes turns in a few), so baselines that
share a namespace never run side by side, and the others never see each other.

:data:`GROUPS` is the small table of what belongs together, stated the way Istio's tasks apply the files: a
*platform* (workloads and Services), *variants* applied on top of it one at a time (bookinfo's networking files),
what a variant *needs* beside the platform (the subsets of ``destination-rule-all.yaml`` for every
``virtual-service-*``, the per-version Services of ``bookinfo-versions.yaml`` for every Gateway API
``route-*``, ``ratings-v2`` and mongodb for ``virtual-service-ratings-db``), *alternatives* (the same
application written another way, each a baseline alone) and the calls between services (bookinfo's topology).
Every other file is discovered: one holding workloads and Services is a platform of its own, with the files of its
directory that hold only routing (Istio's or the Gateway API's) as its variants. A file that can make no baseline
is :class:`Skipped`, with why (ambient waypoints among them: neither local mesh runs ambient).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from meshgen.baseline.loading import flatten, load_baseline
from meshgen.baseline.model import (
    DEPLOYMENT,
    DESTINATION_RULE,
    GATEWAY,
    GRPC_ROUTE,
    HTTP_ROUTE,
    KUBERNETES_GATEWAY,
    SERVICE,
    VIRTUAL_SERVICE,
)
from meshgen.documents import MANIFEST_SUFFIXES, Document, read_documents
from meshgen.errors import InvalidInput
from meshgen.spec.names import fit_name

_ROUTING_KINDS = frozenset({VIRTUAL_SERVICE, DESTINATION_RULE, GATEWAY, HTTP_ROUTE, GRPC_ROUTE, KUBERNETES_GATEWAY})
WAYPOINT_CLASS = "istio-waypoint"  # a Gateway API Gateway of this class is an ambient waypoint, not an edge


@dataclass(frozen=True)
class Group:
    """Sample files that belong together (paths and globs relative to ``samples/``)."""

    name: str
    platform: tuple[str, ...]
    variants: tuple[str, ...] = ()
    needs: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (variant glob, files applied before the variant)
    alternatives: tuple[str, ...] = ()
    calls: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Namespaces the group's baselines take turns in (``bookinfo``, ``bookinfo-2``, ...): so many run side by side,
    # and each namespace keeps its workloads from one baseline to the next.
    namespaces: int = 1

    def needed_by(self, variant: str) -> tuple[str, ...]:
        """The files a variant needs applied before it, in the table's order."""
        found: list[str] = []
        for pattern, files in self.needs:
            if fnmatch.fnmatchcase(variant, pattern):
                found.extend(f for f in files if f not in found)
        return tuple(found)


_BOOKINFO = "bookinfo/platform/kube/"
_ARGO = "ambient-argo/application/"
_HELLO_API = "helloworld/gateway-api/"
GROUPS = (
    Group("bookinfo", (f"{_BOOKINFO}bookinfo.yaml",),
          variants=("bookinfo/networking/*.yaml", "bookinfo/gateway-api/*.yaml", f"{_BOOKINFO}bookinfo-*.yaml",
                    f"{_BOOKINFO}productpage-*.yaml"),
          # The Gateway API task's routes send to per-version Services (bookinfo-versions.yaml), as the
          # VirtualServices send to the subsets of destination-rule-all.yaml.
          needs=(("bookinfo/networking/virtual-service-*.yaml", ("bookinfo/networking/destination-rule-all.yaml",)),
                 ("bookinfo/gateway-api/route-*.yaml", (f"{_BOOKINFO}bookinfo-versions.yaml",)),
                 ("*/virtual-service-details-v2.yaml", (f"{_BOOKINFO}bookinfo-details-v2.yaml",)),
                 ("*/virtual-service-ratings-db.yaml", (f"{_BOOKINFO}bookinfo-ratings-v2.yaml",
                                                        f"{_BOOKINFO}bookinfo-db.yaml")),
                 ("*/virtual-service-ratings-mysql.yaml", (f"{_BOOKINFO}bookinfo-ratings-v2-mysql.yaml",
                                                           f"{_BOOKINFO}bookinfo-mysql.yaml")),
                 ("*/virtual-service-ratings-mysql-vm.yaml", (f"{_BOOKINFO}bookinfo-ratings-v2-mysql-vm.yaml",))),
          alternatives=(f"{_BOOKINFO}bookinfo-psa.yaml", f"{_BOOKINFO}bookinfo-dualstack.yaml"),
          calls={"productpage": ("details", "reviews"), "reviews": ("ratings",)}, namespaces=3),
    Group("bookinfo-argo", (f"{_ARGO}details.yaml", f"{_ARGO}productpage.yaml", f"{_ARGO}ratings.yaml",
                            f"{_ARGO}reviews.yaml"),
          variants=(f"{_ARGO}bookinfo-versions.yaml", f"{_ARGO}route-reviews-90-10.yaml",
                    f"{_ARGO}ingress-gateway.yaml"),
          needs=((f"{_ARGO}route-*.yaml", (f"{_ARGO}bookinfo-versions.yaml",)),),
          calls={"productpage": ("details", "reviews"), "reviews": ("ratings",)}),
    Group("helloworld", ("helloworld/helloworld.yaml",),
          variants=("helloworld/helloworld-gateway.yaml", f"{_HELLO_API}*.yaml"),
          # helloworld-route.yaml replaces helloworld-gateway.yaml's route, splitting it over the version Services.
          needs=((f"{_HELLO_API}helloworld-route.yaml", (f"{_HELLO_API}helloworld-versions.yaml",
                                                          f"{_HELLO_API}helloworld-gateway.yaml")),),
          alternatives=("helloworld/helloworld-dual-stack.yaml",)),
    Group("httpbin", ("httpbin/httpbin.yaml",), variants=("httpbin/httpbin-gateway.yaml", "httpbin/gateway-api/*.yaml"),
          alternatives=("httpbin/httpbin-nodeport.yaml",)),
    Group("tcp-echo", ("tcp-echo/tcp-echo-services.yaml",),
          variants=("tcp-echo/tcp-echo-all-v1.yaml", "tcp-echo/tcp-echo-20-v2.yaml",
                    "tcp-echo/gateway-api/tcp-echo-all-v1.yaml"),
          needs=(("tcp-echo/tcp-echo-20-v2.yaml", ("tcp-echo/tcp-echo-all-v1.yaml",)),),
          alternatives=("tcp-echo/tcp-echo.yaml", "tcp-echo/tcp-echo-ipv4.yaml", "tcp-echo/tcp-echo-ipv6.yaml",
                        "tcp-echo/tcp-echo-dual-stack.yaml")),
)


@dataclass(frozen=True)
class Entry:
    """One baseline of the corpus: sample files applied in order into ``namespace``."""

    name: str  # the file that makes it different: its variant, alternative or platform (sample path, no suffix)
    group: str
    files: tuple[str, ...]
    namespace: str
    calls: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def documents(self, root: Path) -> tuple[list[Document], dict[str, str]]:
        """The documents the cluster would hold, in order (a later object replacing an earlier one of the same
        identity), each with a namespace, and the texts read."""
        found, texts = read_documents([str(root / f) for f in self.files])
        kept: dict[tuple[str, str, str, str], Document] = {}
        for written in (Document(where, body) for where, body in flatten(found)):
            meta = written.body.get("metadata")
            if not isinstance(meta, dict):
                continue
            doc = written
            if not meta.get("namespace"):
                doc = Document(written.location, {**written.body, "metadata": {**meta, "namespace": self.namespace}})
                meta = doc.body["metadata"]
            group = str(doc.body.get("apiVersion", "")).rpartition("/")[0]
            key = (group, str(doc.body.get("kind")), str(meta["namespace"]), str(meta.get("name")))
            kept.pop(key, None)  # re-applied: it moves to where it was applied last
            kept[key] = doc
        return list(kept.values()), texts


@dataclass(frozen=True)
class Skipped:
    """A sample file that makes no baseline, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class Corpus:
    """Every baseline found under a ``samples/`` directory, and every file skipped."""

    root: Path
    entries: tuple[Entry, ...]
    skipped: tuple[Skipped, ...]


def discover(root: Path, groups: Sequence[Group] = GROUPS) -> Corpus:
    """The corpus under ``root`` (Istio's ``samples/``): the table's groups, then every other file."""
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.suffix in MANIFEST_SUFFIXES)
    reading = {f: _read(root, f) for f in files}
    found = _Found(root, reading)
    needed = {f for g in groups for _, files_needed in g.needs for f in files_needed}
    found.used.update(f for g in groups for f in g.platform)
    for group in groups:
        found.add_group(group, files)
    rest = [f for f in files if f not in found.used and f not in needed]
    for path in rest:
        kinds, problem = reading[path].kinds, reading[path].problem
        if path in found.used or problem is not None or not {DEPLOYMENT, SERVICE} <= kinds:
            continue
        siblings = tuple(f for f in rest if Path(f).parent == Path(path).parent and f not in found.used
                         and reading[f].problem is None and reading[f].kinds and reading[f].kinds <= _ROUTING_KINDS)
        found.used.add(path)
        found.add_group(Group(_group_name(path), (path,), variants=siblings), files)
    for path in rest:
        if path not in found.used:
            found.skipped.append(Skipped(path, reading[path].problem or _why_not(reading[path])))
    return Corpus(root, tuple(found.entries), tuple(sorted(found.skipped, key=lambda s: s.path)))


@dataclass(frozen=True)
class _Reading:
    kinds: frozenset[str]  # the kinds meshgen reads
    others: tuple[str, ...] = ()  # every other kind in the file
    problem: str | None = None


class _Found:
    """Entries and skips as discovery finds them, and the files already used."""

    def __init__(self, root: Path, reading: Mapping[str, _Reading]) -> None:
        self.root, self.reading = root, reading
        self.entries: list[Entry] = []
        self.skipped: list[Skipped] = []
        self.used: set[str] = set()

    def add_group(self, group: Group, files: Sequence[str]) -> None:
        """The group's baselines: the platform, each alternative, then each variant over the platform."""
        platform = self._add(group, group.platform[-1], group.platform)
        for alternative in group.alternatives:
            self.used.add(alternative)
            if self._usable(alternative):
                self._add(group, alternative, (alternative,))
        for path in files:
            if path in self.used or not any(fnmatch.fnmatchcase(path, p) for p in group.variants):
                continue
            self.used.add(path)
            if not self._usable(path):
                continue
            entry = self._entry(group, path, (*group.platform, *group.needed_by(path), path))
            if _objects(entry, self.root) == _objects(platform, self.root):
                self.skipped.append(Skipped(path, f"restates objects of {group.platform[-1]} unchanged"))
                continue
            self._take(entry)

    def _usable(self, path: str) -> bool:
        reading = self.reading.get(path, _Reading(frozenset(), problem="not found"))
        if reading.problem is None and reading.kinds:
            return True
        self.skipped.append(Skipped(path, reading.problem or _why_not(reading)))
        return False

    def _add(self, group: Group, path: str, files: tuple[str, ...]) -> Entry:
        return self._take(self._entry(group, path, files))

    def _entry(self, group: Group, path: str, files: tuple[str, ...]) -> Entry:
        turn = sum(e.group == group.name for e in self.entries) % group.namespaces
        namespace = fit_name(group.name.lower() if turn == 0 else f"{group.name.lower()}-{turn + 1}")
        return Entry(path.rsplit(".", 1)[0], group.name, files, namespace, group.calls)

    def _take(self, entry: Entry) -> Entry:
        self.entries.append(entry)
        return entry


def _group_name(path: str) -> str:
    """A discovered platform's group: its directory, and its file name where that says more (``addons-grafana``)."""
    parts = Path(path.rsplit(".", 1)[0]).parts
    if len(parts) > 1 and parts[-1] == parts[-2]:
        parts = parts[:-1]
    return "-".join(parts).lower()


def _why_not(reading: _Reading) -> str:
    """Why a file that reads fine makes no baseline."""
    kinds = reading.kinds
    if not kinds:
        if not reading.others:
            return "holds no Kubernetes object"
        return f"holds no kind meshgen reads (it holds {', '.join(reading.others)})"
    if kinds <= _ROUTING_KINDS:
        return "holds only routing, and no sample platform in its directory runs what it routes to"
    if DEPLOYMENT not in kinds:
        return "holds Services but no workload of a kind meshgen reads behind them"
    return "holds workloads that no Service fronts: nothing routes to them"


def routing_view(documents: Sequence[Document], namespace: str) -> list[object]:
    """What routing reads of a baseline whose own namespace is ``namespace``: workloads by name, namespace,
    replicas and pod labels (a pod spec's containers, service account or security context change no answer),
    everything else whole, the own namespace left out. Two baselines with one view answer every request alike."""
    view: list[object] = []
    for doc in documents:
        body = doc.body
        meta = {k: v for k, v in body["metadata"].items() if not (k == "namespace" and v == namespace)}
        if body.get("kind") == DEPLOYMENT:
            spec = body.get("spec") or {}
            template = spec.get("template") or {}
            body = {"kind": DEPLOYMENT, "metadata": {k: v for k, v in meta.items() if k in ("name", "namespace")},
                    "spec": {"replicas": spec.get("replicas"), "labels": (template.get("metadata") or {}).get(
                        "labels")}}
        else:
            body = {**body, "metadata": meta}
        view.append(body)
    return sorted(view, key=repr)


def _objects(entry: Entry, root: Path) -> dict[tuple[str, str], object]:
    """An entry's objects as the cluster would hold them, by kind and name, without their namespace (to compare
    entries in different namespaces)."""
    documents, _ = entry.documents(root)
    return {(str(d.body.get("kind")), str(d.body["metadata"].get("name"))):
            {**d.body, "metadata": {k: v for k, v in d.body["metadata"].items() if k != "namespace"}}
            for d in documents}


def _read(root: Path, path: str) -> _Reading:
    """The kinds meshgen reads in a file (and the others), or why the file cannot be read as kubectl reads it."""
    try:
        documents, _ = read_documents([str(root / path)])
        baseline = load_baseline(documents, "corpus")
    except InvalidInput as exc:
        first = exc.problems[0] if exc.problems else None
        message = first.message.splitlines()[0] if first else str(exc)
        return _Reading(frozenset(), problem=f"not a manifest kubectl reads ({message[:90]}): a template, not its "
                                             "output")
    kinds = frozenset(r.key.kind for r in baseline.resources)
    others = sorted({str(body["kind"]) for _, body in flatten(documents) if isinstance(body.get("kind"), str)} - kinds)
    gateways = baseline.of_kind(KUBERNETES_GATEWAY)
    if kinds == {KUBERNETES_GATEWAY} and all(g.spec.get("gatewayClassName") == WAYPOINT_CLASS for g in gateways):
        return _Reading(kinds, tuple(others), problem=f"holds only waypoints (Gateways of class {WAYPOINT_CLASS}): "
                                                      "ambient mode's proxies, which neither local mesh runs (both "
                                                      "run sidecars)")
    return _Reading(kinds, tuple(others))

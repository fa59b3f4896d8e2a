"""Reading stored specs by the index (:mod:`meshgen.kube.indexes`): a selection of Sandboxes and RouteGroups, and
the revision it is complete up to.

A label-selected LIST is answered from one snapshot of the store, at the store's revision R: it holds every
object matching the selector at R, whatever else the store holds. A selection is several such lists (one per
workload, per label key, per route group...) with revisions R1..Rn, so it is complete up to min(Ri) for each of
its selectors: every spec that matched a selector at or before min(Ri) is in it (a spec that matched at min(Ri)
and stopped matching later has been changed since, and the command that changed it reads both its old and its
new selectors, :mod:`meshgen.kube.scoping`). That minimum is what a command records on every object it writes
(``meshgen.dev/computed-from``), exactly as a full list's revision was: a writer of an object reads every
selector the object depends on, so for that object a newer recorded revision is a more complete view.

A spec read by name (a GET, to learn what a command changes) joins the selection but says nothing of its
completeness.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from meshgen.documents import JsonObject
from meshgen.errors import ClusterError
from meshgen.kube import indexes, kinds
from meshgen.kube.client import Client, Listing, NotFound
from meshgen.kube.discovery import Selection, StoredSpecs, revision
from meshgen.kube.kinds import Ref

SpecId = tuple[str, str]  # (kind, name)
_KINDS = {"Sandbox": kinds.SANDBOX, "RouteGroup": kinds.ROUTE_GROUP}


@dataclass
class Store:
    """One read of a selection: specs by (kind, name), newest version kept, and the lists' revisions. Each
    selector and name is read once."""

    client: Client
    specs: dict[SpecId, JsonObject] = field(default_factory=dict)
    read: dict[tuple[str, str], list[SpecId]] = field(default_factory=dict)
    named: set[SpecId] = field(default_factory=set)
    revisions: list[str] = field(default_factory=list)
    policies: tuple[JsonObject, ...] = ()

    def _add(self, items: Iterable[JsonObject]) -> list[JsonObject]:
        """Record specs read (of two versions, the newer); returns them."""
        found = []
        for item in items:
            key = (str(item["kind"]), str(item["metadata"]["name"]))
            have = self.specs.get(key)
            if have is None or _version(item) >= _version(have):
                self.specs[key] = item
            found.append(self.specs[key])
        return found

    def _list(self, kind: str, selector: str) -> Listing:
        try:
            return self.client.list(_KINDS[kind], label_selector=selector)
        except NotFound as exc:
            raise ClusterError(f"{exc}; meshgen's CRDs are not installed in this cluster: run `meshgen install`") \
                from exc

    def select(self, kind: str, selector: str) -> list[JsonObject]:
        """Every spec of ``kind`` matching ``selector`` (one LIST per selector and read)."""
        if (kind, selector) not in self.read:
            listing = self._list(kind, selector)
            self.revisions.append(listing.resource_version)
            found = self._add(listing.items)
            self.read[(kind, selector)] = [(str(o["kind"]), str(o["metadata"]["name"])) for o in found]
        return [self.specs[key] for key in self.read[(kind, selector)]]

    def by_name(self, kind: str, name: str) -> JsonObject | None:
        """One spec by name (None: not stored)."""
        if (kind, name) not in self.named:
            self.named.add((kind, name))
            with contextlib.suppress(NotFound):
                self._add([self.client.get(Ref(kind, "", name))])
        return self.specs.get((kind, name))

    def read_policies(self) -> tuple[JsonObject, ...]:
        """The platform's MeshPolicy (one LIST, counted in the revision like the specs)."""
        listing = self.client.list(kinds.MESH_POLICY)
        self.revisions.append(listing.resource_version)
        self.policies = listing.items
        return self.policies

    @property
    def selection(self) -> Selection:
        return Selection(frozenset(self.read), frozenset(self.named))

    def stored(self) -> StoredSpecs:
        """The specs read so far, complete up to the oldest revision of the lists."""
        numbers = [revision(r) for r in self.revisions]
        known = [n for n in numbers if n is not None]
        version = str(min(known)) if known and len(known) == len(numbers) else ""
        ordered = sorted(self.specs.values(), key=lambda o: (o["kind"], o["metadata"]["name"]))
        return StoredSpecs(tuple(o for o in ordered if o["kind"] == "Sandbox"),
                           tuple(o for o in ordered if o["kind"] == "RouteGroup"), version, self.policies)


def _version(body: JsonObject) -> int:
    return revision(str(body["metadata"].get("resourceVersion") or "")) or 0


def unindexed(store: Store) -> list[JsonObject]:
    """Stored specs without the index (stored around meshgen, or by an older one): usually none."""
    return [*store.select("Sandbox", indexes.UNINDEXED), *store.select("RouteGroup", indexes.UNINDEXED)]

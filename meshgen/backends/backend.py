"""What a backend is to the rest of meshgen: how it renders a plan, and what the reconciler needs to know to write
its objects to a cluster safely.

A backend is one module or package with one :class:`Backend` (and one entry in :data:`meshgen.backends.BACKENDS`).
The reconciler (:mod:`meshgen.kube`) is handed it and learns from it alone:

- ``writes``: the kinds of the objects it owns (labelled ``app.kubernetes.io/managed-by: meshgen``): created,
  changed wholesale, deleted when no plan wants them. Every backend writes the forks, their Services and their
  policy copies (:data:`FORKS`) besides its own;
- ``edits``: the kinds of users' objects it edits in place: only routes named ``meshgen-*`` and listed in the
  ``meshgen.dev/routes`` annotation (where each kind keeps its routes: :data:`meshgen.ownership.ROUTE_LISTS`), the
  rest never touched, and restored exactly once no sandbox needs them;
- ``order``: the make-before-break rules its writes follow (:func:`make_before_break`);
- ``routes``: the kinds that carry routes (the header they match is recorded on them during a routing-header
  change; a sandbox's status lists them);
- ``routing_filter``: the name of the object that runs the routing-key normaliser (an EnvoyFilter in the policy's
  filter namespace), if the backend writes one;
- the RBAC it needs follows from ``writes`` and ``edits`` (:func:`meshgen.kube.crds.rbac`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from meshgen import apis
from meshgen.apis import Kind
from meshgen.documents import JsonObject
from meshgen.plan.model import Diagnostic, Plan

UPSERT = "upsert"
DELETE = "delete"
Matcher = tuple[str, str]  # (operation, kind)
Rule = tuple[Matcher, Matcher]  # every change matching the first waits for every change matching the second

WORKLOADS = (apis.DEPLOYMENT, apis.STATEFUL_SET)
# What every backend writes: the plan's forks, their Services and their copies of label-keyed policies.
FORKS = (*WORKLOADS, apis.SERVICE, *apis.POLICIES)


@dataclass(frozen=True)
class Rendering:
    """A backend's objects for a plan, and what it warns about (a field it accepts without translating it)."""

    objects: list[JsonObject]
    warnings: tuple[Diagnostic, ...] = ()


@dataclass(frozen=True)
class Backend:
    """One backend: its name, how it renders a plan, and what a cluster needs to know of its objects."""

    name: str
    render: Callable[[Plan], Rendering]
    writes: tuple[Kind, ...] = ()
    edits: tuple[Kind, ...] = ()
    order: tuple[Rule, ...] = ()
    routes: tuple[str, ...] = ()
    routing_filter: str | None = None
    cluster: bool = True  # renders objects for a cluster (the Envoy backend renders one local Envoy's)

    @property
    def kinds(self) -> tuple[Kind, ...]:
        """Every kind this backend writes or edits, forks included, each once."""
        return tuple(dict.fromkeys((*WORKLOADS, apis.SERVICE, *self.writes, *self.edits, *apis.POLICIES)))

    def edits_kind(self, kind: str) -> bool:
        """Whether users' objects of ``kind`` get meshgen routes from this backend."""
        return any(k.kind == kind for k in self.edits)


def make_before_break(routes: tuple[str, ...], supports: tuple[str, ...],
                      after_services: tuple[str, ...] = ()) -> tuple[Rule, ...]:
    """The make-before-break rules for a backend whose ``routes`` kinds send traffic to forks, fork Services and
    the ``supports`` kinds they rely on (``after_services``: those written after the Service they are for):

    - a fork's policies (copies of the label-keyed policies that govern the original) exist before its pods, its
      pods before the Service that selects them;
    - everything routes send to exists before any route that sends to it;
    - routes are removed before what they pointed to is deleted, and a fork's policies after its pods."""
    workloads = tuple(k.kind for k in WORKLOADS)
    policies = tuple(k.kind for k in apis.POLICIES)
    targets = (*workloads, "Service", *supports, *policies)
    return (
        *(((UPSERT, r), (UPSERT, kind)) for r in routes for kind in targets),
        *(((UPSERT, w), (UPSERT, p)) for w in workloads for p in policies),
        *(((UPSERT, "Service"), (UPSERT, w)) for w in workloads),
        *(((UPSERT, s), (UPSERT, "Service")) for s in after_services),
        *(((DELETE, r), (UPSERT, other)) for r in routes for other in routes),
        *(((DELETE, kind), (DELETE, r)) for kind in targets for r in routes),
        *(((DELETE, w), (DELETE, "Service")) for w in workloads),
        *(((DELETE, "Service"), (DELETE, s)) for s in after_services),
        *(((DELETE, p), (DELETE, w)) for w in workloads for p in policies),
    )

"""The API server's verdict on new specs before they are stored (DESIGN invariant 8: what it would refuse is
never stored).

``apply`` sends the specs it is about to store, and the new and changed objects of their own (forks, fork
Services and DestinationRules), with ``dryRun=All``: schema, defaulting and admission (the guardrails'
ValidatingAdmissionPolicy, and any other the platform runs) all answer, nothing persists. A refusal is an error
at the spec's ``file:line`` — at the field the API server names for a spec, at the fork entry for a fork's object.
Shared objects (VirtualServices, the EnvoyFilter) are not the new specs' own and are not sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from meshgen.documents import locate_all
from meshgen.errors import ClusterError, InvalidInput, Location, Problem
from meshgen.kube import patching, storing
from meshgen.kube.client import Client, refused
from meshgen.kube.diffing import Change
from meshgen.ownership import ANNOTATION_FORK_OF
from meshgen.spec.loading import Specs

_INVALID_PATH = re.compile(r" is invalid: ([A-Za-z0-9_.\[\]-]+):")


def vet(client: Client, changes: Iterable[Change], new: Specs, texts: dict[str, str]) -> None:
    """Dry-run every change that stores one of ``new`` or is an object of one of its sandboxes; raise
    :class:`InvalidInput` with every refusal (nothing is written either way)."""
    sandboxes = {s.name for s in new.sandboxes}
    problems = []
    for change in changes:
        if change.ref.kind not in storing.STORED_KINDS and change.sandbox not in sandboxes:
            continue
        try:
            patching.write(client, change, None, dry_run=True)
        except ClusterError as exc:
            if not refused(exc):
                raise
            problems.append(Problem(origin(change, new, str(exc)), f"the API server refuses {exc}",
                                    "change the spec so that the object it makes is valid (see the API server's "
                                    "message); nothing was written"))
    if problems:
        raise locate_all(InvalidInput(problems), texts)


def field_path(message: str) -> tuple[str | int, ...]:
    """The field an API server error names (``... is invalid: spec.forks[0].forkOf: ...``), as a path."""
    found = _INVALID_PATH.search(message)
    if found is None:
        return ()
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"[.\[\]]+", found.group(1)) if p)


def origin(change: Change, specs: Specs, message: str) -> Location | None:
    """Where in the user's files the object of ``change`` comes from: the spec itself (at the field the API
    server names, when it names one), or the fork entry of the sandbox the object belongs to."""
    if change.ref.kind in storing.STORED_KINDS:
        found = specs.origin(change.ref.kind, change.ref.name)
        return found.at(*field_path(message)) if found is not None else None
    sandbox = next((s for s in specs.sandboxes if s.name == change.sandbox), None)
    found = specs.origin("Sandbox", sandbox.name) if sandbox is not None else None
    if sandbox is None or found is None:
        return found
    fork_of = (((change.desired or {}).get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_FORK_OF, "")
    for i, fork in enumerate(sandbox.spec.forks):
        if f"{fork.fork_of.namespace}/{fork.fork_of.name}" == fork_of:
            return found.at("spec", "forks", i)
    return found.at("spec", "forks")

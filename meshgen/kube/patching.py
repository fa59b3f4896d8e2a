"""Writing one change safely: preconditions, fencing, and retry after re-reading on conflict.

- an update is a JSON patch computed against the live object and guarded by ``test /metadata/resourceVersion``;
  kube-apiserver answers a failed test with 422 (measured on v1.37), so a 422 is re-read and counted as a
  conflict when the object has moved on, and as a real validation error otherwise;
- a delete carries a resourceVersion precondition (409 on mismatch);
- an update that changes a workload's pod selector, which the API server keeps immutable (422), is a delete (with
  that precondition) and a create (:attr:`~meshgen.kube.diffing.Change.recreates`);
- a create that meets an existing object re-reads it: an object meshgen owns becomes an update, anything else is
  an error (:class:`~meshgen.kube.diffing.ForeignObject`);
- fencing: an object recording a newer sandbox-list revision than mine is never replaced or deleted; the write is
  skipped and reported as :attr:`Outcome.FENCED` (a newer writer has it; my caller re-lists).

On conflict the live object is re-read and the desired object recomputed from it (``recompute``): for a user's
VirtualService that replans from the fresh object, so a foreign edit made meanwhile is kept.

A write whose answer never came (a read timeout: an API server busy with many appliers) may or may not have been
carried out; it is re-read and continued from what is there, like a conflict (its preconditions make that safe),
at most :data:`LOST_ANSWERS` times. If what is there is what was wanted, it counts as written.
"""

from __future__ import annotations

import enum
import random
import time
from collections.abc import Callable

from meshgen.documents import JsonObject
from meshgen.kube import diffing
from meshgen.kube.client import Client, Conflict, Invalid, NoAnswer, NotFound
from meshgen.kube.diffing import Action, Change

ATTEMPTS = 8
LOST_ANSWERS = 2
# Recompute the desired object for a ref from a fresh live object (None live: it is gone).
Recompute = Callable[[Change, JsonObject | None], JsonObject | None]


class Outcome(enum.StrEnum):
    WRITTEN = "written"
    FENCED = "fenced"  # a newer writer owns the object's current state; nothing written
    SETTLED = "settled"  # on re-reading, nothing was left to do


def keep_desired(change: Change, live: JsonObject | None) -> JsonObject | None:
    """The default :data:`Recompute`: what meshgen owns does not depend on the live object."""
    return change.desired


def write(client: Client, change: Change, my_revision: int | None, recompute: Recompute = keep_desired,
          dry_run: bool = False) -> tuple[Outcome, Change]:
    """Carry out ``change``; returns what happened and the change finally written (after any re-reads)."""
    current: Change | None = change
    lost = 0
    for attempt in range(ATTEMPTS):
        if current is None:
            # Nothing left to do; after a lost answer, maybe because the write was carried out: say so, so the
            # caller re-reads after its round as after any write.
            return (Outcome.WRITTEN if lost else Outcome.SETTLED), change
        if current.live is not None and diffing.is_newer(current.live, my_revision):
            return Outcome.FENCED, current
        fresh: tuple[JsonObject | None] | None = None  # the object, when an error already made us re-read it
        try:
            _send(client, current, dry_run)
            return Outcome.WRITTEN, current
        except Conflict:  # includes AlreadyExists on create
            pass
        except NoAnswer:
            lost += 1
            if lost > LOST_ANSWERS or dry_run:
                raise
        except NotFound:
            if current.action is Action.DELETE:
                return Outcome.SETTLED, current
            raise
        except Invalid:
            if current.action is not Action.UPDATE:
                raise
            assert current.live is not None
            fresh = (_reread(client, current),)
            if fresh[0] is not None and _version(fresh[0]) == _version(current.live):
                raise  # a real validation error, not a failed resourceVersion test
        if dry_run:
            raise Conflict(f"{current.ref}: changed while computing a server-side dry run; run it again")
        _backoff(attempt)
        live = fresh[0] if fresh is not None else _reread(client, current)
        current = diffing.change_for(recompute(current, live), live)
    raise Conflict(f"{change.ref}: still conflicting after {ATTEMPTS} attempts (someone else keeps changing it); "
                   "run the command again")


def _send(client: Client, change: Change, dry_run: bool) -> None:
    if change.action is Action.CREATE:
        assert change.desired is not None
        client.create(change.desired, dry_run=dry_run)
    elif change.recreates:
        assert change.live is not None and change.desired is not None
        client.delete(change.ref, change.live["metadata"]["resourceVersion"], dry_run=dry_run)
        if not dry_run:  # a dry-run delete leaves the object there: its successor cannot be tried server-side
            client.create(change.desired)
    elif change.action is Action.UPDATE:
        client.patch(change.ref, change.operations(), dry_run=dry_run)
    else:
        assert change.live is not None
        client.delete(change.ref, change.live["metadata"]["resourceVersion"], dry_run=dry_run)


def _reread(client: Client, change: Change) -> JsonObject | None:
    try:
        return client.get(change.ref)
    except NotFound:
        return None


def _version(body: JsonObject) -> str:
    return str(body["metadata"].get("resourceVersion", ""))


def _backoff(attempt: int) -> None:
    """Exponential backoff with full jitter: concurrent appliers spread out instead of colliding again."""
    time.sleep(random.uniform(0, min(0.05 * 2 ** attempt, 1.0)))

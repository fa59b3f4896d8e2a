"""What a stored Sandbox or RouteGroup says about itself: ``status`` (the status subresource).

Every cluster command ends by writing the status of each stored spec whose status changed: its routing key, the
hosts it claims, the objects meshgen made for it (forks, Services, DestinationRules, the routing objects carrying
its routes; a route group's member sandboxes), and ``conditions``, a list (a later ``Ready`` joins
``Reconciled``) in the Kubernetes convention: ``type``, ``status`` True/False, ``reason``, ``message``,
``observedGeneration``, ``lastTransitionTime`` (kept while ``status`` stays the same).

A status is a function of the command's final plan, so a command that changes nothing writes nothing. Writes
are a PUT on ``/status`` carrying the resourceVersion read: a status written meanwhile (by a command that saw a
newer cluster) is never overwritten, the write is skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from meshgen.documents import JsonObject
from meshgen.kube import indexes, storing
from meshgen.kube.client import Client, Conflict, NotFound
from meshgen.kube.kinds import Ref
from meshgen.ownership import LABEL_SANDBOX
from meshgen.plan.model import Exclusion, Owner, OwnerKind, Plan

RECONCILED = "Reconciled"
REASON_RECONCILED = "Reconciled"
MESSAGE_LIMIT = 4000  # a condition message is for people; the full problem list is one `meshgen apply` away


def _object(body: Mapping[str, Any]) -> JsonObject:
    meta = body["metadata"]
    out: JsonObject = {"apiVersion": body["apiVersion"], "kind": body["kind"], "name": meta["name"]}
    if meta.get("namespace"):
        out["namespace"] = meta["namespace"]
    return out


def _key(o: Mapping[str, Any]) -> tuple[str, str, str]:
    return (str(o["kind"]), str(o.get("namespace", "")), str(o["name"]))


@dataclass(frozen=True)
class Outcome:
    """A command's final plan, indexed by owner (so statuses for thousands of sandboxes stay linear)."""

    owners: Mapping[tuple[str, str], Owner]
    excluded: Mapping[tuple[str, str], Exclusion]
    hosts: Mapping[Owner, list[str]]
    sandboxes: Mapping[Owner, list[str]]
    objects: Mapping[tuple[str, str], list[JsonObject]]

    @classmethod
    def of(cls, plan: Plan, rendered: Iterable[JsonObject], excluded: Iterable[Exclusion]) -> Outcome:
        hosts: dict[Owner, set[str]] = {}
        members: dict[Owner, set[str]] = {}
        for claim in plan.claims:
            hosts.setdefault(claim.owner, set()).add(claim.host)
            members.setdefault(claim.owner, set()).add(claim.sandbox)
        tables: dict[tuple[str, str, str], set[Owner]] = {}
        for table in plan.tables:
            owners = {r.owner for r in table.sandbox_routes if r.owner is not None}
            tables[(table.kind, table.namespace, table.name)] = owners
        objects: dict[tuple[str, str], list[JsonObject]] = {}
        for body in rendered:
            meta = body["metadata"]
            table_key = (str(body["kind"]), str(meta.get("namespace") or ""), str(meta["name"]))
            if table_key in tables:
                for owner in tables[table_key]:
                    objects.setdefault((owner.kind.value, owner.name), []).append(_object(body))
            elif (meta.get("labels") or {}).get(LABEL_SANDBOX):
                objects.setdefault((OwnerKind.SANDBOX.value, meta["labels"][LABEL_SANDBOX]), []).append(_object(body))
        return cls({(o.kind.value, o.name): o for o in plan.owners},
                   {(e.kind.value, e.name): e for e in excluded},
                   {o: sorted(h) for o, h in hosts.items()}, {o: sorted(m) for o, m in members.items()},
                   {k: sorted(v, key=_key) for k, v in objects.items()})


def desired(outcome: Outcome, stored: Mapping[str, Any], now: str) -> JsonObject:
    """The status ``stored`` should have after a command that ended with ``outcome``."""
    kind, name = stored["kind"], stored["metadata"]["name"]
    exclusion = outcome.excluded.get((kind, name))
    owner = outcome.owners.get((kind, name))
    status: JsonObject = {"routingKey": owner.routing_key if owner is not None else indexes.routing_key(stored)}
    if exclusion is not None or owner is None:
        status["hosts"], status["objects"] = [], []
        reason = exclusion.reason.value if exclusion is not None else "NotPlanned"
        message = exclusion.message if exclusion is not None else "not in this command's view of the cluster"
        condition = _condition("False", reason, f"routes withheld (the key reaches the baseline): {message}")
    else:
        status["hosts"] = list(outcome.hosts.get(owner, []))
        status["objects"] = list(outcome.objects.get((kind, name), []))
        if kind == OwnerKind.ROUTE_GROUP.value:
            status["sandboxes"] = list(outcome.sandboxes.get(owner, []))
        hosts = len(status["hosts"])
        condition = _condition("True", REASON_RECONCILED, f"routing {hosts} host{'s' * (hosts != 1)}")
    condition["observedGeneration"] = int(stored["metadata"].get("generation") or 0)
    condition["lastTransitionTime"] = _transition_time(stored, condition["status"], now)
    status["conditions"] = [condition]
    return status


def _condition(status: str, reason: str, message: str) -> JsonObject:
    if len(message) > MESSAGE_LIMIT:
        message = message[:MESSAGE_LIMIT - 1] + "…"
    return {"type": RECONCILED, "status": status, "reason": reason, "message": message}


def reconciled(stored: Mapping[str, Any]) -> JsonObject | None:
    """The live ``Reconciled`` condition, if any."""
    conditions = (stored.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if isinstance(c, dict) and c.get("type") == RECONCILED), None)


def pending(stored: Mapping[str, Any]) -> bool:
    """Whether a stored spec has not been reconciled at its current generation (its ``Reconciled`` condition is
    missing or older)."""
    condition = reconciled(stored)
    generation = int((stored.get("metadata") or {}).get("generation") or 0)
    return condition is None or int(condition.get("observedGeneration") or 0) != generation


def _transition_time(stored: Mapping[str, Any], status: str, now: str) -> str:
    live = reconciled(stored)
    if live is not None and live.get("status") == status and live.get("lastTransitionTime"):
        return str(live["lastTransitionTime"])
    return now


def write(client: Client, plan: Plan, rendered: list[JsonObject], excluded: Iterable[Exclusion],
          stored: Iterable[JsonObject]) -> list[str]:
    """Write every changed status among ``stored`` (the objects as last listed); one line per status written."""
    now = storing.timestamp(storing.now_utc())
    outcome = Outcome.of(plan, rendered, excluded)
    lines = []
    for body in stored:
        status = desired(outcome, body, now)
        if body.get("status") == status:
            continue
        ref = Ref.of(body)
        try:
            client.replace_status(ref, {**body, "status": status})
        except (Conflict, NotFound):
            continue  # changed or deleted since listed: whoever did that reconciles it
        lines.append(f"{ref} status: {status['conditions'][0]['reason']}")
    return lines

"""The index of stored specs: labels that let a command read only the Sandboxes and RouteGroups it concerns.

meshgen writes these labels on every Sandbox and RouteGroup it stores, in the same write as the spec, beside the
user's own labels (which they never replace; a spec may not set them,
:func:`meshgen.spec.names.spec_label_key_problem`):

- ``meshgen.dev/indexed: v1-<hash of the spec>``: the spec carries the index, computed from this spec. A spec
  stored around meshgen (kubectl) or by an older meshgen lacks it; every command lists those
  (``!meshgen.dev/indexed``, nothing when there are none) and indexes them before it reads anything else
  (:mod:`meshgen.kube.selecting`). A spec *edited* around meshgen (``kubectl edit``, ``kubectl apply`` over a
  stored one: both keep the labels they do not mention) would keep an index of its old content; the API server
  drops ``meshgen.dev/indexed`` from any update that changes the spec and leaves that label as it was
  (:mod:`meshgen.kube.admission`, a MutatingAdmissionPolicy), which meshgen never does: each of its writes of a
  spec carries the hash of that spec. So an edited spec is unindexed, and found as one;
- ``workload.meshgen.dev/<hash>``, one per workload a sandbox forks or claims virtually: kind, namespace and name,
  hashed into the key's name (a label key's name is at most 63 characters; its value is the workload's name, cut
  to a label value, for people). Workloads and not hosts: which hosts a workload is behind is the baseline's
  (its Services' selectors), read fresh by every command, so an index of workloads never goes stale when a
  Service changes;
- ``meshgen.dev/routing-key: <hash>``: its routing key, hashed (a key may hold ``~``, which a label value may not),
  so a command finds every owner that shares a key with one it plans;
- on a route group, ``match.meshgen.dev/<hash>``, one per sandbox label key its match reads: a sandbox finds the
  groups that may match it by its own label keys. A group finds its members by a label selector on the sandboxes'
  own labels (:func:`member_selectors`): exact values select exactly, a glob selects the key (then filtered).

Everything here is pure: labels from a stored body, selectors from what a command wants.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from meshgen.ownership import (
    LABEL_INDEXED,
    LABEL_ROUTING_KEY,
    LABEL_SANDBOX,
    MATCH_INDEX,
    WORKLOAD_INDEX,
    is_index_label,
)
from meshgen.spec import names

VERSION = "v1"
# Values per set-based requirement: a selector travels in the request URL.
CHUNK = 50
_GLOB = re.compile(r"[*?\[]")
_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

WorkloadId = tuple[str, str, str]  # (kind, namespace, name), as a Sandbox's forkOf / virtual[].workload says


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def workload_key(workload: WorkloadId) -> str:
    """The label key that indexes sandboxes claiming ``workload``."""
    return f"{WORKLOAD_INDEX}/{_hash('/'.join(workload))}"


def key_value(routing_key: str) -> str:
    """The value of ``meshgen.dev/routing-key`` for a routing key."""
    return _hash(routing_key)


def match_key(label_key: str) -> str:
    """The label key that indexes route groups matching on sandbox label ``label_key``."""
    return f"{MATCH_INDEX}/{_hash(label_key)}"


def _as_value(text: str) -> str:
    cut = text[: names.LABEL_VALUE_MAX].rstrip("-_.")
    return cut if _VALUE.fullmatch(cut) else ""


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def workloads(body: Mapping[str, Any]) -> set[WorkloadId]:
    """The workloads a stored Sandbox names (whatever it holds: entries that do not read are skipped)."""
    spec = _mapping(body.get("spec"))
    refs = [_mapping(f).get("forkOf") for f in _list(spec.get("forks"))]
    refs += [_mapping(v).get("workload") for v in _list(spec.get("virtual"))]
    out: set[WorkloadId] = set()
    for entry in refs:
        ref = _mapping(entry)
        namespace, name = ref.get("namespace"), ref.get("name")
        if isinstance(namespace, str) and isinstance(name, str) and namespace and name:
            out.add((str(ref.get("kind") or "Deployment"), namespace, name))
    return out


def user_labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    """A stored spec's labels without the index: what the user wrote."""
    return {k: v for k, v in (labels or {}).items() if not is_index_label(k)}


def routing_key(body: Mapping[str, Any]) -> str:
    """A stored spec's routing key, even when the spec does not validate (derived from the name if unset)."""
    key = _mapping(body.get("spec")).get("routingKey")
    name = str(_mapping(body.get("metadata")).get("name") or "")
    return key if isinstance(key, str) and key else names.derive_routing_key(str(body.get("kind")), name)


def match_terms(body: Mapping[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    """A stored route group's match as ``("all" | "any", [(label key, glob)])`` (terms that do not read are
    skipped)."""
    match = _mapping(_mapping(body.get("spec")).get("match"))
    mode = "all" if match.get("all") is not None else "any"
    terms = []
    for term in _list(match.get(mode)):
        label = _mapping(_mapping(term).get("label"))
        key, value = label.get("key"), label.get("value")
        if isinstance(key, str) and isinstance(value, str):
            terms.append((key, value))
    return mode, terms


def indexed_value(body: Mapping[str, Any]) -> str:
    """The value of ``meshgen.dev/indexed`` meshgen writes with a spec: the index version and the spec's hash (it
    changes whenever the spec does, which is how the API server tells meshgen's writes from edits around it)."""
    spec = json.dumps(body.get("spec") or {}, sort_keys=True, separators=(",", ":"))
    return f"{VERSION}-{_hash(spec)}"


def labels(body: Mapping[str, Any]) -> dict[str, str]:
    """The index labels of a stored Sandbox or RouteGroup (its user labels not included)."""
    out = {LABEL_INDEXED: indexed_value(body), LABEL_ROUTING_KEY: key_value(routing_key(body))}
    if body.get("kind") == "Sandbox":
        for workload in workloads(body):
            out[workload_key(workload)] = _as_value(workload[2])
    else:
        for key, _ in match_terms(body)[1]:
            out[match_key(key)] = ""
    return out


def with_index(body: Mapping[str, Any]) -> dict[str, str]:
    """The labels a stored spec should carry: the user's, then the index."""
    return {**user_labels(_mapping(body.get("metadata")).get("labels")), **labels(body)}


def is_current(body: Mapping[str, Any]) -> bool:
    """Whether a stored spec carries exactly the index its content calls for (not: stored around meshgen, or
    edited since with kubectl)."""
    stored = {k: v for k, v in (_mapping(body.get("metadata")).get("labels") or {}).items() if is_index_label(k)}
    wanted = labels(body)
    # The spec's hash is not checked: whoever wrote it, the API server keeps it only with the spec it came with.
    return (str(stored.pop(LABEL_INDEXED, "")).startswith(VERSION)
            and stored == {k: v for k, v in wanted.items() if k != LABEL_INDEXED})


# -- selectors ------------------------------------------------------------------------------------------------

UNINDEXED = f"!{LABEL_INDEXED}"


def chunks(values: Iterable[str]) -> list[list[str]]:
    ordered = sorted(set(values))
    return [ordered[i:i + CHUNK] for i in range(0, len(ordered), CHUNK)]


def key_selectors(routing_keys: Iterable[str]) -> list[str]:
    """Selectors for every stored spec holding one of ``routing_keys``."""
    return [f"{LABEL_ROUTING_KEY} in ({','.join(c)})" for c in chunks(key_value(k) for k in routing_keys)]


def owned_selectors(sandboxes: Iterable[str]) -> list[str]:
    """Selectors for every object meshgen made for one of ``sandboxes``."""
    return [f"{LABEL_SANDBOX} in ({','.join(c)})" for c in chunks(sandboxes)]


def _term(key: str, glob: str) -> str | None:
    """One requirement selecting (a superset of) the sandboxes a term matches, or ``None``: none can match."""
    if names.label_key_problem(key) is not None:
        return None
    if _GLOB.search(glob):
        return key
    return f"{key}={glob}" if _VALUE.fullmatch(glob) and len(glob) <= names.LABEL_VALUE_MAX else None


def member_selectors(body: Mapping[str, Any]) -> list[str]:
    """Selectors whose results hold every sandbox a stored route group matches (a glob selects its label key, so
    results are filtered with the group's own match afterwards)."""
    mode, terms = match_terms(body)
    requirements = [_term(key, glob) for key, glob in terms]
    if mode == "all":
        return [] if None in requirements or not requirements else [",".join(sorted(set(filter(None, requirements))))]
    return sorted({r for r in requirements if r is not None})

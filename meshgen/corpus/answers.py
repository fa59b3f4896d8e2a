"""What counts as "the answer" to a request, and what a routing key must change in it.

An answer is compared as canonical JSON text (so answers are hashable and sets of them comparable):

- the status, and the body's text when the answer is not an echo's (a fault's abort, a direct response);
- for an echo's answer, each hop: which workload served it, the path it received (rewrites), the request headers
  it received among those the baseline's routes edit, the status and the hops it called in turn (the topology);
  at the top, the response headers among those the routes edit.

Everything else differs between two meshes for reasons no route states (``x-request-id``, ``x-forwarded-*``,
``x-envoy-*``, the client's address) and is left out.

A weighted split or load balancing answers with one of several workloads, so a request has a *set* of possible
answers; :mod:`meshgen.corpus.checking` samples until both sides of a comparison show the same set.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping
from typing import Any

from meshgen import traffic
from meshgen.corpus.probes import Generated, Probe, Variant

_BODY_TEXT = 200


def answer_of(response: traffic.Response, generated: Generated) -> str:
    """The comparable answer to one request (canonical JSON)."""
    body = response.body
    if not isinstance(body, dict) or "served_by" not in body:
        text = body if isinstance(body, str) else json.dumps(body, sort_keys=True)
        return _dump({"status": response.status, "body": text.strip()[:_BODY_TEXT]})
    answer = {"status": response.status, **_hop(body, generated)}
    edited = {n: response.header(n) for n in sorted(generated.response_headers)}
    if edited:
        answer["responseHeaders"] = edited
    return _dump(answer)


def _hop(body: Mapping[str, Any], generated: Generated) -> dict[str, Any]:
    found = body.get("headers")
    heads: Mapping[str, Any] = found if isinstance(found, dict) else {}
    hop: dict[str, Any] = {"servedBy": body.get("served_by")}
    if body.get("protocol") == "tcp":
        return hop
    hop["path"] = body.get("path")
    edited = {n: heads.get(n) for n in sorted(generated.request_headers)}
    if edited:
        hop["requestHeaders"] = edited
    calls = [c for c in body.get("calls") or [] if isinstance(c, dict)]
    if calls:
        hop["calls"] = [_call(c, generated) for c in calls]
    return hop


def _call(call: Mapping[str, Any], generated: Generated) -> dict[str, Any]:
    out: dict[str, Any] = {"service": call.get("service"), "status": call.get("status")}
    if "served_by" in call:
        out.update(_hop(call, generated))
    else:
        out["error"] = str(call.get("error", ""))[:_BODY_TEXT]
    return out


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def expected(answer: str, probe: Probe, variant: Variant, generated: Generated) -> frozenset[str]:
    """What ``answer`` (given without a key) must become with ``variant``'s key: every hop served through a host
    the key's sandbox forks is served by the fork instead, the rest unchanged. A hop that may have come through
    either a forked or another host (both select its workload) may become either."""
    if not variant.forks:
        return frozenset({answer})
    tree = json.loads(answer)
    if "servedBy" not in tree:
        return frozenset({answer})
    return frozenset(_dump(t) for t in _substituted(tree, probe.addressed, variant, generated))


def _substituted(hop: Mapping[str, Any], addressed: str, variant: Variant,
                 generated: Generated) -> Iterable[dict[str, Any]]:
    served = str(hop.get("servedBy"))
    through = generated.destinations.get(addressed, frozenset({addressed})) & generated.fronting.get(
        served, frozenset())
    forked = {variant.forks[h] for h in through if h in variant.forks}
    names = sorted(forked | ({served} if not forked or through - set(variant.forks) else set()))
    calls = hop.get("calls") or []
    options = [list(_substituted(c, str(c.get("service")), variant, generated)) if "servedBy" in c else [dict(c)]
               for c in calls]
    for name in names:
        for chosen in itertools.product(*options):
            out = {**hop, "servedBy": name}
            if calls:
                out["calls"] = [{**c} for c in chosen]
            yield out


def describe(answer: str) -> str:
    """An answer for a report, on one line: ``200 productpage-v1 -> [details-v1, reviews-v2 -> ratings-v1]``."""
    tree = json.loads(answer)
    if "servedBy" not in tree:
        return f"{tree.get('status')} {tree.get('body', '')!r}"
    extra = {k: v for k, v in tree.items() if k in ("requestHeaders", "responseHeaders")}
    return f"{tree.get('status')} {_path(tree)}" + (f" {json.dumps(extra, sort_keys=True)}" if extra else "")


def _path(hop: Mapping[str, Any]) -> str:
    label = str(hop.get("servedBy"))
    if hop.get("path") not in (None, "/"):
        label += f" {hop['path']}"
    calls = [(_path(c) if "servedBy" in c else f"{c.get('service')} ({c.get('status')}: {c.get('error')})")
             for c in hop.get("calls") or []]
    if not calls:
        return label
    return f"{label} -> {calls[0]}" if len(calls) == 1 else f"{label} -> [{', '.join(calls)}]"

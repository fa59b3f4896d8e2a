"""Null means absent, as the API server reads objects: Helm leaves ``labels:``, ``env:``, ``initContainers:`` or a
Secret's ``data:`` empty, and the API server decodes built-in kinds into Go structs, where a null field is simply
not there, and prunes the nulls of non-nullable CRD fields (Istio's nullable ones are protobuf wrappers, where null
is unset too). One exception: a null value inside a string map (``labels: {tier: }``) is the empty string there.

Applied to baseline manifests read from files (objects read from a cluster are in this form already). Of a spec
file (meshgen's own CRDs) only the metadata: the API server keeps the nulls of a CRD's nullable and free-form
fields (``ttl: null``, a merge patch's ``containers: null``, measured), which the spec models read themselves.
"""

from __future__ import annotations

from typing import Any

# Mappings of string to string in the kinds meshgen reads: a null value there is "" to the API server. A
# ``selector`` is one in a Service; a Deployment's is a LabelSelector (matchLabels, matchExpressions).
STRING_MAPS = frozenset({"labels", "annotations", "matchLabels", "nodeSelector", "selector", "data", "stringData"})
_LABEL_SELECTOR = frozenset({"matchLabels", "matchExpressions"})


def absent(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` without null mapping values (a copy where anything changes), iteratively: a document may nest
    10,000 levels deep."""
    if not _has_null(body):
        return body
    root: dict[str, Any] = {}
    work: list[tuple[Any, Any, bool]] = [(body, root, False)]
    while work:
        source, target, in_strings = work.pop()
        items = source.items() if isinstance(source, dict) else enumerate(source)
        for k, v in items:
            if v is None:
                if isinstance(source, dict):
                    if in_strings:
                        target[k] = ""
                    continue
                target.append(None)  # a null list item is the apiserver's to refuse, with its message
                continue
            child: Any = v
            if isinstance(v, dict | list):
                child = {} if isinstance(v, dict) else []
                strings = isinstance(v, dict) and isinstance(source, dict) and k in STRING_MAPS and not (
                    k == "selector" and _LABEL_SELECTOR.intersection(v))
                work.append((v, child, strings))
            if isinstance(target, dict):
                target[k] = child
            else:
                target.append(child)
    return root


def _has_null(tree: Any) -> bool:
    work = [tree]
    while work:
        node = work.pop()
        values = node.values() if isinstance(node, dict) else node
        for v in values:
            if v is None and isinstance(node, dict):
                return True
            if isinstance(v, dict | list):
                work.append(v)
    return False


def absent_in_metadata(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with :func:`absent` applied to its ``metadata`` only (ObjectMeta is a Go struct in every kind)."""
    meta = body.get("metadata")
    if not isinstance(meta, dict) or not _has_null(meta):
        return body
    return {**body, "metadata": absent(meta)}

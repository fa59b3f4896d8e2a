"""Applying a sandbox's ``customizations.patch`` to a forked Deployment: strategic, merge or JSON patch.

Strategic merge follows ``kubectl patch --type strategic`` for the lists a pod spec has: lists of containers,
env, ports, volumes and mounts merge by their key field; other lists are replaced; ``null`` deletes a field; the
directives ``$patch: delete`` (on a list item) and ``$patch: replace`` (on a map or list) are honoured.
Pure functions over JSON-like data; the input is never mutated.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

from meshgen.spec.models import PatchType

# Merge keys of the pod-spec lists a fork patch plausibly touches (from the Kubernetes API's
# x-kubernetes-patch-merge-key markers).
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "ports": "containerPort",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "volumes": "name",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
}
_DIRECTIVE = "$patch"


class PatchFailed(ValueError):
    """The patch does not apply to the Deployment; the message says why."""


def apply_patch(document: dict[str, Any], kind: PatchType, value: Any) -> dict[str, Any]:
    """Return ``document`` with the patch applied."""
    if kind is PatchType.JSON:
        try:
            result: dict[str, Any] = jsonpatch.apply_patch(document, value, in_place=False)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
            raise PatchFailed(f"json patch does not apply: {exc}") from exc
        except (TypeError, KeyError, ValueError) as exc:
            raise PatchFailed(f"json patch is malformed: {exc}") from exc
        if not isinstance(result, dict):
            raise PatchFailed("json patch replaced the whole Deployment with a non-object")
        return result
    patched = _merge(document, value) if kind is PatchType.MERGE else _strategic(document, value)
    if not isinstance(patched, dict):
        raise PatchFailed("the patch replaced the whole Deployment with a non-object")
    return patched


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


def _strategic(target: Any, patch: Any, field: str | None = None) -> Any:
    if isinstance(patch, dict):
        if patch.get(_DIRECTIVE) == "replace":
            return {k: copy.deepcopy(v) for k, v in patch.items() if k != _DIRECTIVE}
        if patch.get(_DIRECTIVE) == "delete":
            return None
        result = dict(target) if isinstance(target, dict) else {}
        for key, value in patch.items():
            if key.startswith("$"):
                continue  # $retainKeys, $setElementOrder/...: ordering hints, no effect on content here
            if value is None:
                result.pop(key, None)
            elif isinstance(value, list):
                result[key] = _strategic_list(result.get(key), value, key)
            else:
                merged = _strategic(result.get(key), value, key)
                if merged is None:
                    result.pop(key, None)
                else:
                    result[key] = merged
        return result
    return copy.deepcopy(patch)


def _strategic_list(target: Any, patch: list[Any], field: str) -> list[Any]:
    merge_key = MERGE_KEYS.get(field)
    items = [p for p in patch if not (isinstance(p, dict) and p.get(_DIRECTIVE) == "replace")]
    if len(items) != len(patch):
        return [copy.deepcopy(p) for p in items]
    if merge_key is None or not isinstance(target, list):
        return [copy.deepcopy(p) for p in patch if not (isinstance(p, dict) and _DIRECTIVE in p)]
    result = [copy.deepcopy(t) for t in target]
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            raise PatchFailed(f"every item patched into {field!r} needs its merge key {merge_key!r}")
        position = next(
            (i for i, t in enumerate(result) if isinstance(t, dict) and t.get(merge_key) == item[merge_key]), None
        )
        if item.get(_DIRECTIVE) == "delete":
            if position is not None:
                del result[position]
            continue
        if position is None:
            result.append(_strategic({}, item, field))
        else:
            result[position] = _strategic(result[position], item, field)
    return result

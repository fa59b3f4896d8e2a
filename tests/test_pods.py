"""A fork's workload checked offline as the apiserver would: what a patch produces is refused here, with the field
path inside the workload, instead of as a raw 422 (or a pod that never pulls) on the cluster."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from meshgen.plan.pods import workload_findings
from tests.conftest import BOOKINFO

GOOD: dict[str, Any] = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "reviews-v1-pr-1", "namespace": "bookinfo", "labels": {"app": "reviews-pr-1"},
                 "annotations": {"meshgen.dev/fork-of": "bookinfo/reviews-v1"}},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "reviews-pr-1"}},
        "template": {
            "metadata": {"labels": {"app": "reviews-pr-1", "version": "v1"}},
            "spec": {
                "containers": [{"name": "reviews", "image": "example/reviews:v1",
                                "env": [{"name": "A", "value": "1"},
                                        {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                                        {"name": "C", "value": "", "valueFrom": {"fieldRef": {"fieldPath": "x"}}},
                                        {"name": "D"}]}],
                "initContainers": [{"name": "init", "image": "busybox:1"}],
                "volumes": [{"name": "v", "image": {"reference": "r.io/data:1"}}, {"name": "e", "emptyDir": {}}],
            },
        },
    },
}


def changed(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(GOOD)
    target: Any = body
    for part in path[:-1]:
        target = target[part]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return body


POD = ("spec", "template", "spec")


def test_a_valid_workload_has_no_findings() -> None:
    assert workload_findings(GOOD) == []


@pytest.mark.parametrize(("path", "value", "where", "fragment"), [
    (("spec", "replicas"), "many", ("spec", "replicas"), "whole number"),
    (("spec", "replicas"), True, ("spec", "replicas"), "whole number"),
    (("spec", "replicas"), -1, ("spec", "replicas"), "whole number"),
    ((*POD, "containers"), None, (*POD, "containers"), "at least one container"),
    ((*POD, "containers"), [], (*POD, "containers"), "at least one container"),
    ((*POD, "containers"), KeyError, (*POD, "containers"), "at least one container"),
    ((*POD, "containers", 0, "image"), KeyError, (*POD, "containers", 0, "image"), "needs an image"),
    ((*POD, "containers", 0, "image"), "", (*POD, "containers", 0, "image"), "required"),
    ((*POD, "containers", 0, "image"), "Example/App", (*POD, "containers", 0, "image"), "not an image reference"),
    ((*POD, "containers", 0, "name"), KeyError, (*POD, "containers", 0, "name"), "needs a name"),
    ((*POD, "containers", 0, "name"), "Reviews", (*POD, "containers", 0, "name"), "DNS-1123"),
    ((*POD, "initContainers", 0, "name"), "reviews", (*POD, "initContainers", 0, "name"), "used twice"),
    ((*POD, "initContainers", 0, "image"), "a b", (*POD, "initContainers", 0, "image"), "not an image reference"),
    ((*POD, "containers", 0, "env", 0, "valueFrom"), {"fieldRef": {}}, (*POD, "containers", 0, "env", 0),
     "both value and valueFrom"),
    ((*POD, "containers", 0, "env", 1, "valueFrom"), {}, (*POD, "containers", 0, "env", 1, "valueFrom"),
     "exactly one of"),
    ((*POD, "containers", 0, "env", 1, "valueFrom"), {"fieldRef": {}, "secretKeyRef": {}},
     (*POD, "containers", 0, "env", 1, "valueFrom"), "exactly one of"),
    ((*POD, "containers", 0, "env", 0, "name"), "A=B", (*POD, "containers", 0, "env", 0, "name"), "other than '='"),
    ((*POD, "containers", 0, "env", 0, "value"), 7, (*POD, "containers", 0, "env", 0, "value"), "a string"),
    ((*POD, "ephemeralContainers"), [{"name": "dbg", "image": "busybox"}], (*POD, "ephemeralContainers"),
     "cannot have ephemeral containers"),
    ((*POD, "volumes", 0, "image", "reference"), "Bad Ref", (*POD, "volumes", 0, "image", "reference"),
     "not an image reference"),
    (("spec", "template", "metadata", "labels", "version"), 2, ("spec", "template", "metadata", "labels", "version"),
     "must be a string"),
    (("spec", "template", "metadata", "labels", "version"), "-v1", ("spec", "template", "metadata", "labels",
                                                                    "version"), "label value"),
    (("metadata", "labels", "bad key"), "x", ("metadata", "labels", "bad key"), "qualified name"),
    (("metadata", "annotations", "note"), 1, ("metadata", "annotations", "note"), "must be a string"),
    (("spec", "selector", "matchLabels", "app"), "x" * 64, ("spec", "selector", "matchLabels", "app"), "label value"),
    (("spec", "template", "spec"), "nope", ("spec", "template", "spec"), "not an object"),
    (("spec", "template"), None, ("spec", "template"), "missing"),
    (("spec",), [], ("spec",), "not an object"),
])
def test_findings(path: tuple[Any, ...], value: Any, where: tuple[Any, ...], fragment: str) -> None:
    findings = workload_findings(changed(path, value))
    assert [f.path for f in findings] == [where], findings
    assert fragment in findings[0].message and findings[0].fix


def test_env_values_are_never_quoted() -> None:
    findings = workload_findings(changed((*POD, "containers", 0, "env", 0, "valueFrom"), {"fieldRef": {}}))
    assert findings and all("1" not in f.message for f in findings)


SANDBOX = """\
apiVersion: meshgen.dev/v1alpha1
kind: Sandbox
metadata: {name: pr-1}
spec:
  forks:
  - forkOf: {namespace: bookinfo, name: reviews-v1}
    customizations:
      patch: {type: %s, value: %s}
"""


@pytest.mark.parametrize(("kind", "value", "fragment"), [
    ("merge", "{spec: {template: {spec: {containers: null}}}}", "a pod needs at least one container"),
    ("json", "[{op: replace, path: /spec/template/spec/containers, value: []}]", "a pod needs at least one container"),
    ("json", "[{op: remove, path: /spec/template}]", "the pod template is missing"),
    ("json", "[{op: replace, path: /spec, value: [1]}]", "spec is missing or not an object"),
    ("merge", "{spec: {replicas: many}}", "replicas must be a whole number"),
    ("strategic", "{spec: {template: {spec: {containers: [{name: sidecar}]}}}}", "a container needs an image"),
])
def test_a_broken_patch_exits_2_with_the_field(meshgen, tmp_path: Path, kind: str, value: str,
                                              fragment: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SANDBOX % (kind, value))
    result = meshgen("compile", "-f", str(path), "--baseline", str(BOOKINFO))
    assert result.exit_code == 2 and result.stdout == "", result.output
    assert f"{path}:8: spec.forks[0].customizations.patch" in result.stderr and fragment in result.stderr
    assert "Traceback" not in result.stderr

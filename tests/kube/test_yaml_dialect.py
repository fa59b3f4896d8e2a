"""The oracle for "what kubectl reads" is the real kube-apiserver: it decodes ``Content-Type: application/yaml`` bodies
with sigs.k8s.io/yaml, the library kubectl reads manifests with. Every tricky document of tests/yaml_cases.py is
created with ``dryRun=All`` (nothing is stored) and the server's answer is compared with the table and with what
meshgen read; so is the null handling of built-in kinds (a Deployment the way Helm renders it)."""

from __future__ import annotations

import contextlib
import http.client
import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshgen.documents import parse_documents
from meshgen.errors import InvalidInput
from meshgen.nulls import absent
from meshgen.testenv.controlplane import ControlPlane
from tests.yaml_cases import CASES, Case, Refused, document, expected, same

pytestmark = pytest.mark.kube

GROUP = "meshgen-test.dev"
PROBE_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": f"probes.{GROUP}"},
    "spec": {"group": GROUP, "scope": "Namespaced",
             "names": {"plural": "probes", "singular": "probe", "kind": "Probe", "listKind": "ProbeList"},
             "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                 "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]},
}


@pytest.fixture(scope="module")
def probes(control_plane: ControlPlane) -> ControlPlane:
    """A CRD that keeps whatever ``data`` holds, so the server answers with exactly the value it read."""
    status, reply = control_plane.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                                          PROBE_CRD)
    assert status in (201, 409), reply
    control_plane.wait_established([PROBE_CRD["metadata"]["name"]])
    control_plane.create_namespace("yaml-dialect")
    return control_plane


@contextlib.contextmanager
def _deep_json() -> Iterator[None]:
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(30_000)  # the 9,999-level case comes back as JSON that deep
    try:
        yield
    finally:
        sys.setrecursionlimit(limit)


def post_yaml(plane: ControlPlane, path: str, text: str) -> tuple[int, Any]:
    """POST a YAML body as kubectl's own bytes would arrive, ``dryRun=All``; the reply decoded from JSON."""
    conn = http.client.HTTPSConnection("127.0.0.1", plane.port, timeout=60, context=plane.ssl_context())
    try:
        conn.request("POST", f"{path}?dryRun=All&fieldValidation=Ignore", body=text.encode(),
                     headers={"Content-Type": "application/yaml", "Accept": "application/json"})
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    with _deep_json():
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, raw.decode(errors="replace")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_the_api_server_reads_each_document_as_meshgen_does(probes: ControlPlane, case: Case) -> None:
    text = document(case)
    status, reply = post_yaml(probes, f"/apis/{GROUP}/v1/namespaces/yaml-dialect/probes", text)
    try:
        mine: Any = parse_documents(text, "case.yaml")[0].body["data"]
    except InvalidInput as exc:
        mine = Refused(str(exc))
    if case.kubectl_any_of:  # kubectl's answer is one of several; meshgen refuses to guess
        assert status == 201 and reply["data"] in case.kubectl_any_of, (status, reply)
        assert isinstance(mine, Refused) and case.expect.because in mine.because
        return
    if isinstance(case.expect, Refused):
        assert status >= 400, f"the API server accepted what the table says kubectl refuses: {reply}"
        assert isinstance(mine, Refused) and case.expect.because in mine.because, mine
        return
    assert status == 201, reply
    with _deep_json():
        assert same(reply["data"], expected(case)), f"server read {str(reply['data'])[:300]}"
        assert same(mine, reply["data"])


HELM_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: helm-shaped
  labels:
  annotations:
spec:
  selector:
    matchLabels: {app: helm-shaped}
  template:
    metadata:
      labels: {app: helm-shaped, tier: }
      annotations:
    spec:
      initContainers:
      securityContext:
      containers:
      - name: app
        image: example/app:1.2
        env:
        envFrom:
        args: [--flag=on, "on", '0755']
"""


def test_nulls_are_absent_to_the_api_server_as_to_meshgen(probes: ControlPlane) -> None:
    """Defect 2: Helm's empty fields. What the server stores for the fields meshgen reads is what meshgen reads."""
    status, reply = post_yaml(probes, "/apis/apps/v1/namespaces/yaml-dialect/deployments", HELM_DEPLOYMENT)
    assert status == 201, reply
    mine = absent(parse_documents(HELM_DEPLOYMENT, "helm.yaml")[0].body)
    for path in (("metadata", "labels"), ("metadata", "annotations"), ("spec", "template", "metadata", "labels"),
                 ("spec", "template", "metadata", "annotations"),
                 ("spec", "template", "spec", "initContainers"), ("spec", "template", "spec", "containers", 0, "env"),
                 ("spec", "template", "spec", "containers", 0, "envFrom"),
                 ("spec", "template", "spec", "containers", 0, "args")):
        assert _at(mine, path) == _at(reply, path), path
    assert _at(reply, ("spec", "template", "metadata", "labels", "tier")) == ""  # null in a string map: ""
    assert _at(reply, ("metadata", "labels")) is None and "env" not in _at(reply, ("spec", "template", "spec",
                                                                                  "containers", 0))


def _at(tree: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        if isinstance(tree, dict):
            tree = tree.get(part)  # type: ignore[call-overload]
        elif isinstance(tree, list) and isinstance(part, int) and part < len(tree):
            tree = tree[part]
        else:
            return None
    return tree


TOKENS = ["a", "b", "1", "0x1F", "1_000", "1.5", "1e3", "0755", "true", "no", "y", "on", "~", "null", "2026-11-26",
          "<<", "&x", "*x", "'q'", '"d\\n"', "|", ">", ":", ": ", "- ", "\n", "\n  ", "\n  - ", "{", "}", "[", "]",
          ",", "? ", "#c", " ", "\t", "a:b", "http://x", "..."]


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), min_size=1, max_size=25))
def test_random_documents_read_as_the_api_server_reads_them(probes: ControlPlane, tokens: list[str]) -> None:
    """Random YAML-shaped values: meshgen refuses exactly what the server refuses and reads the rest alike."""
    text = document(Case("random", " " + "".join(tokens), None))
    status, reply = post_yaml(probes, f"/apis/{GROUP}/v1/namespaces/yaml-dialect/probes", text)
    try:
        docs = parse_documents(text, "random.yaml")
        mine: Any = docs[0].body.get("data") if docs else Refused("no document")
    except InvalidInput as exc:
        mine = Refused(str(exc))
    if status != 201:
        assert isinstance(mine, Refused), f"the server refused ({reply}) what meshgen read: {mine!r}"
    else:
        assert not isinstance(mine, Refused), f"meshgen refused what the server read ({reply.get('data')!r}): {mine}"
        assert same(mine, reply.get("data")), (mine, reply.get("data"))

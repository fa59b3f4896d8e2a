"""Random patches over random baselines never yield a stored sandbox the API server refuses (DESIGN invariant 8).

The real kube-apiserver is the oracle: every random fork customization (a patch of any type that empties,
retypes or breaks the pod template, images good and bad, labels good and bad) is applied through the reconciler.
Either the apply fails — exit 2, nothing written (a dry run is no write) — or the sandbox is stored and every
object it makes was written, so it is ``Reconciled``. A stored sandbox left out because the API server refused
one of its objects
would be a tenant's failure that reached the cluster. The example budget is small: each example is a real
apply against the API server.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from meshgen.errors import InvalidInput, MeshgenError
from meshgen.kube import kinds
from meshgen.kube.reconciling import NewSpecs
from meshgen.spec.loading import load_specs
from tests.kube.conftest import Cluster
from tests.strategies import as_documents, baselines

pytestmark = pytest.mark.kube

_examples = itertools.count()
ORACLE = settings(max_examples=12, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

images = st.sampled_from(["registry.example.com/app:2", "img/app:3", "localhost:5000/app@sha256:" + "a" * 64,
                          "UPPER/Case:tag", "app:tag with space", "", "app@sha256:short"])
label_keys = st.sampled_from(["team", "example.com/tier", "-bad", "a" * 64, "x/y/z"])
label_values = st.sampled_from(["blue", "", "has space", "b" * 64, "ok.1-2_3"])


@st.composite
def pod_changes(draw: st.DrawFn, container: str) -> dict[str, Any]:
    """A partial Deployment: one to three random changes to replicas, the pod's labels and its containers."""
    spec: dict[str, Any] = {}
    pod: dict[str, Any] = {}
    for change in draw(st.lists(st.sampled_from(["replicas", "labels", "containers", "env", "resources",
                                                 "ports", "image", "volumes"]), min_size=1, max_size=3,
                                unique=True)):
        if change == "replicas":
            spec["replicas"] = draw(st.sampled_from([0, 2, -1, "many", None]))
        elif change == "labels":
            spec["template"] = {"metadata": {"labels": {draw(label_keys): draw(label_values)}}}
        elif change == "containers":
            pod["containers"] = draw(st.sampled_from([[], None, [{"name": container}],
                                                      [{"name": container, "image": "img/x:1"},
                                                       {"name": container, "image": "img/y:1"}]]))
        elif change == "env":
            pod["containers"] = [{"name": container, "env": [draw(st.sampled_from([
                {"name": "A", "value": "1"}, {"name": "A", "value": "1", "valueFrom": {"fieldRef": {
                    "fieldPath": "metadata.name"}}}, {"name": "1BAD", "value": "x"}]))]}]
        elif change == "resources":
            pod["containers"] = [{"name": container, "resources": draw(st.sampled_from([
                {"limits": {"cpu": "100m"}, "requests": {"cpu": "200m"}}, {"requests": {"memory": "64Mi"}},
                {"limits": {"cpu": "lots"}}]))}]
        elif change == "ports":
            pod["containers"] = [{"name": container, "ports": [{"containerPort": draw(st.sampled_from(
                [8080, 0, 70000]))}]}]
        elif change == "image":
            pod["containers"] = [{"name": container, "image": draw(images)}]
        else:
            pod["volumes"] = [draw(st.sampled_from([{"name": "scratch", "emptyDir": {}}, {"name": "Bad_Name",
                                                                                       "emptyDir": {}}]))]
    if pod:
        spec.setdefault("template", {})["spec"] = pod
    return {"spec": spec}


@st.composite
def customizations(draw: st.DrawFn, container: str) -> dict[str, Any]:
    kind = draw(st.sampled_from(["strategic", "merge", "json"]))
    if kind != "json":
        return {"patch": {"type": kind, "value": draw(pod_changes(container))}}
    ops = draw(st.lists(st.sampled_from([
        {"op": "replace", "path": "/spec/replicas", "value": "many"},
        {"op": "replace", "path": "/spec/template/spec/containers", "value": []},
        {"op": "add", "path": "/spec/template/spec/containers/0/image", "value": "img/ok:2"},
        {"op": "remove", "path": "/spec/template/spec/containers/0/image"},
        {"op": "add", "path": "/spec/template/metadata/labels/extra", "value": "has space"},
        {"op": "add", "path": "/spec/template/metadata/labels/extra", "value": "fine"},
    ]), min_size=1, max_size=2))
    return {"patch": {"type": "json", "value": ops}}


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    baseline = [o for o in draw(baselines()) if o["kind"] in ("Service", "Deployment")]
    deployments = [o for o in baseline if o["kind"] == "Deployment"]
    sandboxes = []
    for i in range(draw(st.integers(1, 3))):
        target = draw(st.sampled_from(deployments))
        container = target["spec"]["template"]["spec"]["containers"][0]["name"]
        sandboxes.append({"apiVersion": "meshgen.dev/v1alpha1", "kind": "Sandbox", "metadata": {"name": f"o{i}"},
                          "spec": {"forks": [{"forkOf": {"namespace": target["metadata"]["namespace"],
                                                         "name": target["metadata"]["name"]},
                                              "customizations": draw(customizations(container))}]}})
    return baseline, sandboxes


@ORACLE
@given(case=cases())
def test_what_the_api_server_would_refuse_is_never_stored(cluster: Cluster, case: Any) -> None:
    baseline, sandboxes = case
    n = next(_examples)
    prefix = f"{cluster.namespace}-h{n}"
    rename = {ns: f"{prefix}-{ns}" for ns in ("alpha", "beta")}
    admin = cluster.client()
    for ns in rename.values():
        cluster.plane.create_namespace(ns)
    for body in baseline:
        admin.create({**body, "metadata": {**body["metadata"], "namespace": rename[body["metadata"]["namespace"]]}})
    for sandbox in sandboxes:
        sandbox["metadata"]["name"] = f"{prefix}-{sandbox['metadata']['name']}"
        for fork in sandbox["spec"]["forks"]:
            fork["forkOf"]["namespace"] = rename[fork["forkOf"]["namespace"]]
    names = [s["metadata"]["name"] for s in sandboxes]
    client = cluster.client()
    reconciler = cluster.reconciler(client)
    try:
        reconciler.apply(NewSpecs(load_specs(as_documents(sandboxes, "oracle.yaml")), tuple(sandboxes)))
    except InvalidInput as exc:
        event("refused by the API server's dry run" if "the API server refuses" in str(exc) else
              "refused by meshgen's own checks")
        assert "Traceback" not in str(exc)
        stored = [n for n in names if cluster.exists("Sandbox", n, "")]
        assert stored == [], f"refused ({exc}) yet stored"
        assert client.writes == 0, f"refused, after writing: {client.counts}"
        return
    except MeshgenError as exc:
        pytest.fail(f"apply failed with something other than a refusal of the input: {exc}")
    event("stored and reconciled")
    try:
        for name in names:
            live = cluster.get("Sandbox", name, "")
            [condition] = live["status"]["conditions"]
            assert condition["status"] == "True", f"{name} stored, then not reconciled: {condition}"
        forks = [o for ns in rename.values() for o in admin.list(kinds.DEPLOYMENT, ns).items
                 if o["metadata"]["name"].endswith(tuple(names))]
        assert len(forks) == len(names), "every stored sandbox's fork was written"
    finally:
        reconciler.delete("Sandbox", names)

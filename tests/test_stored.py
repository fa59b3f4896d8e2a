"""Objects in the API server's stored form: nulls absent (empty strings in string maps), and exported objects
recreated without what the server set. The API server's own reading is checked in
tests/kube/test_yaml_dialect.py."""

from __future__ import annotations

from meshgen.baseline.stored import for_create
from meshgen.documents import parse_documents
from meshgen.nulls import absent


def test_nulls_are_absent_and_null_labels_empty() -> None:
    [doc] = parse_documents("metadata: {name: a, labels: {tier: , app: x}, annotations: }\n"
                            "spec: {template: {spec: {containers: [{name: c, env: , resources: }], "
                            "initContainers: }}}\n", "d.yaml")
    assert absent(doc.body) == {"metadata": {"name": "a", "labels": {"tier": "", "app": "x"}},
                                   "spec": {"template": {"spec": {"containers": [{"name": "c"}]}}}}


def test_a_service_selector_is_a_string_map_and_a_deployment_selector_is_not() -> None:
    assert absent({"spec": {"selector": {"app": None}}}) == {"spec": {"selector": {"app": ""}}}
    assert absent({"spec": {"selector": {"matchLabels": {"app": "a", "tier": None}, "matchExpressions": None}}}) == {
        "spec": {"selector": {"matchLabels": {"app": "a", "tier": ""}}}}


def test_an_object_without_nulls_is_returned_as_it_is() -> None:
    body = {"metadata": {"name": "a"}, "spec": {"ports": [{"port": 1}]}}
    assert absent(body) is body


def test_deep_objects_need_no_recursion() -> None:
    deep: dict[str, object] = {"x": None}
    for _ in range(9_000):
        deep = {"a": deep}
    stored = absent(deep)
    for _ in range(9_000):
        stored = stored["a"]  # type: ignore[assignment]
    assert stored == {}


def test_an_exported_service_is_recreated_without_what_the_server_set() -> None:
    exported = {"apiVersion": "v1", "kind": "Service", "status": {"loadBalancer": {}},
                "metadata": {"name": "s", "uid": "u", "resourceVersion": "7", "creationTimestamp": "t",
                             "managedFields": [{}], "annotations": {
                                 "kubectl.kubernetes.io/last-applied-configuration": "{}", "team": "a"}},
                "spec": {"clusterIP": "10.96.0.9", "clusterIPs": ["10.96.0.9"], "selector": {"app": "s"},
                         "ports": [{"port": 80, "nodePort": 30080}]}}
    assert for_create(exported) == {"apiVersion": "v1", "kind": "Service",
                                    "metadata": {"name": "s", "annotations": {"team": "a"}},
                                    "spec": {"selector": {"app": "s"}, "ports": [{"port": 80}]}}
    headless = {"kind": "Service", "metadata": {"name": "h"}, "spec": {"clusterIP": "None", "clusterIPs": ["None"]}}
    assert for_create(headless)["spec"] == {"clusterIP": "None"}

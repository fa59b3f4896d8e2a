"""A fork is what it forks: every workload kind (Deployment, StatefulSet, Argo Rollout), the sandbox's identity in
every container whatever the patch does, and workload references that default their namespace like kubectl."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.conftest import BOOKINFO

SANDBOX = """\
apiVersion: meshgen.dev/v1alpha1
kind: Sandbox
metadata: {{name: pr-1}}
spec:
  routingKey: pr1
  forks:
  - forkOf: {fork_of}
{customizations}
"""

STORE = """\
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: store, namespace: shop}
spec:
  replicas: 3
  serviceName: store-headless
  selector: {matchLabels: {app: store}}
  template:
    metadata: {labels: {app: store, tier: data}}
    spec:
      initContainers: [{name: migrate, image: "example/migrate:1"}]
      containers: [{name: store, image: "example/store:1", volumeMounts: [{name: data, mountPath: /data}]}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
    status: {phase: Pending}
---
apiVersion: v1
kind: Service
metadata: {name: store, namespace: shop}
spec: {selector: {app: store}, ports: [{name: http, port: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: store-headless, namespace: shop}
spec: {clusterIP: None, selector: {app: store}, ports: [{name: http, port: 8080}]}
"""

ROLLOUT = """\
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: cart, namespace: shop}
spec:
  replicas: 5
  revisionHistoryLimit: 3
  selector: {matchLabels: {app: cart}}
  strategy: {canary: {canaryService: cart-canary, stableService: cart-stable, steps: [{setWeight: 20}]}}
  template:
    metadata: {labels: {app: cart}}
    spec: {containers: [{name: cart, image: "example/cart:1"}]}
---
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop}
spec: {selector: {app: cart}, ports: [{name: http, port: 8080}]}
---
# as the Rollouts controller leaves it: a pod-template hash added to the selector
apiVersion: v1
kind: Service
metadata: {name: cart-stable, namespace: shop}
spec: {selector: {app: cart, rollouts-pod-template-hash: 6d9f7c}, ports: [{name: http, port: 8080}]}
"""

REFERENCED = """\
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: pay, namespace: shop}
spec:
  selector: {matchLabels: {app: pay}}
  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: pay-template}
---
apiVersion: v1
kind: Service
metadata: {name: pay, namespace: shop}
spec: {selector: {app: pay}, ports: [{name: http, port: 8080}]}
"""

PAY_TEMPLATE = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: pay-template, namespace: shop}
spec:
  replicas: 0
  selector: {matchLabels: {app: pay}}
  template:
    metadata: {labels: {app: pay}}
    spec: {containers: [{name: pay, image: "example/pay:7"}]}
"""


def compile_objects(meshgen, tmp_path: Path, fork_of: str, baseline: str | None = None, customizations: str = "",
                    *extra: str) -> tuple[int, list[dict[str, Any]], str]:
    spec = tmp_path / "s.yaml"
    spec.write_text(SANDBOX.format(fork_of=fork_of, customizations=customizations))
    paths = [str(BOOKINFO)]
    if baseline is not None:
        (tmp_path / "baseline.yaml").write_text(baseline)
        paths = [str(tmp_path / "baseline.yaml")]
    result = meshgen("compile", "-f", str(spec), *(a for p in paths for a in ("--baseline", p)), *extra)
    objects = list(YAML(typ="safe").load_all(result.stdout)) if result.exit_code == 0 else []
    return result.exit_code, objects, result.stderr


def only(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, [o["metadata"]["name"] for o in found]
    return found[0]


def env_of(container: dict[str, Any]) -> dict[str, str | None]:
    return {e["name"]: e.get("value") for e in container.get("env") or []}


# -- the sandbox's identity --------------------------------------------------------------------------------------


def test_a_container_a_patch_adds_gets_the_identity(meshgen, tmp_path) -> None:
    code, objects, err = compile_objects(meshgen, tmp_path, "{namespace: bookinfo, name: reviews-v1}", None, """\
    customizations:
      patch: {type: json, value: [{op: add, path: /spec/template/spec/containers/-,
                                   value: {name: debugger, image: "example/dbg:1"}},
                                  {op: add, path: /spec/template/spec/initContainers,
                                   value: [{name: seed, image: "example/seed:1", env: [{name: A, value: b}]}]}]}""")
    assert code == 0, err
    pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    for container in (*pod["containers"], *pod["initContainers"]):
        assert env_of(container) | {"MESHGEN_SANDBOX_NAME": "pr-1", "MESHGEN_ROUTING_KEY": "pr1"} == env_of(container)
    assert [e["name"] for e in pod["initContainers"][0]["env"]] == ["MESHGEN_SANDBOX_NAME", "MESHGEN_ROUTING_KEY", "A"]


def test_a_patch_cannot_remove_the_identity(meshgen, tmp_path) -> None:
    """The strategic patch replaces env with one without the injected names; they are set after it."""
    code, objects, err = compile_objects(meshgen, tmp_path, "{namespace: bookinfo, name: reviews-v1}", None, """\
    customizations:
      patch: {type: merge, value: {spec: {template: {spec: {containers: [{name: reviews, image: "x/r:2",
                                                                         env: [{name: ONLY, value: me}]}]}}}}}""")
    assert code == 0, err
    container = only(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert env_of(container) == {"MESHGEN_SANDBOX_NAME": "pr-1", "MESHGEN_ROUTING_KEY": "pr1", "ONLY": "me"}


@pytest.mark.parametrize(("customizations", "where", "message"), [
    ("    customizations: {env: [{name: MESHGEN_ROUTING_KEY, value: x}]}",
     "spec.forks[0].customizations.env[0].name", "MESHGEN_ROUTING_KEY is set by meshgen in every container"),
    ("    customizations:\n      patch: {type: json, value: [{op: add, path: /spec/template/spec/containers/0/env,\n"
     "                                  value: [{name: MESHGEN_SANDBOX_NAME, value: mine}]}]}",
     "spec.forks[0].customizations.patch", "the patch sets MESHGEN_SANDBOX_NAME in container 'reviews'"),
])
def test_setting_the_identity_is_an_error_with_a_fix(meshgen, tmp_path, customizations: str, where: str,
                                                     message: str) -> None:
    code, _, err = compile_objects(meshgen, tmp_path, "{namespace: bookinfo, name: reviews-v1}", None,
                                   customizations)
    assert code == 2
    assert "s.yaml:" in err and where in err and message in err
    assert "fix:" in err


def test_the_originals_own_values_of_the_identity_are_replaced(meshgen, tmp_path) -> None:
    baseline = BOOKINFO.read_text().replace('image: "example/reviews:v1"}',
                                            'image: "example/reviews:v1", env: [{name: MESHGEN_ROUTING_KEY, '
                                            'value: stale}]}', 1)
    assert "stale" in baseline
    code, objects, err = compile_objects(meshgen, tmp_path, "{namespace: bookinfo, name: reviews-v1}", baseline)
    assert code == 0, err
    env = only(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert [e for e in env if e["name"] == "MESHGEN_ROUTING_KEY"] == [{"name": "MESHGEN_ROUTING_KEY", "value": "pr1"}]


# -- workload kinds -----------------------------------------------------------------------------------------------


def test_a_statefulsets_fork_is_a_one_replica_statefulset_with_its_own_claims(meshgen, tmp_path) -> None:
    code, objects, err = compile_objects(meshgen, tmp_path, "{kind: StatefulSet, namespace: shop, name: store}",
                                         STORE)
    assert code == 0, err
    fork = only(objects, "StatefulSet")
    assert fork["metadata"]["name"] == "store-pr-1"
    spec = fork["spec"]
    assert spec["replicas"] == 1
    # claims are named <template>-<statefulset>-<ordinal>: data-store-pr-1-0, not the original's data-store-0
    assert [c["metadata"]["name"] for c in spec["volumeClaimTemplates"]] == ["data"]
    assert "status" not in spec["volumeClaimTemplates"][0]
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Delete"}
    # the governing Service selects the original, so the fork is governed by its copy (its own pod DNS names)
    services = {s["metadata"]["name"]: s for s in objects if s["kind"] == "Service"}
    assert spec["serviceName"] == "store-headless-pr-1"
    assert services["store-headless-pr-1"]["spec"]["clusterIP"] == "None"
    assert set(services) == {"store-pr-1", "store-headless-pr-1"}
    init = spec["template"]["spec"]["initContainers"][0]
    assert env_of(init)["MESHGEN_SANDBOX_NAME"] == "pr-1"
    assert spec["template"]["metadata"]["labels"]["tier"] == "data"


def test_a_rollouts_fork_is_a_deployment_from_its_template(meshgen, tmp_path) -> None:
    code, objects, err = compile_objects(meshgen, tmp_path, "{kind: Rollout, namespace: shop, name: cart}", ROLLOUT)
    assert code == 0, err
    fork = only(objects, "Deployment")
    assert (fork["apiVersion"], fork["metadata"]["name"]) == ("apps/v1", "cart-pr-1")
    assert fork["spec"]["replicas"] == 1 and fork["spec"]["revisionHistoryLimit"] == 3
    assert "strategy" not in fork["spec"]  # a canary strategy means nothing to one replica
    assert fork["spec"]["template"]["spec"]["containers"][0]["image"] == "example/cart:1"
    # the stable Service (its selector carries the controller's pod-template hash) fronts the Rollout too
    assert {s["metadata"]["name"] for s in objects if s["kind"] == "Service"} == {"cart-pr-1", "cart-stable-pr-1"}


def test_a_rollout_with_workload_ref_forks_the_named_deployments_template(meshgen, tmp_path) -> None:
    code, objects, err = compile_objects(meshgen, tmp_path, "{kind: Rollout, namespace: shop, name: pay}",
                                         REFERENCED + "---\n" + PAY_TEMPLATE)
    assert code == 0, err
    fork = only(objects, "Deployment")
    assert fork["metadata"]["name"] == "pay-pr-1"
    assert fork["spec"]["template"]["spec"]["containers"][0]["image"] == "example/pay:7"
    assert fork["spec"]["replicas"] == 1


def test_a_rollout_whose_workload_ref_is_missing_is_refused_clearly(meshgen, tmp_path) -> None:
    code, _, err = compile_objects(meshgen, tmp_path, "{kind: Rollout, namespace: shop, name: pay}", REFERENCED)
    assert code == 2
    assert "spec.forks[0].forkOf: Rollout shop/pay takes its pod template from Deployment shop/pay-template " \
           "(workloadRef), which is not in the baseline" in err
    assert "fix: add that Deployment to the baseline" in err


def test_the_wrong_kind_is_named_in_the_fix(meshgen, tmp_path) -> None:
    code, _, err = compile_objects(meshgen, tmp_path, "{namespace: shop, name: store}", STORE)
    assert code == 2
    assert "Deployment shop/store is not in the baseline" in err and "fix: shop/store is a StatefulSet" in err


# -- namespaces ---------------------------------------------------------------------------------------------------


def test_fork_of_namespace_defaults_to_dash_n(meshgen, tmp_path) -> None:
    code, objects, err = compile_objects(meshgen, tmp_path, "{name: reviews-v1}", None, "", "-n", "bookinfo")
    assert code == 0, err
    assert only(objects, "Deployment")["metadata"]["namespace"] == "bookinfo"


def test_fork_of_without_a_namespace_is_in_default_without_dash_n(meshgen, tmp_path) -> None:
    code, _, err = compile_objects(meshgen, tmp_path, "{name: reviews-v1}")
    assert code == 2
    assert "Deployment default/reviews-v1 is not in the baseline" in err


def test_validate_and_the_stored_document_take_the_default_namespace(meshgen, tmp_path) -> None:
    from meshgen import compiler

    path = tmp_path / "s.yaml"
    path.write_text(SANDBOX.format(fork_of="{name: reviews-v1}", customizations="") +
                    "  virtual: [{name: r, workload: {name: ratings-v1}}]\n")
    specs, documents, _ = compiler.read_spec_documents([str(path)], namespace="bookinfo")
    assert documents[0].body["spec"]["forks"][0]["forkOf"] == {"name": "reviews-v1", "namespace": "bookinfo"}
    assert documents[0].body["spec"]["virtual"][0]["workload"]["namespace"] == "bookinfo"
    assert specs.sandboxes[0].spec.forks[0].fork_of.namespace == "bookinfo"
    result = meshgen("validate", "-f", str(path), "--baseline", str(BOOKINFO), "-n", "bookinfo")
    assert result.exit_code == 0, result.stderr


def test_the_schema_and_the_crd_accept_a_reference_without_a_namespace() -> None:
    from meshgen.kube import crds
    from meshgen.spec.models import SandboxSpec

    ref = crds.spec_schema(SandboxSpec)["properties"]["forks"]["items"]["properties"]["forkOf"]
    assert ref["required"] == ["name"]
    assert "kubeconfig context" in ref["properties"]["namespace"]["description"]
    assert ref["properties"]["kind"]["enum"] == ["Deployment", "StatefulSet", "Rollout"]

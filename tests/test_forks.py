"""Fork derivation through the CLI: customizations and patches are checked, and isolation always holds."""

from __future__ import annotations

import pytest
from ruamel.yaml import YAML

from tests.conftest import BOOKINFO

BASE = """\
apiVersion: meshgen.dev/v1alpha1
kind: Sandbox
metadata: {{name: pr-1}}
spec:
  forks:
  - forkOf: {{namespace: bookinfo, name: reviews-v1}}
    customizations:
{custom}
"""


CANARY = """\
apiVersion: v1
kind: Service
metadata: {name: canary, namespace: bookinfo}
spec: {selector: {track: canary}, ports: [{port: 80}]}
"""


def compile_custom(meshgen, tmp_path, custom: str):
    path = tmp_path / "s.yaml"
    path.write_text(BASE.format(custom=custom))
    (tmp_path / "canary.yaml").write_text(CANARY)
    return meshgen("compile", "-f", str(path), "--baseline", str(BOOKINFO), "--baseline", str(tmp_path / "canary.yaml"))


@pytest.mark.parametrize(
    ("custom", "message"),
    [
        ("      images: [{container: nope, image: x}]",
         "spec.forks[0].customizations.images[0].container: no container 'nope' in the workload"),
        ("      env: [{container: reviews, name: A}]", "set exactly one of 'value' and 'valueFrom'"),
        ("      patch: {type: strategic, value: {spec: {template: {metadata: {labels: {app: reviews}}}}}}",
         "the patch removes pod labels the fork's selector needs"),
        ("      patch: {type: strategic, value: {spec: {template: {metadata: {labels: {track: canary}}}}}}",
         "baseline Service(s) canary would select the fork's pods"),
        ("      patch: {type: merge, value: {spec: {selector: {matchLabels: {app: x}}}}}",
         "the patch changes spec.selector"),
        ("      patch: {type: json, value: [{op: replace, path: /metadata/name, value: other}]}",
         "the patch changes the fork's name or namespace"),
        ("      patch: {type: json, value: {spec: {}}}", "a json patch is a list of operations"),
    ],
)
def test_bad_customizations_are_located(meshgen, tmp_path, custom: str, message: str) -> None:
    result = compile_custom(meshgen, tmp_path, custom)
    assert result.exit_code == 2, result.stdout
    assert message in result.stderr
    assert "s.yaml:" in result.stderr


def test_customizations_apply_in_order_images_env_patch(meshgen, tmp_path) -> None:
    result = compile_custom(meshgen, tmp_path, """\
      images: [{image: "new:1"}]
      env: [{name: MODE, value: a}]
      patch:
        type: json
        value: [{op: add, path: /spec/template/spec/containers/0/env/-, value: {name: LAST, value: z}}]""")
    assert result.exit_code == 0, result.stderr
    deployment = next(d for d in YAML(typ="safe").load_all(result.stdout) if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "new:1"
    # the sandbox's identity is set last, after the patch, and listed first so other variables can refer to it
    assert [e["name"] for e in container["env"]] == ["MESHGEN_SANDBOX_NAME", "MESHGEN_ROUTING_KEY", "MODE", "LAST"]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "meshgen"

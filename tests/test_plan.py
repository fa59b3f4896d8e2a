"""Unit tests of the planner's pure pieces: names, keys, durations, patches, fork derivation."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshgen.baseline.model import resolve_host
from meshgen.plan.patching import PatchFailed, apply_patch
from meshgen.spec import names
from meshgen.spec.models import PatchType


def test_derived_routing_keys_are_stable_opaque_and_url_safe() -> None:
    key = names.derive_routing_key("Sandbox", "pr-1234")
    assert key == names.derive_routing_key("Sandbox", "pr-1234")
    assert key != names.derive_routing_key("RouteGroup", "pr-1234")
    assert "pr" not in key and names.routing_key_problem(key) is None and len(key) == 12


@given(st.sampled_from(["Sandbox", "RouteGroup"]), st.text(min_size=1, max_size=63))
def test_derived_routing_keys_are_the_digests_base32_prefix(kind: str, name: str) -> None:
    """The published form of a derived key (stored keys depend on it): sha256 of meshgen.dev/<kind>/<name>,
    base32, lower case, 12 characters."""
    digest = hashlib.sha256(f"meshgen.dev/{kind}/{name}".encode()).digest()
    assert names.derive_routing_key(kind, name) == base64.b32encode(digest).decode().lower()[:12]


@pytest.mark.parametrize(("text", "seconds"), [("2h", 7200), ("90m", 5400), ("1d12h", 129600), ("1w", 604800),
                                               ("45s", 45), ("0h", None), ("", None), ("2 h", None), ("h", None)])
def test_durations(text: str, seconds: int | None) -> None:
    assert names.parse_duration(text) == seconds


def test_fit_name_keeps_short_names_and_hashes_long_ones() -> None:
    assert names.fit_name("reviews", "pr-1") == "reviews-pr-1"
    long = names.fit_name("a-very-long-service-name-" + "x" * 40, "sandbox-with-a-long-name")
    assert len(long) <= 63 and long.endswith("-sandbox-with-a-long-name")
    assert names.dns_label_problem(long) is None
    assert long != names.fit_name("a-very-long-service-name-" + "y" * 40, "sandbox-with-a-long-name")


DEPLOYMENT = {
    "spec": {"template": {"spec": {
        "containers": [
            {"name": "app", "image": "a:1", "env": [{"name": "A", "value": "1"}], "ports": [{"containerPort": 80}]},
            {"name": "sidecar", "image": "s:1"},
        ],
        "volumes": [{"name": "data", "emptyDir": {}}],
    }}},
}


def test_strategic_merge_by_name_keeps_other_items() -> None:
    patch = {"spec": {"template": {"spec": {"containers": [
        {"name": "app", "env": [{"name": "B", "value": "2"}, {"name": "A", "value": "one"}]},
    ]}}}}
    out = apply_patch(DEPLOYMENT, PatchType.STRATEGIC, patch)
    app, sidecar = out["spec"]["template"]["spec"]["containers"]
    assert app["env"] == [{"name": "A", "value": "one"}, {"name": "B", "value": "2"}]
    assert app["image"] == "a:1" and sidecar["name"] == "sidecar"
    assert DEPLOYMENT["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "A", "value": "1"}]


def test_strategic_delete_and_replace_directives() -> None:
    patch = {"spec": {"template": {"spec": {
        "containers": [{"name": "sidecar", "$patch": "delete"}],
        "volumes": [{"$patch": "replace"}, {"name": "other", "emptyDir": {}}],
    }}}}
    out = apply_patch(DEPLOYMENT, PatchType.STRATEGIC, patch)
    assert [c["name"] for c in out["spec"]["template"]["spec"]["containers"]] == ["app"]
    assert out["spec"]["template"]["spec"]["volumes"] == [{"name": "other", "emptyDir": {}}]


def test_merge_patch_replaces_lists_and_deletes_nulls() -> None:
    out = apply_patch(DEPLOYMENT, PatchType.MERGE, {"spec": {"template": {"spec": {"volumes": None}}}})
    assert "volumes" not in out["spec"]["template"]["spec"]


def test_json_patch_and_its_errors() -> None:
    out = apply_patch(DEPLOYMENT, PatchType.JSON,
                      [{"op": "replace", "path": "/spec/template/spec/containers/1/image", "value": "s:2"}])
    assert out["spec"]["template"]["spec"]["containers"][1]["image"] == "s:2"
    with pytest.raises(PatchFailed, match="does not apply"):
        apply_patch(DEPLOYMENT, PatchType.JSON, [{"op": "remove", "path": "/spec/nope"}])


def test_strategic_item_without_merge_key_is_an_error() -> None:
    with pytest.raises(PatchFailed, match="merge key 'name'"):
        apply_patch(DEPLOYMENT, PatchType.STRATEGIC, {"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}})


@pytest.mark.parametrize(("host", "fqdn"), [
    ("reviews", "reviews.bookinfo.svc.cluster.local"),
    # istiod expands only dot-less names (ResolveShortnameToFQDN); observed through real istiod: a VirtualService
    # for "cart.shop" gets a virtual host of its own and never routes cart.shop.svc.cluster.local.
    ("cart.shop", "cart.shop"),
    ("cart.shop.svc.cluster.local", "cart.shop.svc.cluster.local"),
    ("*.example.com", "*.example.com"),
    ("*", "*"),
])
def test_hosts_resolve_the_way_istiod_resolves_them(host: str, fqdn: str) -> None:
    assert resolve_host(host, "bookinfo", "cluster.local") == fqdn


def test_forks_share_nothing_they_change_with_the_baseline_or_each_other(tmp_path) -> None:
    """Fork bodies are copy-on-write over the baseline's: customizing two forks of one workload must leave
    the baseline object and the other fork exactly as they were."""
    from meshgen import compiler
    from meshgen.documents import clone
    from tests.conftest import EXAMPLES

    specs = tmp_path / "s.yaml"
    specs.write_text("".join(
        f"---\napiVersion: meshgen.dev/v1alpha1\nkind: Sandbox\nmetadata: {{name: {name}}}\nspec:\n  forks:\n"
        f"  - forkOf: {{namespace: bookinfo, name: reviews-v1}}\n    customizations:\n"
        f"      images: [{{container: reviews, image: 'example/reviews:{name}'}}]\n"
        f"      env: [{{container: reviews, name: LOG_DIR, value: /{name}}},\n"
        f"            {{container: reviews, name: X, value: {name}}}]\n"
        for name in ("pr-1", "pr-2")))
    inputs = compiler.read_inputs([str(specs)], [str(EXAMPLES / "baseline")])  # reviews-v1 sets LOG_DIR
    before = clone([r.body for r in inputs.baseline.resources])
    plan = compiler.plan_of(inputs)
    compiler.render(plan)
    assert [r.body for r in inputs.baseline.resources] == before
    one, two = (f.body["spec"]["template"]["spec"]["containers"][0] for f in plan.forks)
    assert (one["image"], two["image"]) == ("example/reviews:pr-1", "example/reviews:pr-2")
    assert {e["name"]: e.get("value") for e in one["env"]}["X"] == "pr-1"
    assert {e["name"]: e.get("value") for e in two["env"]}["LOG_DIR"] == "/pr-2"

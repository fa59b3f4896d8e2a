"""Image references (the Docker reference grammar) and allowedRegistries matched on reference boundaries."""

from __future__ import annotations

import re

import pytest

from meshgen.plan import guardrails
from meshgen.spec import images
from meshgen.spec.models import Guardrails

DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize("image", [
    "reviews", "reviews:v1", "example/reviews:pr-1", "docker.io/library/nginx:1.27", "localhost/app",
    "localhost:5000/team/app:1", "registry.example.com:5000/a/b/c:1.2.3", f"app@{DIGEST}", f"r.io/app:1@{DIGEST}",
    "[::1]:5000/app:1", "Registry.Example.com/app", "a__b/c-d.e:tag_1", "a--b/c",
])
def test_valid_references(image: str) -> None:
    assert images.reference_problem(image) is None


@pytest.mark.parametrize("image", [
    "", " reviews", "reviews ", "Reviews", "example/Reviews", "app:", "app:-tag", ":tag", "a//b", "a/", "/a",
    "app@sha256:short", "foo:bar/baz", "a b", "app:" + "t" * 129, "r.io/" + "a" * 255, "reviews:v1\n",
])
def test_invalid_references(image: str) -> None:
    assert images.reference_problem(image) is not None


@pytest.mark.parametrize(("image", "full"), [
    ("reviews:v1", "docker.io/library/reviews:v1"), ("example/reviews", "docker.io/example/reviews"),
    ("docker.io/nginx", "docker.io/library/nginx"), ("index.docker.io/example/x", "docker.io/example/x"),
    ("localhost/app", "localhost/app"), ("r.io/app", "r.io/app"), ("Host/app", "Host/app"),
])
def test_docker_hub_is_spelled_out(image: str, full: str) -> None:
    assert images.normalized(image) == full


ALLOWED = Guardrails.model_validate({"allowedRegistries": ["registry.example.com", "registry.example.com:5000/team",
                                                           "docker.io/example/"]})


@pytest.mark.parametrize(("image", "allowed"), [
    ("registry.example.com/x:1", True),
    ("registry.example.com/team/app@" + DIGEST, True),
    ("registry.example.com.evil.io/x:1", False),  # a string prefix admitted this
    ("registry.example.comx/x:1", False),
    ("registry.example.com:5000/x:1", False),  # another port is another registry
    ("registry.example.com:5000/team/app:1", True),
    ("registry.example.com:5000/team:1", True),  # the repository the entry names
    ("registry.example.com:5000/team", True),
    ("registry.example.com:5000/teamx/app:1", False),
    ("example/reviews:1", True),  # docker.io/example/reviews
    ("reviews:1", False),  # docker.io/library/reviews
    ("docker.io/examplex/reviews", False),
    ("registry.example.com/X:1", False),  # not a reference at all
])
def test_registries_match_on_reference_boundaries(image: str, allowed: bool) -> None:
    assert guardrails.image_allowed(ALLOWED, image) is allowed


def cel_rule(entry: str, image: str) -> bool:
    """The CEL expression of image_allowed's docstring, term by term (startsWith, contains, ==), for a CEL admission
    policy to state the same rule: this pins the documented form to the behaviour."""
    e = entry.rstrip("/")
    return image.startswith(e + "/") or ("/" in e and (image == e or image.startswith(e + ":")
                                                      or image.startswith(e + "@")))


@pytest.mark.parametrize("entry", ["registry.example.com", "registry.example.com/", "registry.example.com:5000/team",
                                   "docker.io/example"])
@pytest.mark.parametrize("image", ["registry.example.com/x", "registry.example.com.evil.io/x",
                                   "registry.example.com:5000/team/a", "registry.example.com:5000/team:1",
                                   "registry.example.com:5000/teamx", "docker.io/example/a", "docker.io/examples/a"])
def test_the_documented_cel_form_is_the_rule(entry: str, image: str) -> None:
    assert guardrails.registry_admits(entry, image) is cel_rule(entry, image)


def test_the_patterns_are_re2_safe() -> None:
    """No look-around, back-reference or possessive syntax: CEL's matches() is RE2."""
    for pattern in (images.REFERENCE_PATTERN, images.REGISTRY_PATTERN):
        assert not re.search(r"\(\?[=!<]|\\[1-9]|\(\?P=|[*+?]\+", pattern)
        re.compile(pattern)


@pytest.mark.parametrize(("entry", "ok"), [("registry.example.com", True), ("registry.example.com:5000/team", True),
                                           ("registry.example.com/", True), ("https://registry.example.com", False),
                                           ("registry.example.com/Team", False), ("", False)])
def test_registry_entries(entry: str, ok: bool) -> None:
    assert (images.registry_problem(entry) is None) is ok

"""Container image references: their grammar, and the registry they name.

The grammar is the Docker distribution reference grammar (what the kubelet's image pull accepts)::

    reference        := name [ ":" tag ] [ "@" digest ]
    name             := [ domain "/" ] path-component ( "/" path-component )*      (at most 255 characters)
    domain           := host [ ":" port ]
    host             := domain-component ( "." domain-component )* | "[" IPv6 address "]"
    domain-component := [a-zA-Z0-9] | [a-zA-Z0-9] [a-zA-Z0-9-]* [a-zA-Z0-9]
    port             := [0-9]+
    path-component   := [a-z0-9]+ ( separator [a-z0-9]+ )*
    separator        := "." | "_" | "__" | "-"+
    tag              := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
    digest           := algorithm ":" [0-9a-fA-F]{32,}
    algorithm        := [A-Za-z][A-Za-z0-9]* ( [-_+.] [A-Za-z][A-Za-z0-9]* )*

The first component is the registry (``domain``) only if it holds a ``.`` or a ``:``, is ``localhost``, or is not
all lower case; otherwise the image is on Docker Hub: ``reviews:v1`` is ``docker.io/library/reviews:v1`` and
``example/reviews`` is ``docker.io/example/reviews`` (:func:`normalized`; Docker Hub's official images are under
``library/``, also when ``docker.io/nginx`` is written). The patterns are RE2-compatible, so a
CEL rule can use them as they are (``matches()``).
"""

from __future__ import annotations

import re

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])"
DOMAIN_PATTERN = rf"{_HOST}(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
PATH_PATTERN = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
REFERENCE_PATTERN = rf"^(?:{DOMAIN_PATTERN}/)?{PATH_PATTERN}(?::{_TAG})?(?:@{_DIGEST})?$"
# An allowedRegistries entry: a registry, optionally with a repository path under it ("registry.example.com",
# "registry.example.com:5000/team"); a trailing "/" is allowed and means the same.
REGISTRY_PATTERN = rf"^{DOMAIN_PATTERN}(?:/{PATH_PATTERN})?/?$"
NAME_MAX = 255
DOCKER_HUB = "docker.io"

_REFERENCE = re.compile(REFERENCE_PATTERN)
_REGISTRY = re.compile(REGISTRY_PATTERN)


def reference_problem(image: str) -> str | None:
    """Why ``image`` is not an image reference a kubelet can pull, or ``None``."""
    shown = repr(image) if len(image) <= 80 else repr(image[:77] + "...")
    if not image:
        return "an image reference is required"
    if image != image.strip():
        return f"image {shown} has spaces around it"
    if not _REFERENCE.fullmatch(image):
        return (f"image {shown} is not an image reference like registry.example.com/team/app:1.2 (lower-case "
                "repository path, optional :tag and @sha256:digest)")
    if len(_name(image)) > NAME_MAX:
        return f"image {shown}: its name is longer than {NAME_MAX} characters"
    return None


def registry_problem(entry: str) -> str | None:
    """Why ``entry`` is not an allowedRegistries entry (``host[:port]`` with an optional ``/path``), or ``None``."""
    if _REGISTRY.fullmatch(entry):
        return None
    return (f"{entry!r} is not a registry: host[:port], optionally followed by /repository/path "
            "(registry.example.com, registry.example.com:5000/team)")


def _name(image: str) -> str:
    """The name of a reference: without its digest and its tag (a ':' after the last '/'; before it, a port)."""
    name = image.split("@", 1)[0]
    head, slash, last = name.rpartition("/")
    return f"{head}{slash}{last.split(':', 1)[0]}"


def split_domain(image: str) -> tuple[str | None, str]:
    """An image reference as (registry as written, or ``None`` when it names none; the rest)."""
    first, slash, rest = image.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        return first, rest
    return None, image


def normalized(image: str) -> str:
    """An image reference with Docker's implicit registry spelled out: ``reviews:v1`` and ``docker.io/reviews:v1``
    -> ``docker.io/library/reviews:v1``, ``example/reviews`` -> ``docker.io/example/reviews``; ``index.docker.io``
    is Docker Hub's old name for ``docker.io``."""
    domain, rest = split_domain(image)
    if domain not in (None, DOCKER_HUB, "index.docker.io"):
        return image
    return f"{DOCKER_HUB}/{rest}" if "/" in _name(rest) else f"{DOCKER_HUB}/library/{rest}"

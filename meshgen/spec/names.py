"""Name and value grammars shared by every spec kind: DNS labels, header names, routing keys, durations.

Each check returns an error message (or ``None``) instead of raising, so callers can collect every problem.
"""

from __future__ import annotations

import hashlib
import re

DNS_LABEL_MAX = 63
SANDBOX_NAME_MAX = 40
ROUTING_KEY_MAX = 63
_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# RFC 7230 token, lower-case only: Istio matches header names lower-cased.
_HEADER_NAME = re.compile(r"^[a-z0-9!#$%&'*+.^_`|~-]+$")
# RFC 3986 "unreserved": safe in a header, in a baggage value without percent-encoding, and in a URL.
ROUTING_KEY_PATTERN = r"^[A-Za-z0-9._~-]+$"
_ROUTING_KEY = re.compile(ROUTING_KEY_PATTERN)
# W3C baggage key is an RFC 7230 token; tracestate keys are lower-case with an optional tenant@system form.
_BAGGAGE_KEY = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_TRACESTATE_KEY = re.compile(r"^[a-z0-9][_0-9a-z\-*/]{0,255}(@[a-z][_0-9a-z\-*/]{0,13})?$")
_DURATION = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


def dns_label_problem(value: str, max_len: int = DNS_LABEL_MAX) -> str | None:
    """Why ``value`` is not a DNS-1123 label of at most ``max_len`` characters, or ``None``."""
    if len(value) > max_len:
        return f"{value!r} is {len(value)} characters; at most {max_len} are allowed"
    if not _DNS_LABEL.match(value):
        return (
            f"{value!r} is not a DNS-1123 label: lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return None


def dns_subdomain_problem(value: str) -> str | None:
    """Why ``value`` is not a DNS-1123 subdomain (a Kubernetes object name), or ``None``."""
    if len(value) > 253 or not _DNS_SUBDOMAIN.match(value):
        return f"{value!r} is not a valid Kubernetes object name (DNS-1123 subdomain)"
    return None


def header_name_problem(value: str) -> str | None:
    """Why ``value`` is not a lower-case HTTP header name, or ``None``."""
    if not _HEADER_NAME.match(value):
        return f"{value!r} is not a lower-case HTTP header name (Istio matches header names in lower case)"
    return None


def routing_key_problem(value: str) -> str | None:
    """Why ``value`` cannot be a routing key, or ``None``."""
    if not value or len(value) > ROUTING_KEY_MAX or not _ROUTING_KEY.match(value):
        return (
            f"{value!r} is not a routing key: 1-{ROUTING_KEY_MAX} characters from A-Z a-z 0-9 . _ ~ - "
            "(safe in headers, baggage and URLs without encoding)"
        )
    return None


def baggage_key_problem(value: str) -> str | None:
    """Why ``value`` is not a W3C baggage member key, or ``None``."""
    return None if _BAGGAGE_KEY.match(value) else f"{value!r} is not a W3C baggage key (an RFC 7230 token)"


def tracestate_key_problem(value: str) -> str | None:
    """Why ``value`` is not a W3C tracestate key, or ``None``."""
    if _TRACESTATE_KEY.match(value):
        return None
    return f"{value!r} is not a W3C tracestate key (lower-case, [a-z0-9_-*/], optional tenant@system)"


def env_name_problem(value: str) -> str | None:
    """Why ``value`` is not a Kubernetes environment variable name, or ``None``."""
    return None if _ENV_NAME.match(value) else f"{value!r} is not a valid environment variable name"


def parse_duration(value: str) -> int | None:
    """Seconds in a duration like ``2h``, ``90m``, ``1d12h``, ``1w``; ``None`` if it is not one or is zero."""
    match = _DURATION.match(value) if value else None
    if match is None:
        return None
    weeks, days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    total = (((weeks * 7 + days) * 24 + hours) * 60 + minutes) * 60 + seconds
    return total or None


def derive_routing_key(kind: str, name: str) -> str:
    """The default routing key of a named object: stable across runs and machines, opaque (does not reveal
    the name), URL-safe, and different for a Sandbox and a RouteGroup of the same name."""
    digest = hashlib.sha256(f"meshgen.dev/{kind}/{name}".encode()).digest()
    # The first 12 characters of the digest's lower-case base32: its first 60 bits, 5 at a time (what
    # base64.b32encode would give, without encoding all 32 bytes in Python).
    bits = int.from_bytes(digest[:8], "big") >> 4
    return "".join(_BASE32[(bits >> shift) & 31] for shift in range(55, -1, -5))


def fit_name(base: str, suffix: str, limit: int = DNS_LABEL_MAX) -> str:
    """``base-suffix`` if it fits ``limit``; otherwise ``base`` shortened and made unique with a hash:
    ``<base prefix>-<hash6>-<suffix>``. Deterministic, always a valid DNS label when both parts are."""
    joined = f"{base}-{suffix}"
    if len(joined) <= limit:
        return joined
    digest = hashlib.sha256(joined.encode()).hexdigest()[:6]
    room = limit - len(suffix) - len(digest) - 2
    prefix = base[: max(room, 1)].rstrip("-")
    return f"{prefix}-{digest}-{suffix}"

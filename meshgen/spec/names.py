"""Name and value grammars shared by every spec kind: DNS labels, Kubernetes label keys and values, header names,
routing keys, durations; and :func:`fit_name`, which makes the names of generated objects.

Each check returns an error message (or ``None``) instead of raising, so callers can collect every problem. Every
pattern matches the whole value (``fullmatch``: a ``$`` alone would let a trailing newline through) and only
ASCII (``[0-9]``, never ``\\d``, which takes any script's digits).
"""

from __future__ import annotations

import hashlib
import re

from meshgen import ownership

DNS_LABEL_MAX = 63
SANDBOX_NAME_MAX = 40
ROUTING_KEY_MAX = 63
_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# A Service name: a DNS-1035 label starts with a letter.
_DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# Kubernetes label values and the name part of label keys (a "qualified name"): alphanumerics, '-', '_', '.',
# starting and ending alphanumeric, at most 63; a key may have a DNS-subdomain prefix and '/'.
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE_MAX = 63
_SUBDOMAIN_MAX = 253
# RFC 7230 token, lower-case only: Istio matches header names lower-cased.
_HEADER_NAME = re.compile(r"^[a-z0-9!#$%&'*+.^_`|~-]+$")
# RFC 3986 "unreserved": safe in a header, in a baggage value without percent-encoding, and in a URL.
ROUTING_KEY_PATTERN = r"^[A-Za-z0-9._~-]+$"
_ROUTING_KEY = re.compile(ROUTING_KEY_PATTERN)
# W3C baggage key is an RFC 7230 token; tracestate keys are lower-case with an optional tenant@system form.
_BAGGAGE_KEY = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_TRACESTATE_KEY = re.compile(r"^[a-z0-9][_0-9a-z\-*/]{0,255}(@[a-z][_0-9a-z\-*/]{0,13})?$")
_DURATION = re.compile(r"(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?")
# The longest duration meshgen accepts anywhere (a TTL, a maxTTL): a sandbox is a short-lived thing, and a bound
# keeps every expiry time far inside what dates can hold (10000000w overflowed them).
MAX_DURATION = "365d"
MAX_DURATION_SECONDS = 365 * 86400
_DURATION_DIGITS = len(str(MAX_DURATION_SECONDS))
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


def dns_label_problem(value: str, max_len: int = DNS_LABEL_MAX) -> str | None:
    """Why ``value`` is not a DNS-1123 label of at most ``max_len`` characters, or ``None``."""
    if len(value) > max_len:
        return f"{value!r} is {len(value)} characters; at most {max_len} are allowed"
    if not _DNS_LABEL.fullmatch(value):
        return (
            f"{value!r} is not a DNS-1123 label: lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return None


def dns_subdomain_problem(value: str) -> str | None:
    """Why ``value`` is not a DNS-1123 subdomain (a Kubernetes object name), or ``None``."""
    if len(value) > _SUBDOMAIN_MAX or not _DNS_SUBDOMAIN.fullmatch(value):
        return f"{value!r} is not a valid Kubernetes object name (DNS-1123 subdomain)"
    return None


def dns_1035_label_problem(value: str) -> str | None:
    """Why ``value`` is not a DNS-1035 label (a Service name: a DNS label starting with a letter), or ``None``."""
    problem = dns_label_problem(value)
    if problem is None and not _DNS_1035_LABEL.fullmatch(value):
        return f"{value!r} is not a DNS-1035 label (a Service name): it must start with a letter"
    return problem


def label_key_problem(key: str, what: str = "label key") -> str | None:
    """Why ``key`` is not a Kubernetes label (or annotation: ``what``) key, ``[prefix/]name``, or ``None``."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or dns_subdomain_problem(prefix)):
        return f"{what} {key!r}: the prefix before '/' must be a DNS subdomain such as example.com"
    if len(name) > LABEL_VALUE_MAX or not _QUALIFIED_NAME.fullmatch(name):
        return (f"{what} {key!r} is not a qualified name: at most {LABEL_VALUE_MAX} characters from A-Z a-z 0-9 "
                "- _ ., starting and ending with a letter or digit, after an optional DNS-subdomain prefix and '/'")
    return None


def spec_label_key_problem(key: str) -> str | None:
    """Why ``key`` cannot label a Sandbox or RouteGroup: not a label key, or one of the index labels meshgen
    writes on stored specs itself (:func:`meshgen.ownership.is_index_label`)."""
    if ownership.is_index_label(key):
        return f"label key {key!r} is one meshgen writes on stored specs (its index)"
    return label_key_problem(key)


def label_value_problem(value: str) -> str | None:
    """Why ``value`` is not a Kubernetes label value (empty, or a qualified name of at most 63), or ``None``."""
    if value == "" or (len(value) <= LABEL_VALUE_MAX and _QUALIFIED_NAME.fullmatch(value)):
        return None
    return (f"label value {value!r} is not valid: empty, or at most {LABEL_VALUE_MAX} characters from "
            "A-Z a-z 0-9 - _ ., starting and ending with a letter or digit")


# Headers that cannot carry a routing key (as the routing header, a propagation source or the edge token), because
# something between client and workload owns them; the edge removes a key header from untrusted requests, so it
# must also be a header nothing else needs:
# - pseudo-headers (":authority", ":path", ... RFC 9113 8.3) and host (RFC 9110 7.2): they address the request,
#   Envoy routes on them and cannot drop them;
# - connection-specific fields (RFC 9110 7.6.1; RFC 9113 8.2.2 makes them malformed in HTTP/2): connection,
#   keep-alive, proxy-connection, te, trailer, transfer-encoding, upgrade: every proxy hop consumes them, so a key
#   there never travels; and message framing (content-length, transfer-encoding: RFC 9112 6): rewriting it at
#   the edge corrupts the message; expect (RFC 9110 10.1.1) is answered by Envoy itself;
# - proxy-*: credentials and hints for a proxy (proxy-authorization), hop by hop;
# - what Envoy owns (its "HTTP header manipulation" docs): x-envoy-* (internal headers it sets, trusts from
#   internal peers, strips at the edge), x-forwarded-* (set from the connection, the basis of trust decisions),
#   x-request-id (generated; tracing, retries), x-client-trace-id, x-ot-span-context, b3 and x-b3-* (tracing it
#   may regenerate), forwarded and via (RFC 7239, RFC 9110 7.6.3: appended per hop);
# - trace context (W3C): traceparent, tracestate and baggage are the tracer's; meshgen reads keys as *members* of
#   tracestate and baggage, never as the whole header;
# - credentials: authorization, cookie (and set-cookie): stripping them from untrusted clients would log every
#   user out, and a credential must never double as a routing key.
RESERVED_HEADERS = frozenset({
    "host", "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
    "content-length", "expect", "x-request-id", "x-client-trace-id", "x-ot-span-context", "b3", "forwarded", "via",
    "traceparent", "tracestate", "baggage", "authorization", "cookie", "set-cookie",
})
RESERVED_HEADER_PREFIXES = (":", "proxy-", "x-envoy-", "x-forwarded-", "x-b3-")


def header_name_problem(value: str) -> str | None:
    """Why ``value`` is not a lower-case HTTP header name, or ``None``."""
    if not _HEADER_NAME.fullmatch(value):
        return f"{value!r} is not a lower-case HTTP header name (Istio matches header names in lower case)"
    return None


def key_header_problem(value: str) -> str | None:
    """Why ``value`` cannot carry a routing key (or the edge token): not a lower-case header name, or one that
    HTTP, Envoy, tracing or authentication owns (:data:`RESERVED_HEADERS`); ``None`` if it can."""
    lowered = value.lower()
    if lowered in RESERVED_HEADERS or lowered.startswith(RESERVED_HEADER_PREFIXES):
        return (f"header {value!r} is reserved: HTTP, Envoy, tracing or authentication owns it, so a routing key "
                "there is lost, forged or breaks the request")
    if "_" in value:
        # CGI/WSGI read x_a and x-a as one name, nginx drops such headers by default, and meshgen's edge drops them.
        return f"header {value!r} has an underscore: proxies drop such headers and CGI servers read it as '-'"
    return header_name_problem(value)


def routing_key_problem(value: str) -> str | None:
    """Why ``value`` cannot be a routing key, or ``None``."""
    if not value or len(value) > ROUTING_KEY_MAX or not _ROUTING_KEY.fullmatch(value):
        return (
            f"{value!r} is not a routing key: 1-{ROUTING_KEY_MAX} characters from A-Z a-z 0-9 . _ ~ - "
            "(safe in headers, baggage and URLs without encoding)"
        )
    return None


def baggage_key_problem(value: str) -> str | None:
    """Why ``value`` is not a W3C baggage member key, or ``None``."""
    return None if _BAGGAGE_KEY.fullmatch(value) else f"{value!r} is not a W3C baggage key (an RFC 7230 token)"


def tracestate_key_problem(value: str) -> str | None:
    """Why ``value`` is not a W3C tracestate key, or ``None``."""
    if _TRACESTATE_KEY.fullmatch(value):
        return None
    return f"{value!r} is not a W3C tracestate key (lower-case, [a-z0-9_-*/], optional tenant@system)"


def env_name_problem(value: str) -> str | None:
    """Why ``value`` is not a Kubernetes environment variable name, or ``None``."""
    return None if _ENV_NAME.fullmatch(value) else f"{value!r} is not a valid environment variable name"


def _duration_seconds(value: str) -> int | None:
    """Seconds in a duration, uncapped but never a huge number: a part with more digits than any duration up to
    a year needs counts as longer than a year. ``None``: not a duration, or zero."""
    match = _DURATION.fullmatch(value) if value else None
    if match is None:
        return None
    if any(g and len(g.lstrip("0")) > _DURATION_DIGITS for g in match.groups()):
        return MAX_DURATION_SECONDS + 1
    weeks, days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    total = (((weeks * 7 + days) * 24 + hours) * 60 + minutes) * 60 + seconds
    return total or None


def parse_duration(value: str) -> int | None:
    """Seconds in a duration like ``2h``, ``90m``, ``1d12h``, ``1w``, at most a year (a longer one counts as a
    year, so any stored value, whoever wrote it, is safe in date arithmetic); ``None`` if it is not a duration or
    is zero. Validation uses :func:`duration_problem`, which refuses what is longer."""
    total = _duration_seconds(value)
    return None if total is None else min(total, MAX_DURATION_SECONDS)


def duration_problem(value: str, limit: int = MAX_DURATION_SECONDS, limit_text: str = MAX_DURATION) -> str | None:
    """Why ``value`` is not a positive duration of at most ``limit`` seconds (a year by default), or ``None``."""
    total = _duration_seconds(value)
    shown = repr(value) if len(value) <= 40 else repr(value[:37] + "...")
    if total is None:
        return f"duration {shown} is not a positive duration like 30m, 2h, 1d12h, 1w"
    if total > limit:
        return f"duration {shown} is longer than {limit_text}"
    return None


def derive_routing_key(kind: str, name: str) -> str:
    """The default routing key of a named object: stable across runs and machines, opaque (does not reveal
    the name), URL-safe, and different for a Sandbox and a RouteGroup of the same name."""
    digest = hashlib.sha256(f"meshgen.dev/{kind}/{name}".encode()).digest()
    # The first 12 characters of the digest's lower-case base32: its first 60 bits, 5 at a time (what
    # base64.b32encode would give, without encoding all 32 bytes in Python).
    bits = int.from_bytes(digest[:8], "big") >> 4
    return "".join(_BASE32[(bits >> shift) & 31] for shift in range(55, -1, -5))


def fit_name(base: str, suffix: str = "", limit: int = DNS_LABEL_MAX, prefix: str = "") -> str:
    """The name of a generated object: ``prefix-base-suffix`` (empty parts left out) if it fits ``limit``;
    otherwise ``base`` is shortened and the first 6 hex digits of the whole name's SHA-256 follow it:
    ``prefix-<base head>-<hash6>-suffix``. Deterministic, and always at most ``limit`` long with ``prefix`` and
    ``suffix`` kept whole (a VirtualService meshgen owns is ``meshgen-...`` however long its Service's name).

    Valid in the grammar of its parts: with ``prefix`` and ``suffix`` DNS labels, a ``base`` that is a DNS-1123
    subdomain (a Deployment's name), a DNS-1035 label (a Service's) or a label value gives a name of the same
    kind, because the head of ``base`` never ends in '-', '.' or '_'."""
    whole = "-".join(p for p in (prefix, base, suffix) if p)
    if len(whole) <= limit:
        return whole
    digest = hashlib.sha256(whole.encode()).hexdigest()[:6]
    kept = [p for p in (prefix, suffix) if p]
    room = limit - sum(len(p) + 1 for p in kept) - len(digest) - 1
    if room < 1:
        raise ValueError(f"no room for {base!r} in {limit} characters beside {', '.join(kept)}")
    head = base[:room].rstrip("-._") or base[:1]
    return "-".join(p for p in (prefix, head, digest, suffix) if p)

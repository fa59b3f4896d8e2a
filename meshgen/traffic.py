"""Traffic expectations: requests sent through a running mesh and what must come back.

A golden case's ``traffic.yaml`` is a list of checks::

    - name: key in baggage reaches the fork                   # optional, for reports
      request: {host: reviews.bookinfo.svc.cluster.local, port: 9080, path: /reviews/1,
                headers: {baggage: "userid=7,meshgen-routing-key=pr1234;p=1"}}
      expect: {servedBy: reviews-v1@pr-1234}

A request with ``via: edge`` comes from outside the mesh, through the edge gateway (see :class:`Request`).

``expect`` may give ``status`` (default 200), ``servedBy`` (who answered), ``path`` (a chain of hops from the
first service down: ``[productpage-v1, reviews-v1@pr-1234, ratings-v1]``), ``requestPath`` and
``requestHeaders`` (what the serving workload received, to prove rewrites and header edits; a ``null`` value means
"absent"), ``responseHeaders``, and ``body`` (the exact text of a response that is not an echo's, such as a
direct response). Where a weighted split or load balancing may pick either of several workloads, a name may list
the alternatives: ``reviews-v1|reviews-v2``. A header given as a list is sent as that many header lines.

An optional ``topology.yaml`` (``calls: {productpage: [reviews, details], reviews: [ratings]}``) says which services
call which, by Service name (``name`` in the caller's namespace, or ``name.namespace``), and, with
``propagators: {productpage: opentelemetry}``, which re-send baggage the way OpenTelemetry does.

This module is pure: it loads, validates and compares. Sending is :mod:`meshgen.testenv`'s job.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import Field, field_validator, model_validator

from meshgen.backends.localmesh import EDGE_PORT
from meshgen.documents import locate_all, parse_documents, parse_list, read_text
from meshgen.errors import InvalidInput, Location, Problem
from meshgen.plan.model import Host
from meshgen.spec.models import Model
from meshgen.validation import validate_model

HeaderValues = str | list[str]
# RFC 9110 5.1: a field name is a token; 5.5: a field value is visible characters, spaces and tabs (and obs-text).
_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
# Sent as ISO-8859-1 (what HTTP/1.1 clients put on the wire); the request line (method, path) is ASCII.
_UNSAFE_VALUE = re.compile(r"[^\t\x20-\x7e\x80-\xff]")
_UNSAFE_TARGET = re.compile(r"[^\x21-\x7e]")


def request_header_problem(name: str) -> str | None:
    """Why a traffic file cannot send a header of this name, or ``None``: HTTP/1.1 has no pseudo-headers
    (``:authority`` is what ``host`` becomes in HTTP/2), and the request's ``host`` field is its Host header."""
    if name.startswith(":"):
        return (f"header {name!r} is an HTTP/2 pseudo-header, which a request cannot carry as a header line; "
                "set the request's host, method or path instead")
    if not _TOKEN.match(name):
        return f"header name {name!r} is not an HTTP token (letters, digits and !#$%&'*+.^_`|~-)"
    if name.lower() == "host":
        return "the Host header is the request's host field; set request.host instead"
    return None


class Request(Model):
    """One request into the mesh, addressed to a service host (and port: the host's first by default).

    ``via: edge`` sends it from outside the mesh to the edge: the ingress gateway, which removes untrusted routing
    keys and routes by the gateway-bound VirtualServices (a host none of them routes gets 404). Its ``port`` is
    the gateway's (:data:`~meshgen.backends.localmesh.EDGE_PORT`, the default), not a Service port, and ``host``
    is the Host header sent, any name a gateway VirtualService may route. ``source`` is the client's address (a
    loopback address), to test ``allowCidrs``.

    ``protocol: tcp`` opens a plain TCP connection to the host's port instead, sends ``line`` and a newline, and
    reads one line back: an echo workload answers with who served it, so ``servedBy`` works as for HTTP, and the
    status is 200 when a line came back, 0 when the connection closed without one. (An echo tells HTTP from a
    line by its first bytes: a line must not start like an HTTP request, ``GET ``, ``POST `` and so on.) A TCP
    request has no path, method or headers (nothing a route could match), and never goes ``via: edge`` (the edge
    serves HTTP)."""

    host: str = Field(min_length=1)
    port: int | None = None
    protocol: Literal["http", "tcp"] = "http"
    line: str | None = None
    path: str = "/"
    method: str = "GET"
    headers: dict[str, HeaderValues] = Field(default_factory=dict)
    via: Literal["mesh", "edge"] = "mesh"
    source: str | None = None

    @model_validator(mode="after")
    def _tcp(self) -> Request:
        if self.protocol == "tcp":
            wrong = [name for name, value, default in (("path", self.path, "/"), ("method", self.method, "GET"),
                                                        ("headers", self.headers, {}), ("via", self.via, "mesh"))
                     if value != default]
            if wrong:
                raise ValueError(f"{', '.join(wrong)}: a tcp request is a connection and a line, nothing else")
            if self.line is not None and ("\n" in self.line or "\r" in self.line):
                raise ValueError("line: one line of text, without a line break")
        elif self.line is not None:
            raise ValueError("line: only a tcp request sends a line (protocol: tcp)")
        return self

    def sent_line(self) -> str:
        """The line a tcp request sends."""
        return self.line if self.line is not None else "hello"

    @field_validator("source")
    @classmethod
    def _loopback(cls, value: str | None) -> str | None:
        if value is not None and not ipaddress.ip_address(value).is_loopback:
            raise ValueError(f"{value} is not a loopback address; local meshes run on 127.0.0.0/8")
        return value

    @model_validator(mode="after")
    def _edge_port(self) -> Request:
        if self.via == "edge" and self.port not in (None, EDGE_PORT):
            raise ValueError(f"port: an edge request goes to the edge gateway's port {EDGE_PORT}, not a Service "
                             f"port; leave port out")
        return self

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("a request path starts with '/'")
        if _UNSAFE_TARGET.search(value):
            raise ValueError(f"path {value!r} has a space, a control or a non-ASCII character; percent-encode it "
                             "(%20)")
        return value

    @field_validator("host", "method")
    @classmethod
    def _no_controls(cls, value: str) -> str:
        if _UNSAFE_TARGET.search(value):
            raise ValueError(f"{value!r} has a space, a control or a non-ASCII character")
        return value

    @field_validator("headers")
    @classmethod
    def _header_lines(cls, value: dict[str, HeaderValues]) -> dict[str, HeaderValues]:
        for name, values in value.items():
            problem = request_header_problem(name)
            if problem:
                raise ValueError(problem)
            for one in [values] if isinstance(values, str) else values:
                if _UNSAFE_VALUE.search(one):
                    raise ValueError(f"header {name}: a value holds CR, LF, another control character or a "
                                     "character beyond ISO-8859-1; HTTP cannot send it in a header line "
                                     "(percent-encode it)")
        return value

    def header_lines(self) -> list[tuple[str, str]]:
        """The headers as sent, one pair per header line, in the order written."""
        return [(k, v) for k, vs in self.headers.items() for v in ([vs] if isinstance(vs, str) else vs)]


class Expectation(Model):
    """What a request must produce; unset fields are not checked."""

    status: int = 200
    served_by: str | None = Field(default=None, alias="servedBy")
    path: tuple[str, ...] | None = Field(default=None, min_length=1)
    request_path: str | None = Field(default=None, alias="requestPath")
    request_headers: dict[str, str | None] = Field(default_factory=dict, alias="requestHeaders")
    response_headers: dict[str, str | None] = Field(default_factory=dict, alias="responseHeaders")
    body: str | None = None


class Check(Model):
    """One entry of traffic.yaml."""

    name: str | None = None
    request: Request
    expect: Expectation

    def title(self) -> str:
        """How a report names this check."""
        r = self.request
        heads = " ".join(f"{k}: {v!r}" for k, v in r.header_lines())
        origin = f" (via edge{f' from {r.source}' if r.source else ''})" if r.via == "edge" else ""
        if r.protocol == "tcp":
            sent = f"tcp {r.host}{f':{r.port}' if r.port else ''} {r.sent_line()!r}"
        else:
            sent = f"{r.method} {r.host}{f':{r.port}' if r.port else ''}{r.path}{origin} {heads}".rstrip()
        return f"{self.name}: {sent}" if self.name else sent


class Topology(Model):
    """Which services call which (by Service name), for echo workloads that fan out through the mesh, and how each
    propagates ``baggage`` to the services it calls: ``forward`` (the default) sends the header lines as received;
    ``opentelemetry`` extracts and injects it as OpenTelemetry's W3C baggage propagator does (member names and
    values ``+``- and percent-decoded, then re-encoded), the way an instrumented application re-sends it."""

    calls: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    propagators: dict[str, Literal["forward", "opentelemetry"]] = Field(default_factory=dict)


@dataclass(frozen=True)
class Response:
    """What came back: status, response headers (lower-case names) and the body (parsed JSON, else text)."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: Any

    def header(self, name: str) -> str | None:
        """The first value of a response header, or None."""
        return next((v for k, v in self.headers if k == name.lower()), None)


class Sender(Protocol):
    """Anything requests can be sent through: a running mesh (:mod:`meshgen.testenv`)."""

    def send(self, request: Request) -> Response: ...


@dataclass(frozen=True)
class Verdict:
    """One check sent: what came back, and how it differs from the expectation (nothing: it passed)."""

    check: Check
    response: Response
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def run(checks: Sequence[Check], mesh: Sender) -> list[Verdict]:
    """Send every check's request through ``mesh``, in order, and compare each answer with its expectation."""
    verdicts = []
    for check in checks:
        response = mesh.send(check.request)
        verdicts.append(Verdict(check, response, tuple(mismatches(check.expect, response))))
    return verdicts


def load_checks(path: Path, hosts: Mapping[str, Host] | None = None) -> list[Check]:
    """The checks in a traffic.yaml; every problem in every entry is reported at once, with its line. With the
    mesh's ``hosts`` (:func:`meshgen.backends.localmesh.all_hosts`), each request must address one of them, on a
    port it serves, so a mistake is reported before anything starts. A file with no checks is an error: a run
    that checks nothing must not pass."""
    text = read_text(str(path))
    documents = parse_list(text, str(path))
    if not documents:
        raise InvalidInput.one(Location(str(path)), "the traffic file holds no checks",
                               "add a list of {request: {host, ...}, expect: {...}} entries")
    checks: list[Check] = []
    problems: list[Problem] = []
    for doc in documents:
        try:
            check = validate_model(Check, doc.body, doc.location)
        except InvalidInput as exc:
            problems.extend(exc.problems)
            continue
        checks.append(check)
        if hosts is not None:
            problems.extend(_target_problems(check.request, hosts, doc.location.at("request")))
    if problems:
        raise locate_all(InvalidInput(problems), {str(path): text})
    return checks


def _target_problems(request: Request, hosts: Mapping[str, Host], where: Location) -> list[Problem]:
    """A mesh request must address a host of the mesh, on one of its ports (an edge request goes to the gateway,
    which takes any Host)."""
    if request.via == "edge":
        return []
    host = hosts.get(request.host)
    if host is None:
        close = difflib.get_close_matches(request.host, list(hosts), n=3)
        known = close or list(hosts)[:10]
        return [Problem(where.at("host"), f"{request.host} is not a Service host of the mesh",
                        f"{'did you mean' if close else 'hosts'}: {', '.join(known) or 'none'}")]
    ports = [p.port for p in host.ports]
    if request.port is not None and request.port not in ports:
        return [Problem(where.at("port"), f"Service {host.namespace}/{host.name} does not serve port {request.port}",
                        f"use one of its ports: {', '.join(map(str, ports))} (or leave port out for the first)")]
    return []


def load_topology(path: Path | None) -> Topology:
    """A topology file, or an empty topology (nobody calls anybody) when there is none."""
    if path is None:
        return Topology()
    documents = parse_documents(read_text(str(path)), str(path))
    if len(documents) != 1:
        raise InvalidInput([Problem(None, f"{path}: expected one document with 'calls'")])
    return validate_model(Topology, documents[0].body, documents[0].location)


def mismatches(expect: Expectation, response: Response) -> list[str]:
    """How ``response`` differs from ``expect``; empty when it matches."""
    out: list[str] = []
    body = response.body if isinstance(response.body, dict) else {}
    if response.status != expect.status:
        out.append(f"status: expected {expect.status}, got {response.status}")
    if expect.served_by is not None and not _is(body.get("served_by"), expect.served_by):
        out.append(f"servedBy: expected {expect.served_by}, got {body.get('served_by')}")
    if expect.path is not None and not _has_chain(body, expect.path):
        out.append(f"path: expected {' -> '.join(expect.path)}, got {hops(response.body)}")
    if expect.request_path is not None and body.get("path") != expect.request_path:
        out.append(f"requestPath: expected {expect.request_path}, got {body.get('path')}")
    seen = body.get("headers")
    seen = seen if isinstance(seen, dict) else {}
    if expect.body is not None and (not isinstance(response.body, str) or response.body.strip() != expect.body):
        out.append(f"body: expected {expect.body!r}, got {response.body!r}")
    for name, want in sorted(expect.request_headers.items()):
        got = seen.get(name.lower())
        if got != want:
            out.append(f"requestHeaders.{name}: expected {want!r}, got {got!r}")
    for name, want in sorted(expect.response_headers.items()):
        got = response.header(name)
        if got != want:
            out.append(f"responseHeaders.{name}: expected {want!r}, got {got!r}")
    return out


def report(check: Check, response: Response, problems: Sequence[str]) -> str:
    """One failed check for a human: the request, what was expected, what came back, and each difference."""
    expected = check.expect.model_dump(by_alias=True, exclude_defaults=True) or {"status": check.expect.status}
    lines = [f"  request:  {check.title()}",
             f"  expected: {', '.join(f'{k}={v}' for k, v in expected.items())}",
             f"  got:      {response.status} {hops(response.body)}"]
    lines += [f"    - {p}" for p in problems]
    return "\n".join(lines)


def hops(body: Any) -> str:
    """A hop tree on one line: ``productpage-v1 -> [reviews-v1@pr-1 -> ratings-v1, details-v1]``."""
    if not isinstance(body, dict) or "served_by" not in body:
        text = body if isinstance(body, str) else repr(body)
        return f"(not an echo response: {text.strip()[:120]!r})"
    calls = [c for c in body.get("calls") or [] if isinstance(c, dict)]
    label = str(body["served_by"])
    if body.get("status", 200) != 200:
        label += f" ({body['status']})"
    if not calls:
        return label
    inner = [hops(c) if "served_by" in c else f"{c.get('service', '?')} ({c.get('status')}: {c.get('error', '')})"
             for c in calls]
    return f"{label} -> {inner[0]}" if len(inner) == 1 else f"{label} -> [{', '.join(inner)}]"


def _is(served_by: Any, wanted: str) -> bool:
    """Whether ``served_by`` is ``wanted``, or one of its ``|``-separated alternatives."""
    return isinstance(served_by, str) and served_by in wanted.split("|")


def _has_chain(body: Mapping[str, Any], chain: Sequence[str]) -> bool:
    if not _is(body.get("served_by"), chain[0]):
        return False
    if len(chain) == 1:
        return True
    return any(isinstance(c, dict) and _has_chain(c, chain[1:]) for c in body.get("calls") or [])

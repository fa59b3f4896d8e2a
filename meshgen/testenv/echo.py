"""An echo workload: answers with who it is, and calls its downstream services through the mesh.

Run as ``python -m meshgen.testenv.echo --identity reviews-v1@pr-1234 --listen 127.77.64.9:8080 --serves
reviews.bookinfo.svc.cluster.local --directory directory.json``.

Every answer is JSON: ``served_by``, the request ``path``, ``method``, ``host`` and ``headers`` as received, and
``calls``: the answer of each downstream service (its own JSON plus ``status``), so the whole hop path comes back
to the client. The answer also carries the header ``x-served-by``. Downstream calls go to the mesh listener of
the downstream host with that host as ``Host``, from the workload's own address (as a pod's calls leave from its
own IP, so the mesh can tell callers apart), carrying the propagation headers the directory names (what an
instrumented application does for ``baggage`` and ``tracestate``) and the test knobs below.

The directory file (JSON ``{"listeners": {host: [address, port]}, "calls": {host: [host, ...]}, "forward":
[header, ...], "opentelemetry": [host, ...]}``) is re-read when it changes, so the test environment can change the
topology and the policy without restarting workloads. A workload serving an ``opentelemetry`` host re-sends
``baggage`` the way OpenTelemetry's propagator does (:func:`opentelemetry_baggage`: decoded, then encoded again)
instead of forwarding it as received.

Test knobs, request headers naming the workloads they apply to (so they can travel with the request):
- ``x-echo-fail-first: <identity>[,...]`` answers 503 to the first attempt of each ``x-request-id`` (Envoy
  keeps the id across retries, so a retried request succeeds on its second attempt);
- ``x-echo-delay: <identity>=<seconds>[,...]`` waits before answering (to trip route timeouts).

A connection that opens with the HTTP/2 preface is served as HTTP/2 (prior knowledge, what Envoy speaks upstream to
a ``grpc`` or ``http2`` Service port), with the same answers; the ``h2`` package is imported only then. A connection
that opens with neither an HTTP/1 method nor that preface is plain TCP (a TCP Service port): each line is answered
with one JSON line, ``{"served_by": ..., "protocol": "tcp", "line": <the line>}``.

On SIGTERM a workload stops accepting, lets the requests it is serving finish, and exits (as a pod would in
its grace period), so removing a fork never cuts a request that was already routed to it.

Standard library only: dozens of these start per test run, and start-up time matters.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import socket
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAIL_FIRST = "x-echo-fail-first"
DELAY = "x-echo-delay"
KNOBS = (FAIL_FIRST, DELAY)
SERVED_BY = "x-served-by"
CALL_TIMEOUT = 30.0
H2_PREFACE = b"PRI"
# The first three bytes of an HTTP/1 request (its method); a connection that starts otherwise is a TCP line echo.
HTTP_STARTS = frozenset({b"GET", b"POS", b"PUT", b"DEL", b"PAT", b"HEA", b"OPT", b"CON", b"TRA"})


class Directory:
    """The mesh directory file, re-read when its modification time changes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp: float | None = None
        self._data: dict[str, Any] = {"listeners": {}, "calls": {}, "forward": []}
        self._lock = threading.Lock()

    def current(self) -> dict[str, Any]:
        with self._lock:
            try:
                stamp = os.stat(self.path).st_mtime_ns
            except OSError:
                return self._data
            if stamp != self._stamp:
                with open(self.path, encoding="utf-8") as fh:
                    self._data = json.load(fh)
                self._stamp = stamp
            return self._data


class Echo:
    """What one workload is and does."""

    def __init__(self, identity: str, serves: list[str], directory: Directory, address: str = "") -> None:
        self.identity = identity
        self.address = address  # calls leave from it: the mesh tells callers apart by address (sourceLabels)
        self.serves = serves
        self.directory = directory
        self.failed_once: set[str] = set()
        self.active = 0
        self._lock = threading.Lock()

    def serving(self, delta: int) -> None:
        """Count requests in progress (for a graceful exit)."""
        with self._lock:
            self.active += delta

    def knob(self, headers: dict[str, str], name: str) -> str | None:
        """This workload's value of a knob header (``identity=value`` entries, or a bare identity -> "")."""
        for entry in headers.get(name, "").split(","):
            who, _, value = entry.strip().partition("=")
            if who == self.identity:
                return value
        return None

    def fail_first(self, headers: dict[str, str]) -> bool:
        """Whether to fail this attempt: the first one of each request id when the knob names us."""
        if self.knob(headers, FAIL_FIRST) is None:
            return False
        request_id = headers.get("x-request-id", "")
        with self._lock:
            if request_id in self.failed_once:
                return False
            self.failed_once.add(request_id)
            return True

    def answer(self, method: str, path: str, lines: list[tuple[str, str]]) -> tuple[int, dict[str, Any]]:
        """The status and JSON body for one request (``lines``: its header lines as received)."""
        joined: dict[str, str] = {}
        for name, value in lines:
            key = name.lower()
            joined[key] = f"{joined[key]},{value}" if key in joined else value
        if self.fail_first(joined):
            return 503, {"served_by": self.identity, "error": "failing the first attempt (knob)"}
        delay = self.knob(joined, DELAY)
        if delay:
            time.sleep(float(delay))
        return 200, {"served_by": self.identity, "method": method, "path": path, "host": joined.get("host"),
                     "headers": joined, "calls": self.downstream(path, lines)}

    def downstream(self, path: str, lines: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """Call every downstream service of the services this workload serves, in order."""
        directory = self.directory.current()
        targets: list[str] = []
        for host in self.serves:
            targets.extend(t for t in directory["calls"].get(host, []) if t not in targets)
        forward = {h.lower() for h in directory.get("forward", [])} | set(KNOBS)
        carried = [(k, v) for k, v in lines if k.lower() in forward]
        if set(self.serves) & set(directory.get("opentelemetry", [])):
            baggage = opentelemetry_baggage([v for k, v in carried if k.lower() == "baggage"])
            carried = [(k, v) for k, v in carried if k.lower() != "baggage"]
            carried += [("baggage", baggage)] if baggage else []
        return [self._call(directory, target, path, carried) for target in targets]

    def _call(self, directory: dict[str, Any], target: str, path: str,
              headers: list[tuple[str, str]]) -> dict[str, Any]:
        listener = directory["listeners"].get(target)
        if listener is None:
            return {"service": target, "status": 0, "error": "not in the mesh directory"}
        source = (self.address, 0) if self.address else None
        conn = http.client.HTTPConnection(listener[0], int(listener[1]), timeout=CALL_TIMEOUT, source_address=source)
        try:
            conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
            conn.putheader("host", target)
            for name, value in headers:
                conn.putheader(name, value)
            conn.endheaders()
            response = conn.getresponse()
            raw = response.read()
        except OSError as exc:
            return {"service": target, "status": 0, "error": str(exc)}
        finally:
            conn.close()
        try:
            body = json.loads(raw)
        except ValueError:
            body = {"error": raw.decode("utf-8", "replace").strip()}
        return {"service": target, "status": response.status, **body}


# W3C Baggage's grammar: a member name is an RFC 9110 token; a value is baggage-octets; a property is a token with an
# optional "=" value.
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_OCTETS = r"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*"
_NAME = re.compile(_TOKEN)
_VALUE = re.compile(_OCTETS)
_PROPERTY = re.compile(rf"[ \t]*{_TOKEN}[ \t]*(?:=[ \t]*{_OCTETS}[ \t]*)?")
# OpenTelemetry's limits (its W3C baggage propagator): bytes per header, bytes per member, members.
OTEL_MAX_HEADER, OTEL_MAX_MEMBER, OTEL_MAX_MEMBERS = 8192, 4096, 180


def opentelemetry_baggage(received: list[str]) -> str | None:
    """The baggage an application instrumented with OpenTelemetry (its Python W3C baggage propagator) sends on, given
    the baggage lines it received (joined with ",", as a WSGI server hands them over); ``None`` when it sends none.

    Extraction takes the members within the propagator's limits, splits each at its first "=", strips spaces and
    tabs, keeps it if the name is a token and the value baggage-octets (with properties), then ``+``- and
    percent-decodes both and strips them again; a later member of the same name replaces an earlier one. Injection
    writes ``name=value`` pairs ``+``- and percent-encoded. So ``meshgen%2Drouting%2Dkey=pr1`` arrives as a member
    named ``meshgen-routing-key`` and leaves as ``meshgen-routing-key=pr1``: a real key for the next hop."""
    header = ",".join(received)
    if not header or len(header.encode()) > OTEL_MAX_HEADER:
        return None
    members: dict[str, str] = {}
    length = 0
    kept = [e for e in re.split(r"[ \t]*,[ \t]*", header) if e and e.isascii() and len(e) <= OTEL_MAX_MEMBER]
    for index, entry in enumerate(kept[:OTEL_MAX_MEMBERS]):
        length += (1 if index else 0) + len(entry)
        if length > OTEL_MAX_HEADER:
            break
        name, eq, value = entry.partition("=")
        name, value = name.strip(" \t"), value.strip(" \t")
        first, *properties = value.split(";")
        if not eq or not _NAME.fullmatch(name) or not _VALUE.fullmatch(first) or not all(
                _PROPERTY.fullmatch(p) for p in properties):
            continue
        members[urllib.parse.unquote_plus(name).strip()] = urllib.parse.unquote_plus(value).strip()
    encoded = [f"{urllib.parse.quote_plus(k)}={urllib.parse.quote_plus(v)}" for k, v in members.items()]
    return ",".join(e for e in encoded if len(e) <= OTEL_MAX_MEMBER) or None


def handler(echo: Echo) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to ``echo``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: Envoy pools upstream connections

        def do_GET(self) -> None:
            echo.serving(+1)
            try:
                self._serve()
            finally:
                echo.serving(-1)

        def handle(self) -> None:
            try:
                first = self.connection.recv(len(H2_PREFACE), socket.MSG_PEEK | socket.MSG_WAITALL)
            except OSError:
                return
            if first == H2_PREFACE:
                serve_h2(echo, self.connection)
            elif first in HTTP_STARTS:
                super().handle()
            else:
                serve_lines(echo, self.connection)

        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            self._answer(*echo.answer(self.command, self.path, list(self.headers.items())))

        do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET  # noqa: N815 - http.server's naming

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body, sort_keys=True).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.send_header(SERVED_BY, echo.identity)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per request would drown the log's useful part: start-up and errors

    return Handler


def serve_lines(echo: Echo, sock: socket.socket) -> None:
    """Serve a plain TCP connection: answer each line with one JSON line saying who served it (what a TCP Service
    port carries, where the mesh routes connections, not requests)."""
    echo.serving(+1)
    try:
        with sock.makefile("rb") as reader:
            for raw in reader:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                answer = {"served_by": echo.identity, "protocol": "tcp", "line": line}
                sock.sendall(json.dumps(answer, sort_keys=True).encode() + b"\n")
    except OSError:
        return
    finally:
        echo.serving(-1)


def serve_h2(echo: Echo, sock: socket.socket) -> None:
    """Serve one HTTP/2 connection (prior knowledge, no TLS): each stream answered on its own thread, as
    :meth:`Echo.answer` answers HTTP/1.1 requests."""
    import h2.config
    import h2.connection
    import h2.events

    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
    lock = threading.Lock()
    requests: dict[int, list[tuple[str, str]]] = {}

    def flush() -> None:
        data = conn.data_to_send()
        if data:
            sock.sendall(data)

    def respond(stream_id: int, headers: list[tuple[str, str]]) -> None:
        pseudo = {k: v for k, v in headers if k.startswith(":")}
        lines = [(k, v) for k, v in headers if not k.startswith(":")] + [("host", pseudo.get(":authority", ""))]
        echo.serving(+1)
        try:
            status, body = echo.answer(pseudo.get(":method", "GET"), pseudo.get(":path", "/"), lines)
        finally:
            echo.serving(-1)
        data = json.dumps(body, sort_keys=True).encode()
        with lock:
            conn.send_headers(stream_id, [(":status", str(status)), ("content-type", "application/json"),
                                          ("content-length", str(len(data))), (SERVED_BY, echo.identity)])
            conn.send_data(stream_id, data, end_stream=True)
            flush()

    with lock:
        conn.initiate_connection()
        flush()
    while True:
        try:
            data = sock.recv(65535)
        except OSError:
            return
        if not data:
            return
        with lock:
            events = conn.receive_data(data)
            for event in events:
                if isinstance(event, h2.events.RequestReceived):
                    requests[event.stream_id] = [(str(k), str(v)) for k, v in event.headers]
                elif isinstance(event, h2.events.DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id in requests:
                    threading.Thread(target=respond, args=(event.stream_id, requests.pop(event.stream_id)),
                                     daemon=True).start()
            flush()


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and serve until terminated."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identity", required=True)
    parser.add_argument("--listen", required=True, help="address:port")
    parser.add_argument("--serves", default="", help="comma-separated hosts this workload serves")
    parser.add_argument("--directory", required=True, help="the mesh directory JSON file")
    args = parser.parse_args(argv)
    address, _, port = args.listen.rpartition(":")
    echo = Echo(args.identity, [h for h in args.serves.split(",") if h], Directory(args.directory), address)
    server = ThreadingHTTPServer((address, int(port)), handler(echo))
    server.daemon_threads = True
    # shutdown() waits for serve_forever() to return, so it cannot run in the signal handler's (main) thread.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    print(f"echo {args.identity} listening on {args.listen}", flush=True)
    server.serve_forever()
    server.socket.close()
    deadline = time.monotonic() + CALL_TIMEOUT
    time.sleep(0.05)  # a connection accepted just before shutdown has its handler running by now
    while echo.active and time.monotonic() < deadline:
        time.sleep(0.02)
    print(f"echo {args.identity} stopped", flush=True)
    os._exit(0)  # idle keep-alive connections hold threads; nothing in them is worth waiting for


if __name__ == "__main__":
    main()

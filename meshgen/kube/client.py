"""The only module that talks HTTP to a kube-apiserver: a thin layer over the ``kubernetes`` package's transport.

It speaks raw JSON bodies (no generated models), maps failed responses to a short exception hierarchy under
:class:`meshgen.errors.ClusterError` that always names the object, and counts requests by verb so benchmarks and
tests can state how many reads and writes an operation made.
"""

from __future__ import annotations

import collections
import dataclasses
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import urllib3
from kubernetes import config as kube_config
from kubernetes.client import ApiClient
from kubernetes.config.config_exception import ConfigException

from meshgen.errors import ClusterError
from meshgen.kube.kinds import Kind, Ref

JSON_PATCH = "application/json-patch+json"
# A list of metadata only (server-side: the API server drops spec and status), else plain JSON.
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
TIMEOUT_SECONDS = 30
PAGE = 500


class NotFound(ClusterError):
    """404: the object (or its kind: a CRD not installed) does not exist."""


class Conflict(ClusterError):
    """409, or a failed ``test`` in a JSON patch: the object changed since it was read."""


class AlreadyExists(Conflict):
    """409 on create: an object with that name exists."""


class Forbidden(ClusterError):
    """401/403: the credentials may not do this (see ``meshgen install --print-rbac``)."""


class Invalid(ClusterError):
    """400/422: the API server rejected the object (schema, admission)."""


def refused(exc: ClusterError) -> bool:
    """Whether the API server refused the object itself (schema, admission) — not the identity (RBAC) or the
    connection. An admission webhook may answer 403, so a Forbidden counts unless it is RBAC's."""
    if isinstance(exc, Invalid):
        return True
    return isinstance(exc, Forbidden) and " cannot " not in str(exc) and "denied" in str(exc)


class Unreachable(ClusterError):
    """No answer (connection refused, timeout, 5xx)."""


class NoAnswer(Unreachable):
    """A request sent whose answer never came (read timeout): it may or may not have been carried out."""


_BY_STATUS: Mapping[int, type[ClusterError]] = {
    400: Invalid, 401: Forbidden, 403: Forbidden, 404: NotFound, 409: Conflict, 422: Invalid,
}


@dataclass(frozen=True)
class Listing:
    """A list response: its items and the collection's resourceVersion."""

    items: tuple[dict[str, Any], ...]
    resource_version: str


class Client:
    """Requests against one cluster, counted by verb (``list``, ``get``, ``create``, ``patch``, ``delete``), and
    failed responses by status."""

    def __init__(self, api: ApiClient, context: str | None = None, namespace: str = "default") -> None:
        self.api = api
        self.context = context
        # The context's namespace: where kubectl puts a namespaced object that names none.
        self.namespace = namespace
        self.counts: collections.Counter[str] = collections.Counter()
        # Failed responses by status code (409 conflicts, 422 failed ``test`` ops...), for benchmarks and tests.
        self.failures: collections.Counter[int] = collections.Counter()
        self.page = PAGE

    @classmethod
    def from_kubeconfig(cls, path: str | None = None, context: str | None = None) -> Client:
        """A client for ``context`` of the kubeconfig at ``path`` (default: $KUBECONFIG, then ~/.kube/config)."""
        try:
            api = kube_config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=path, context=context, persist_config=False)
            contexts, active = kube_config.list_kube_config_contexts(config_file=path)  # type: ignore[no-untyped-call]
        except (ConfigException, OSError) as exc:
            raise ClusterError(f"cannot load kubeconfig {path or '(default)'}: {exc}") from exc
        chosen = next((c for c in contexts or [] if c.get("name") == context), active) if context else active
        namespace = ((chosen or {}).get("context") or {}).get("namespace") or "default"
        return cls(api, context, str(namespace))

    @property
    def writes(self) -> int:
        return sum(n for verb, n in self.counts.items() if verb in ("create", "patch", "update", "delete"))

    @property
    def reads(self) -> int:
        return sum(n for verb, n in self.counts.items() if verb in ("get", "list"))

    # -- verbs -----------------------------------------------------------------------------------------------

    def list(self, kind: Kind, namespace: str | None = None, label_selector: str | None = None,
             metadata_only: bool = False) -> Listing:
        """Every object of ``kind`` (cluster-wide unless ``namespace``), read in pages of :data:`PAGE`; with
        ``metadata_only``, only their metadata (no spec, no status: the API server sends a
        PartialObjectMetadataList, a fraction of the bytes)."""
        items: list[dict[str, Any]] = []
        resource_version = ""
        for page in self.pages(kind, namespace, label_selector, metadata_only):
            items.extend(page.items)
            resource_version = page.resource_version
        return Listing(tuple(items), resource_version)

    def pages(self, kind: Kind, namespace: str | None = None, label_selector: str | None = None,
              metadata_only: bool = False, limit: int | None = None) -> Iterator[Listing]:
        """The objects of ``kind`` a page at a time (``limit`` per page, :data:`PAGE` by default), following the
        API server's ``continue`` token: a caller that keeps no page holds one page in memory. Every page is
        from one consistent snapshot; its ``resource_version`` is that snapshot's."""
        query: dict[str, str] = {"limit": str(limit or self.page)}
        if label_selector:
            query["labelSelector"] = label_selector
        what = f"{kind.display} list"
        accept = METADATA_LIST if metadata_only else "application/json"
        while True:
            reply = self._call("list", "GET", kind.path(namespace), what, query=query, accept=accept)
            items = reply.get("items") or []
            for item in items:  # list items omit these (metadata lists name another kind); as single GETs say
                item["apiVersion"], item["kind"] = kind.api_version, kind.kind
            meta = reply.get("metadata") or {}
            yield Listing(tuple(items), str(meta.get("resourceVersion") or ""))
            token = meta.get("continue")
            if not token:
                return
            query = {**query, "continue": token}

    def get(self, ref: Ref) -> dict[str, Any]:
        return self._call("get", "GET", ref.path(), str(ref))

    def create(self, body: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
        """Create ``body`` at the version it is written in (``security.istio.io/v1beta1`` is posted there: the API
        server refuses a body whose version differs from the path's)."""
        ref = Ref.of(body)
        kind = ref.api
        written = body.get("apiVersion")
        if isinstance(written, str) and kind.group and written.startswith(f"{kind.group}/"):
            kind = dataclasses.replace(kind, version=written.split("/", 1)[1])
        try:
            return self._call("create", "POST", kind.path(ref.namespace or None), str(ref), body=body,
                              query=_dry(dry_run))
        except Conflict as exc:
            raise AlreadyExists(str(exc)) from exc.__cause__

    def patch(self, ref: Ref, operations: Sequence[Mapping[str, Any]], dry_run: bool = False) -> dict[str, Any]:
        """A JSON patch (RFC 6902). A failed ``test`` comes back as 422; callers that guard with a ``test``
        on resourceVersion tell it from a real validation error by re-reading (:func:`patching.update`)."""
        return self._call("patch", "PATCH", ref.path(), str(ref), body=list(operations), content_type=JSON_PATCH,
                          query=_dry(dry_run))

    def replace_status(self, ref: Ref, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("update", "PUT", ref.path() + "/status", f"{ref} status", body=body)

    def delete(self, ref: Ref, resource_version: str | None = None, dry_run: bool = False) -> None:
        """Delete, only if the object still has ``resource_version`` (409 otherwise). A dry run says so in the
        body: the API server reads a DELETE's options from its body when it has one, and ignores ``?dryRun=All``
        beside it (measured: the object was deleted)."""
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        if resource_version:
            body["preconditions"] = {"resourceVersion": resource_version}
        if dry_run:
            body["dryRun"] = ["All"]
        self._call("delete", "DELETE", ref.path(), str(ref), body=body, query=_dry(dry_run))

    # -- transport -------------------------------------------------------------------------------------------

    def _call(self, verb: str, method: str, path: str, what: str, body: Any = None,
              query: Mapping[str, str] | None = None, content_type: str = "application/json",
              accept: str = "application/json") -> dict[str, Any]:
        # A dry run writes nothing: counted apart, so `writes` stays what was written.
        self.counts[f"{verb} (dry run)" if query and query.get("dryRun") else verb] += 1
        full = path + ("?" + urlencode(query) if query else "")
        headers = {"Accept": accept, "Content-Type": content_type}
        request = self.api.param_serialize(method=method, resource_path=full, header_params=headers, body=body,
                                           auth_settings=["BearerToken"])
        try:
            response = self.api.call_api(*request, _request_timeout=TIMEOUT_SECONDS)
            raw = response.read()  # type: ignore[no-untyped-call]
        except urllib3.exceptions.ReadTimeoutError as exc:
            raise NoAnswer(f"{what}: no answer from the API server at {self.api.configuration.host} in "
                           f"{TIMEOUT_SECONDS} s: {type(exc).__name__}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Unreachable(f"{what}: cannot reach the API server at {self.api.configuration.host}: "
                              f"{type(exc).__name__}") from exc
        status = response.status
        try:
            reply = json.loads(raw) if raw else {}
        except ValueError:
            reply = {"message": raw.decode(errors="replace")[:200]}
        if 200 <= status < 300:
            return reply if isinstance(reply, dict) else {}
        self.failures[status] += 1
        message = reply.get("message") if isinstance(reply, dict) else None
        error = _BY_STATUS.get(status, Unreachable if status >= 500 else ClusterError)
        text = f"{what}: {message or 'HTTP ' + str(status)} ({status})"
        if error is Forbidden:
            resource = what.split(" ", maxsplit=1)[0]
            text += (f"\n  fix: the identity lacks the permission to {verb} {resource}; grant meshgen's role to it: "
                     "meshgen install --print-rbac --group <its group> | kubectl apply -f -")
        raise error(text)


def _dry(dry_run: bool) -> dict[str, str] | None:
    return {"dryRun": "All"} if dry_run else None


"""A case through real istiod: the baseline and the sandboxes in a real kube-apiserver, applied with meshgen's own
reconciler, routed by upstream Envoy sidecars that istiod configures. The "via istio" counterpart of
:mod:`meshgen.testenv.mesh` (which runs the Envoy backend's imitation of istiod).

:meth:`IstioMesh.apply` takes one case to the cluster, in the order a user's cluster would see it:

1. the previous case's sandboxes (``meshgen delete``) and baseline objects are deleted;
2. the baseline objects (workloads, Services, VirtualServices, DestinationRules, policies) are created as written.
   Workloads just sit there: no kubelet or controller runs anything, so no Pod and no EndpointSlice exists;
3. the sandbox specs go through :class:`~meshgen.kube.reconciling.Reconciler` ``apply`` — the code of
   ``meshgen apply`` — which stores them and writes the forks, fork Services, DestinationRules, policy copies,
   VirtualServices and the EnvoyFilter;
4. the workloads are read back: each baseline workload and each fork meshgen created is one workload of the
   plan's local layout. A ``WorkloadEntry`` per workload carries its pod labels *as stored in the cluster* and the
   workload's loopback address (EndpointSlices cannot hold loopback addresses, see
   :mod:`meshgen.testenv.sidecars`), so istiod's registry decides which Service selects which workload;
5. an echo process per workload, a sidecar Envoy per workload and one test client per namespace, each with a
   ``Sidecar`` resource binding its outbound listeners to its own loopback address. A workload reaches the
   services it calls through its own sidecar (its directory points there);
6. the edge: the Gateway ``istio-system/meshgen-edge`` (and one like it for each other gateway the case's
   VirtualServices name) and the router Envoy that serves it (:mod:`meshgen.testenv.gateway`); a case with a Gateway
   API Gateway is refused up front (:class:`~meshgen.errors.CannotRun`, its traffic reported as skipped), as
   istiod serves one on a listener without a bind address;
7. ready means: every proxy connected and every type acked (``/debug/syncz``), no NACK, and every proxy's
   accepted configuration holding exactly the case's Services as clusters (with the endpoints their selectors
   pick), every named route of the VirtualServices exported to it (for the router: of the gateway-bound ones), the
   routing-key filter iff the EnvoyFilter exists, the router listening on its address, and each sidecar with an
   inbound listener listening there.

What the previous case ran that this one runs alike keeps running, as pods do across a ``kubectl apply``: a
proxy with the same pod, labels, address and inbound listener, an echo with the same identity, address and
services, and the objects the test environment made for them (``Sidecar``, ``WorkloadEntry``, the Gateways) are
updated in place, never deleted and created again (a proxy without its ``Sidecar`` would bind istiod's default
listeners). So applying many cases over one group of workloads changes configuration only. Ready then also waits
for a marker Service created last (``meshgen-applied-<n>``): a proxy that holds its cluster holds everything
written before it. :meth:`IstioMesh.clear` stops everything; the case after it starts from nothing.

Workloads are every Deployment, StatefulSet and Argo Rollout (a minimal Rollout CRD is installed for cases that
have one, :mod:`meshgen.testenv.rollouts`) that is not scaled to zero. In a case with an AuthorizationPolicy or
RequestAuthentication, every workload sits behind an inbound listener on its sidecar, where istiod's RBAC and JWT
filters run (:mod:`meshgen.testenv.sidecars`); elsewhere callers reach the workload directly, as before.

A request from traffic.yaml is sent by the test client in the namespace of the host it addresses, through that
client's sidecar, the way a pod next to the service would send it (so configuration exported only to that
namespace, ``exportTo: ["."]``, applies as it would there). A request ``via: edge`` goes to the router instead,
from its ``source`` address if it names one.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from meshgen import traffic
from meshgen.backends import normaliser
from meshgen.backends.localmesh import (
    EDGE_PORT,
    TEST_CLIENT,
    TEST_CLIENT_LABELS,
    Caller,
    LocalMesh,
    Workload,
    addresses,
    all_hosts,
    has_pods,
    inbound_addresses,
    proxy_addresses,
)
from meshgen.backends.localmesh import edge_gateways as edge_gateways_of
from meshgen.baseline import precedence, protocols, stored
from meshgen.baseline.model import (
    AUTHORIZATION_POLICY,
    DESTINATION_RULE,
    GATEWAY,
    KUBERNETES_GATEWAY,
    PEER_AUTHENTICATION,
    REQUEST_AUTHENTICATION,
    ROLLOUT,
    VIRTUAL_SERVICE,
    ObjectKey,
    Resource,
    is_exported_to,
    selects,
)
from meshgen.documents import Document, JsonObject
from meshgen.errors import CannotRun, EnvironmentProblem, Location
from meshgen.kube import discovery, installing, kinds
from meshgen.kube.client import AlreadyExists, Client, NotFound
from meshgen.kube.kinds import Ref
from meshgen.kube.reconciling import NewSpecs, Reconciler
from meshgen.ownership import ANNOTATION_FORK_OF, LABEL_SANDBOX, is_owned
from meshgen.plan import http_routes, serving, specificity
from meshgen.plan.model import Host, Plan
from meshgen.plan.routing import Route
from meshgen.spec.loading import load_specs
from meshgen.spec.models import MeshPolicy
from meshgen.testenv import binaries, controlplane, gateway, networks, processes, rollouts, sidecars, workloads
from meshgen.testenv.istiod import Istiod
from meshgen.testenv.processes import Process, stop_all, wait_until
from meshgen.testenv.sidecars import Inbound, Proxy, SidecarEnvoy

CLIENT = TEST_CLIENT
_CASE_KINDS = (*kinds.RENDERED, *kinds.OPTIONAL, kinds.WORKLOAD_ENTRY, kinds.SIDECAR, kinds.GATEWAY)
READY_TIMEOUT = 60.0
_EDGE = "(edge)"  # the router's key among the expected routes by proxy namespace: no namespace is named so


class IstioMesh:
    """Sidecars, workloads and cluster objects for whatever case was applied last. Use as a context manager."""

    def __init__(self, kubeconfig: Path, istiod: Istiod, workdir: Path | None = None, network: int | None = None,
                 progress: Callable[[str], None] | None = None, inbound: bool | None = None) -> None:
        """``inbound``: put every workload behind an inbound listener on its sidecar (True), never (False), or
        only in cases with a policy that needs one (None: :func:`enforces_inbound`)."""
        self._owns_workdir = workdir is None
        self.inbound = inbound
        self.workdir = workdir if workdir is not None else Path(tempfile.mkdtemp(prefix="meshgen-istio-"))
        self.client = Client.from_kubeconfig(str(kubeconfig))
        self.istiod = istiod
        # Leased machine-wide: two meshes on one machine must never share a network.
        self._lease = networks.lease(network)
        self.network = self._lease.network
        self.progress = progress or (lambda line: None)
        self.istio_version = istiod.version()
        self.proxies: list[SidecarEnvoy] = []
        self.echoes: dict[_EchoKey, Process] = {}
        self.created: list[Ref] = []  # the case's own objects (baseline, namespaces), deleted with it
        self.made: dict[Ref, JsonObject] = {}  # what the test environment made for the processes, kept with them
        self.before: set[Ref] = set()  # what the namespaces held before any case wrote to them
        self.seen: set[str] = set()  # namespaces whose earlier content is in ``before``
        self.applied = 0
        self.namespaces: tuple[str, ...] = ()
        self.policy: MeshPolicy | None = None
        self.hosts: dict[str, Host] = {}
        self.clients: dict[str, Proxy] = {}
        self.router: Proxy | None = None

    def __enter__(self) -> IstioMesh:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close(keep_logs=exc is not None)

    # -- a case ----------------------------------------------------------------------------------------------

    def apply(self, plan: Plan, topology: traffic.Topology | None = None, specs: Sequence[JsonObject] = ()) -> None:
        """Run ``plan``'s case: its baseline, then ``specs`` (the Sandbox/RouteGroup documents it was compiled
        from) through meshgen's reconciler, then workloads and sidecars; returns when every proxy serves it.
        Processes the previous case ran alike keep running (see the module's docstring)."""
        layout = addresses(plan, LocalMesh(network=self.network))
        namespaces = tuple(sorted({w.namespace for w in layout.workloads} | {h.namespace for h in
                                                                              layout.hosts.values()}))
        hosts = all_hosts(plan)
        _check_ports(hosts)
        _check_transport(plan)
        _check_edge(plan)
        self._retire({(str(d.get("kind")), str((d.get("metadata") or {}).get("name"))) for d in specs})
        self.namespaces, self.policy, self.hosts = namespaces, plan.policy, hosts
        # A baseline object may live where no workload or host does (a VirtualService in a tools namespace);
        # sidecars import configuration from every namespace the case writes to, as a default Sidecar would.
        scope = sorted(set(self.namespaces) | {r.namespace for r in plan.baseline.resources})
        edge_gateways = edge_gateways_of(plan.baseline)
        for namespace in sorted({*scope, *(g.namespace for g in edge_gateways), MARKER_NAMESPACE}):
            self._create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}, exist_ok=True)
        new = set(self.namespaces) - self.seen
        self.before |= self._objects(new)
        self.seen |= new
        if plan.baseline.of_kind(ROLLOUT):
            rollouts.install(self.client)
        self.progress(f"creating the baseline in {', '.join(self.namespaces)}")
        for resource, later in _creation_order(plan.baseline.resources):
            if resource.key.kind == GATEWAY:
                continue  # the router stands for it: created below, on the router's address
            if later:
                time.sleep(1.0 - time.time() % 1.0 + 0.05)
            # A baseline exported with `kubectl get -o yaml` carries uid, resourceVersion, status, clusterIP...:
            # recreated without them, as a user would apply it to another cluster.
            body = stored.for_create(resource.body)
            self._create({**body, "metadata": {**body["metadata"], "namespace": resource.namespace}})
        installing.ensure_policy(self.client, plan.policy)  # the case's policy, stored as a platform would
        documents = [Document(Location("specs", i), body) for i, body in enumerate(specs)]
        report = self._reconciler().apply(NewSpecs(load_specs(documents), tuple(specs)))
        self.progress(f"meshgen apply: {len(report.changes)} change(s)")
        names = [f"{w.namespace}/{w.identity}" for w in layout.workloads]
        edge = f"{gateway.NAMESPACE}/{gateway.ROUTER_POD}"
        mesh = LocalMesh(network=self.network)
        assigned = proxy_addresses([*names, *(f"{ns}/{CLIENT}" for ns in self.namespaces), edge], mesh)
        enforcing = self.inbound if self.inbound is not None else enforces_inbound(plan)
        listeners = inbound_addresses(names, mesh) if enforcing else {}
        entries, inbound, made = self._workload_entries(layout.workloads, listeners)
        self.clients = {ns: Proxy(CLIENT, ns, dict(TEST_CLIENT_LABELS), assigned[f"{ns}/{CLIENT}"])
                        for ns in self.namespaces}
        proxies = [Proxy(_pod(w.identity), w.namespace, entries[w.identity], assigned[_key(w)],
                         inbound=inbound.get(_key(w))) for w in layout.workloads]
        made += [proxy.sidecar([*scope, MARKER_NAMESPACE]) for proxy in (*proxies, *self.clients.values())]
        if inbound:
            made.append(sidecars.plaintext_inbound(gateway.NAMESPACE))
        self.router = gateway.router(assigned[edge])
        made += [gateway.gateway(key.name, key.namespace, bind=self.router.address) for key in edge_gateways]
        self.applied += 1
        made.append(_marker(self.applied))
        self._start(plan, topology or traffic.Topology(), layout.workloads, proxies, made)

    def send(self, request: traffic.Request) -> traffic.Response:
        """Send ``request`` through the sidecar of the test client in the host's namespace (its outbound listener
        for the host's port), or, ``via: edge``, to the edge gateway's router (which routes any Host)."""
        if request.via == "edge" and self.router is not None:
            return workloads.send(self.router.address, request.port or EDGE_PORT, request)
        host = self.hosts.get(request.host)
        if host is None:
            raise workloads.unknown_host(request, list(self.hosts))
        return workloads.send(self.clients[host.namespace].address, request.port or host.ports[0].port, request)

    def clear(self) -> None:
        """Stop the case's processes, ``meshgen delete`` every stored spec, delete what the case and the test
        environment created, and check that its namespaces hold nothing more than before it (namespaces stay:
        without a namespace controller a deleted namespace would never finish terminating)."""
        stop_all(self.processes())
        self.proxies, self.echoes = [], {}
        self._retire()
        for ref in reversed(self.made):
            with contextlib.suppress(NotFound):
                self.client.delete(ref)
        self.made = {}
        self._check_left(set())
        self.namespaces, self.policy, self.hosts, self.clients, self.router = (), None, {}, {}, None

    def _retire(self, again: set[tuple[str, str]] = set()) -> None:  # noqa: B006 - never mutated
        """Take the previous case out of the cluster (``meshgen delete`` of its specs, then its baseline), leaving
        the processes and what the test environment made for them: the next case keeps what it shares
        (:meth:`_start`). Its namespaces must then hold only that. Specs the next case applies ``again`` (kind and
        name) stay stored, as a CI job re-applying its sandbox leaves it: the next ``meshgen apply`` recomputes
        them over the next baseline."""
        stayed = False
        if self.policy is not None:
            stored = discovery.list_specs(self.client)
            reconciler = self._reconciler()
            for kind, items in (("RouteGroup", stored.route_groups), ("Sandbox", stored.sandboxes)):
                names = [str(o["metadata"]["name"]) for o in items]
                stale = [n for n in names if (kind, n) not in again]
                stayed = stayed or len(stale) < len(names)
                if stale:
                    reconciler.delete(kind, stale)
        for ref in reversed(self.created):
            if ref.kind != "Namespace":
                with contextlib.suppress(NotFound):
                    self.client.delete(ref)
        self.created = []
        if not stayed:
            self._check_left(set(self.made))

    def _check_left(self, kept: set[Ref]) -> None:
        if not self.namespaces:
            return
        left = sorted(self._objects(self.namespaces) - self.before - kept)
        owned = [Ref.of(o) for kind in kinds.RENDERED for o in self.client.list(kind).items if is_owned(o)]
        if left or owned:
            raise EnvironmentProblem(f"clearing the case left objects behind: {', '.join(map(str, left + owned))}")

    def check_no_nacks(self) -> None:
        """Raise if any proxy ever rejected configuration: istiod's view (``lastError``) and Envoy's own counters."""
        self.istiod.raise_nacks()
        for proxy in self.proxies:
            rejected = {k: v for k, v in proxy.rejections().items() if v != "0"}
            if rejected:
                assert proxy.process is not None
                raise EnvironmentProblem(f"{proxy.name} rejected configuration ({', '.join(sorted(rejected))})\n"
                                         f"{proxy.process.describe()}")

    def processes(self) -> list[Process]:
        return [*(p.process for p in self.proxies if p.process is not None), *self.echoes.values()]

    def close(self, keep_logs: bool = False) -> None:
        """Clear the case and remove the working directory if this mesh made it, unless ``keep_logs``."""
        try:
            self.clear()
        finally:
            stop_all(self.processes())
            self._lease.release()
            if self._owns_workdir and not keep_logs:
                shutil.rmtree(self.workdir, ignore_errors=True)

    # -- steps -----------------------------------------------------------------------------------------------

    def _reconciler(self) -> Reconciler:
        assert self.policy is not None
        return Reconciler(self.client, self.policy, self.namespaces)

    def _create(self, body: JsonObject, exist_ok: bool = False) -> None:
        try:
            self.client.create(body)
        except AlreadyExists:
            if exist_ok:
                return
            raise
        self.created.append(Ref.of(body))

    def _objects(self, namespaces: Iterable[str]) -> set[Ref]:
        return {Ref.of(o) for kind in _CASE_KINDS for ns in namespaces for o in self._list(kind, ns)}

    def _sync(self, made: Sequence[JsonObject]) -> None:
        """Make the cluster hold exactly ``made`` of what the test environment makes: stale objects deleted,
        changed ones updated in place, new ones created, in order (the marker last)."""
        wanted = {Ref.of(body): body for body in made}
        for ref in [r for r in self.made if r not in wanted]:
            with contextlib.suppress(NotFound):
                self.client.delete(ref)
            del self.made[ref]
        for ref, body in wanted.items():
            if ref not in self.made:
                self.client.create(body)
            elif self.made[ref] != body:
                self.client.patch(ref, [{"op": "replace", "path": "/spec", "value": body["spec"]}])
            self.made[ref] = body

    def _workload_entries(self, layout: Sequence[Workload], listeners: Mapping[str, str],
                          ) -> tuple[dict[str, dict[str, str]], dict[str, Inbound], list[JsonObject]]:
        """A WorkloadEntry per workload in the cluster that runs pods (baseline Deployments, StatefulSets and
        Rollouts, and forks meshgen created), with the pod labels stored there; returns those labels by workload
        identity, the inbound listeners of the workloads that have one, and the entries. They must be exactly the plan's
        workloads: a missing or extra fork means ``meshgen apply`` did not do what the plan says.

        A workload without an inbound listener is at its own address, every Service port name on its echo port.
        One with an inbound listener (at its address in ``listeners``, by ``namespace/identity``) is at that
        address, each port of a Service selecting it on the Service's target port, as a pod is: a policy naming a
        port (AuthorizationPolicy ``to.operation.ports``) means the target port."""
        labels: dict[str, dict[str, str]] = {}
        services: dict[str, list[JsonObject]] = {}
        for namespace in self.namespaces:
            labels.update(self._stored_workloads(namespace))
            services[namespace] = list(self.client.list(kinds.SERVICE, namespace).items)
            for service in services[namespace]:
                if any(not port.get("name") for port in service["spec"].get("ports") or []):
                    raise EnvironmentProblem(f"Service {namespace}/{service['metadata']['name']}: the istio test "
                                             "environment needs every Service port named (WorkloadEntry ports "
                                             "are keyed by port name)")
        expected = {w.identity for w in layout}
        if set(labels) != expected:
            raise EnvironmentProblem(f"the cluster holds the workloads {sorted(labels)} after meshgen apply; the "
                                     f"plan has {sorted(expected)}")
        inbound: dict[str, Inbound] = {}
        made: list[JsonObject] = []
        for workload in layout:
            ports = services[workload.namespace]
            names = {str(p["name"]): workload.port for s in ports for p in s["spec"].get("ports") or []}
            address = listeners.get(_key(workload))
            if address is not None:
                targets = {str(p["name"]): _target_port(p) for s in ports
                           if selects(s["spec"].get("selector") or {}, labels[workload.identity])
                           for p in s["spec"].get("ports") or []}
                names.update(targets)
                inbound[_key(workload)] = Inbound(address, workload.address, workload.port,
                                                  tuple(sorted(set(targets.values()))))
            made.append(sidecars.workload_entry(_pod(workload.identity), workload.namespace,
                                                labels[workload.identity], address or workload.address, names))
        return labels, inbound, made

    def _stored_workloads(self, namespace: str) -> dict[str, dict[str, str]]:
        """The pod labels of every workload stored in ``namespace`` that runs pods, by workload identity (a
        Rollout with ``workloadRef`` has the named Deployment's)."""
        found = {kind: self._list(kind, namespace) for kind in (kinds.DEPLOYMENT, kinds.STATEFUL_SET, kinds.ROLLOUT)}
        deployments = {d["metadata"]["name"]: d for d in found[kinds.DEPLOYMENT]}
        labels: dict[str, dict[str, str]] = {}
        for workload in (w for items in found.values() for w in items if has_pods(w)):
            ref = workload["spec"].get("workloadRef") if workload["kind"] == kinds.ROLLOUT.kind else None
            template = (deployments.get(ref["name"], {}).get("spec") or {}).get("template") if ref else None
            template = template or workload["spec"].get("template") or {}
            labels[_identity(workload)] = dict((template.get("metadata") or {}).get("labels") or {})
        return labels

    def _list(self, kind: kinds.Kind, namespace: str) -> tuple[JsonObject, ...]:
        """Objects of ``kind`` in ``namespace``; none when the cluster does not serve the kind (an optional CRD)."""
        try:
            return self.client.list(kind, namespace).items
        except NotFound:
            if kind in kinds.OPTIONAL:
                return ()
            raise

    def _start(self, plan: Plan, topology: traffic.Topology, layout: Sequence[Workload],
               proxies: Sequence[Proxy], made: Sequence[JsonObject]) -> None:
        """Keep the processes the case runs alike, stop the others (before their Sidecar goes), make the test
        environment's objects, start what is new, and wait until every proxy serves the case."""
        logs = self.workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        wanted = [*proxies, *self.clients.values(), *([self.router] if self.router else [])]
        kept = [p for p in self.proxies if p.proxy in wanted and p.process is not None and p.process.running()]
        stale = [p for p in self.proxies if p not in kept]
        keys = {_echo(w): w for w in layout}
        stop_all([*(p.process for p in stale if p.process is not None),
                  *(e for k, e in self.echoes.items() if k not in keys or not e.running())])
        self.echoes = {k: e for k, e in self.echoes.items() if k in keys and e.running()}
        self._sync(made)
        have = [p.proxy for p in kept]
        fresh = [SidecarEnvoy(self.workdir / "proxies" / p.id, p, self.istiod.xds_address, self.istio_version)
                 for p in wanted if p not in have]
        self.progress(f"starting {len(fresh)} proxies and {len(keys) - len(self.echoes)} workload(s), keeping "
                      f"{len(kept)} and {len(self.echoes)}")
        self.proxies = [*kept, *fresh]
        for proxy in fresh:
            proxy.launch()
        started: list[tuple[Workload, Path]] = []
        for workload, sidecar in zip(layout, proxies, strict=True):
            directory = logs / f"directory-{sidecar.id}.json"
            listeners = {fqdn: (sidecar.address, host.ports[0].port) for fqdn, host in self.hosts.items()}
            workloads.write_directory(directory, listeners, plan, topology)  # a running echo reads it anew
            if _echo(workload) not in self.echoes:
                started.append((workload, directory))
        for (workload, _), process in zip(started, workloads.start(started, logs), strict=True):
            self.echoes[_echo(workload)] = process
        for proxy in self.proxies:
            proxy.wait_live(READY_TIMEOUT)
        self.istiod.wait_synced([p.proxy.id for p in self.proxies], READY_TIMEOUT)
        self._wait_configured()
        self.check_no_nacks()

    def _wait_configured(self) -> None:
        """Wait until every proxy holds this case's configuration (and nothing left from an earlier one)."""
        clusters, routes, filtered = self._expected()
        gamma = self._gamma_routes()
        suffixes = tuple(f".{ns}.svc.{self._domain}" for ns in self.namespaces)
        missing: dict[str, str] = {}

        marker = f"outbound|{MARKER_PORT}||meshgen-applied-{self.applied}.{MARKER_NAMESPACE}.svc.{self._domain}"

        def configured(proxy: SidecarEnvoy) -> bool:
            every = proxy.endpoints()
            have = {n: e for n, e in every.items()
                    if n.startswith("outbound|") and n.split("|")[2] == "" and n.endswith(suffixes)}
            wrong = {n for n in set(have) | set(clusters) if have.get(n) != clusters.get(n)}
            router = proxy.proxy.kind == "router"
            caller = Caller(proxy.proxy.namespace, proxy.proxy.labels, proxy.proxy.address)
            wanted = {name for table in routes.get(_EDGE if router else proxy.proxy.namespace, [])
                      for name in _held(table, caller)} | (set() if router else gamma)
            lost = wanted - proxy.route_names()
            has_filter = normaliser.FILTER_NAME in proxy.listener_text()
            inbound = proxy.proxy.inbound
            listening = proxy.listening()
            deaf = ((router and (proxy.proxy.address, EDGE_PORT) not in listening)
                    or (inbound is not None and any((inbound.address, p) not in listening for p in inbound.listen)))
            late = marker not in every  # not yet sent what this apply wrote
            missing[proxy.name] = (f"clusters/endpoints differing: {sorted(wrong)}; routes missing: {sorted(lost)}; "
                                   f"routing-key filter {'present' if has_filter else 'absent'}, expected "
                                   f"{'present' if filtered else 'absent'}{'; not listening' if deaf else ''}"
                                   f"{'; no marker cluster yet' if late else ''}")
            return not wrong and not lost and has_filter == filtered and not deaf and not late

        for proxy in self.proxies:
            assert proxy.process is not None
            try:
                wait_until(functools.partial(configured, proxy), f"{proxy.name} to hold the case's configuration",
                           [proxy.process], READY_TIMEOUT)
            except EnvironmentProblem as exc:
                raise EnvironmentProblem(f"{exc}\n  {missing.get(proxy.name, '')}") from None

    @property
    def _domain(self) -> str:
        return self.policy.spec.cluster_domain if self.policy is not None else "cluster.local"

    def _gamma_routes(self) -> set[str]:
        """The names of the routes istiod gives every sidecar from the HTTPRoutes and GRPCRoutes stored in the
        case's namespaces that attach to a Service there (GAMMA producer routes): per Service, in the order istiod
        sorts them (:mod:`meshgen.plan.specificity`), up to the first catch-all (istiod drops what follows)."""
        by_host: dict[str, list[tuple[Route, int]]] = {}
        for kind in (kinds.HTTP_ROUTE, kinds.GRPC_ROUTE):
            for ns in self.namespaces:
                for body in self._list(kind, ns):
                    resource = Resource(ObjectKey(kind.kind, ns, body["metadata"]["name"]), body)
                    for host in http_routes.parents(resource, self._domain).hosts:
                        by_host.setdefault(host, []).extend((r, 0) for r in http_routes.routes_of(resource,
                                                                                                   self._domain))
        names: set[str] = set()
        for entries in by_host.values():
            for route in specificity.ordered(entries):
                names.add(str(route.name))
                if serving.is_catch_all(route):
                    break
        return names

    def _expected(self) -> tuple[dict[str, set[str]], dict[str, list[list[JsonObject]]], bool]:
        """From the cluster as it is now: each Service port's cluster with the addresses of the WorkloadEntries
        its selector picks; by proxy namespace, the http routes of each mesh VirtualService exported there that no
        other shadows (:func:`~meshgen.baseline.precedence.shadowed_by`; which of them a proxy holds: :func:`_held`)
        (and
        under ``_EDGE``, of the gateway-bound ones the router sees); whether the routing-key EnvoyFilter exists.
        (Subset clusters are left out: which DestinationRule a proxy gets depends on istiod's merging of rules for
        one host, exportTo and workloadSelector.)"""
        clusters: dict[str, set[str]] = {}
        routes: dict[str, list[list[JsonObject]]] = {}  # proxy namespace -> each VirtualService's http routes
        existing = {(str(g["metadata"]["namespace"]), str(g["metadata"]["name"]))
                    for g in self.client.list(kinds.GATEWAY).items}
        virtual_services: list[tuple[Resource, list[JsonObject]]] = []
        for ns in self.namespaces:
            entries = self.client.list(kinds.WORKLOAD_ENTRY, ns).items
            for service in self.client.list(kinds.SERVICE, ns).items:
                fqdn = f"{service['metadata']['name']}.{ns}.svc.{self._domain}"
                chosen = {str(e["spec"]["address"]) for e in entries
                          if selects(service["spec"].get("selector") or {}, e["spec"].get("labels") or {})}
                for port in service["spec"].get("ports") or []:
                    if protocols.port_protocol(int(port["port"]), port.get("name"), port.get("protocol"),
                                               port.get("appProtocol")) is not protocols.Protocol.UDP:
                        clusters[f"outbound|{port['port']}||{fqdn}"] = chosen  # istiod has no UDP clusters
            for vs in self.client.list(kinds.VIRTUAL_SERVICE, ns).items:
                if not vs["spec"].get("hosts"):
                    continue  # a delegate: its routes are merged into its roots', under other names
                names = [r for r in vs["spec"].get("http") or [] if "delegate" not in r]
                if gateway.is_edge_bound(vs, existing) and is_exported_to(vs, gateway.NAMESPACE):
                    routes.setdefault(_EDGE, []).append(names)
                virtual_services.append((Resource(ObjectKey(VIRTUAL_SERVICE, ns, vs["metadata"]["name"]), vs), names))
        for target in self.namespaces:
            # A sidecar holds the routes of the mesh VirtualServices it sees, except those another one shadows.
            ordered = precedence.sidecar_order([vs for vs, _ in virtual_services], target)
            names_of = dict(virtual_services)
            for seen in ordered:
                if precedence.shadowed_by(seen, ordered, self._domain) is None:
                    routes.setdefault(target, []).append(names_of[seen])
        assert self.policy is not None
        filtered = bool(self.client.list(kinds.ENVOY_FILTER, self.policy.spec.filter_namespace).items)
        return clusters, routes, filtered


def _held(routes: Sequence[JsonObject], caller: Caller) -> set[str]:
    """The names of the routes of one VirtualService that istiod gives ``caller``'s proxy
    (``BuildHTTPRoutesForVirtualService``): those with a match block that applies to it (sourceLabels,
    sourceNamespace), up to and including the first that is a catch-all for it; istiod drops everything after."""
    held: set[str] = set()
    for route in routes:
        blocks = [b for b in route.get("match") or [{}] if _applies_to(b, caller)]
        if blocks and route.get("name"):
            held.add(str(route["name"]))
        if any(_catch_all(b) for b in blocks):
            break
    return held


def _applies_to(block: Mapping[str, Any], caller: Caller) -> bool:
    """Whether a match block applies to the caller's proxy (istiod's ``sourceMatchHTTP``)."""
    labels = block.get("sourceLabels") or {}
    return all(caller.labels.get(k) == v for k, v in labels.items()) and block.get("sourceNamespace") in (
        None, "", caller.namespace)


def _catch_all(block: Mapping[str, Any]) -> bool:
    """istiod's ``IsCatchAllRoute`` for a match block: any path (prefix ``/`` or none), nothing else to match."""
    uri = block.get("uri") or {"prefix": "/"}
    path = uri.get("prefix") == "/" or uri.get("regex") in ("*", ".*")
    return path and not any(block.get(k) for k in ("headers", "withoutHeaders", "queryParams", "method", "scheme",
                                                     "authority"))


def _check_ports(hosts: Mapping[str, Host]) -> None:
    """Sidecars bind Service ports as they are; one below 1024 needs the right to bind it."""
    for host in hosts.values():
        for port in host.ports:
            if port.port < 1024 and processes.can_bind(port.port) is False:
                raise EnvironmentProblem(
                    f"Service {host.namespace}/{host.name} has port {port.port}, and sidecars bind Service ports "
                    f"as they are: run as root, or lower net.ipv4.ip_unprivileged_port_start to {port.port}")


MARKER_NAMESPACE = "meshgen-testenv"  # the marker's: no case writes there, so meshgen never reads it as baseline
MARKER_PORT = 15999  # the marker Service's port (istiod's own ports are 150xx; no sample uses it)


def _marker(number: int) -> JsonObject:
    """A Service with no endpoints, new for each apply and created last: a proxy that holds its cluster was sent
    a configuration made after everything the apply wrote (istiod pushes whole snapshots, in order)."""
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"meshgen-applied-{number}",
                                                               "namespace": MARKER_NAMESPACE},
            "spec": {"ports": [{"name": "http-marker", "port": MARKER_PORT}]}}


def _tls_modes(policy: Mapping[str, Any], path: str) -> Iterator[tuple[str, str]]:
    """Every TLS mode a trafficPolicy sets other than DISABLE, with its field path."""
    tls = policy.get("tls")
    if isinstance(tls, dict) and str(tls.get("mode", "DISABLE")) != "DISABLE":
        yield f"{path}.tls.mode", str(tls.get("mode"))
    for i, entry in enumerate(policy.get("portLevelSettings") or []):
        if isinstance(entry, dict):
            yield from _tls_modes(entry, f"{path}.portLevelSettings[{i}]")


def _check_transport(plan: Plan) -> None:
    """Refuse, up front and saying why, a DestinationRule that originates TLS: this environment cannot run it."""
    for rule in plan.baseline.of_kind(DESTINATION_RULE):
        found = list(_tls_modes(rule.spec.get("trafficPolicy") or {}, "trafficPolicy"))
        for i, subset in enumerate(rule.spec.get("subsets") or []):
            found += _tls_modes(subset.get("trafficPolicy") or {}, f"subsets[{i}].trafficPolicy")
        if found:
            field, mode = found[0]
            raise EnvironmentProblem(
                f"DestinationRule {rule.namespace}/{rule.name} sets {field} {mode}, which the istio test environment "
                "cannot run: for ISTIO_MUTUAL istiod (auto mTLS off) gives the cluster a TLS transport socket whose "
                "certificates come over SDS from sds-grpc, the istio-agent's socket, which upstream Envoy does not "
                "have, so the cluster never warms and the sidecar is never ready; SIMPLE and MUTUAL originate TLS "
                "to the workload itself, and the echo workloads speak plaintext. Run this case --via envoy (it "
                "accepts tls as transport-only, with a warning)")


def _check_edge(plan: Plan) -> None:
    """Refuse, up front and saying why, a Gateway API Gateway: this environment's edge cannot serve one."""
    for found in plan.baseline.of_kind(KUBERNETES_GATEWAY):
        raise CannotRun(
            f"Gateway {found.namespace}/{found.name} (gateway.networking.k8s.io) is one the istio test environment "
            "cannot serve: istiod gives a Gateway API Gateway's listeners to the proxies behind the Service its "
            "deployment controller creates for it (or, deployed by hand, the one its spec.addresses names), with no "
            "bind address, so they would listen on 0.0.0.0 beside every other loopback listener of the machine; "
            "the router here serves Istio Gateways bound to its own address only. The Envoy backend's mesh routes "
            "it (--via envoy)")


def _creation_order(resources: Sequence[Resource]) -> list[tuple[Resource, bool]]:
    """The baseline in the order to create it, each with whether it must be created in a later second than the
    one before: VirtualServices come last, oldest first as written (then by name and namespace, istiod's order for
    equal timestamps), so the creation-time order istiod reads is the one the manifests state (the apiserver sets
    whole-second timestamps, and ignores written ones)."""
    others = [(r, False) for r in resources if r.key.kind != VIRTUAL_SERVICE]
    services = sorted((r for r in resources if r.key.kind == VIRTUAL_SERVICE),
                      key=lambda r: (precedence.created(r), r.name, r.namespace))
    later = [i > 0 and precedence.created(r) > precedence.created(services[i - 1]) for i, r in enumerate(services)]
    return [*others, *zip(services, later, strict=True)]


def _identity(deployment: JsonObject) -> str:
    """A Deployment as a workload identity: its name, or ``<forked workload>@<sandbox>`` for a fork."""
    meta = deployment["metadata"]
    sandbox = (meta.get("labels") or {}).get(LABEL_SANDBOX)
    if sandbox is None:
        return str(meta["name"])
    forked = str((meta.get("annotations") or {}).get(ANNOTATION_FORK_OF, "/?")).split("/", 1)[1]
    return f"{forked}@{sandbox}"


def enforces_inbound(plan: Plan) -> bool:
    """Whether a case puts its workloads behind inbound listeners: it has a policy only an inbound listener
    enforces (AuthorizationPolicy, RequestAuthentication), and no PeerAuthentication asking for mTLS, which
    cannot run here (no CA: an inbound mTLS filter chain would wait for certificates forever)."""
    wants_mtls = any((p.spec.get("mtls") or {}).get("mode") not in (None, "DISABLE") or p.spec.get("portLevelMtls")
                     for p in plan.baseline.of_kind(PEER_AUTHENTICATION))
    return not wants_mtls and any(plan.baseline.of_kind(kind) for kind in (AUTHORIZATION_POLICY,
                                                                            REQUEST_AUTHENTICATION))


def _target_port(port: JsonObject) -> int:
    """A Service port's target port as a number (a named target port is taken to be the Service port)."""
    target = port.get("targetPort")
    return int(target) if isinstance(target, int) or (isinstance(target, str) and target.isdigit()) else int(
        port["port"])


_EchoKey = tuple[str, str, str, int, tuple[str, ...]]


def _echo(workload: Workload) -> _EchoKey:
    """What makes a running echo the same workload: namespace, identity, address, port and the hosts it serves."""
    return (workload.namespace, workload.identity, workload.address, workload.port, tuple(workload.services))


def _key(workload: Workload) -> str:
    return f"{workload.namespace}/{workload.identity}"


def _pod(identity: str) -> str:
    """A DNS-label name for a workload identity (``reviews-v1@pr-1`` -> ``reviews-v1--pr-1``)."""
    return identity.replace("@", "--")


@contextlib.contextmanager
def running(workdir: Path | None = None, progress: Callable[[str], None] | None = None,
            istiod_env: Mapping[str, str] | None = None) -> Iterator[IstioMesh]:
    """A whole local Istio for one command: etcd + kube-apiserver with Istio's and meshgen's CRDs, istiod, and an
    :class:`IstioMesh` on them. Everything is stopped on the way out; the directory (logs) is removed unless
    something failed."""
    say = progress or (lambda line: None)
    directory = workdir if workdir is not None else Path(tempfile.mkdtemp(prefix="meshgen-istio-"))
    plane = controlplane.ControlPlane(directory / "controlplane", binaries.ensure())
    istiod = Istiod(directory / "istiod", binaries.ensure_istio().pilot_discovery, plane.kubeconfig,
                    dict(istiod_env or {}))
    failed = True
    try:
        say(f"starting etcd, kube-apiserver and istiod (logs in {directory})")
        plane.start()
        installing.install(Client.from_kubeconfig(str(plane.kubeconfig)), None)
        istiod.start()
        with IstioMesh(plane.kubeconfig, istiod, directory / "mesh", progress=say) as mesh:
            yield mesh
        failed = False
    finally:
        istiod.stop()
        plane.stop()
        if workdir is None and not failed:
            shutil.rmtree(directory, ignore_errors=True)


def refusal(plan: Plan) -> str | None:
    """Why this environment cannot run ``plan`` (what :meth:`IstioMesh.apply` would refuse up front), or None."""
    try:
        _check_transport(plan)
        _check_edge(plan)
    except EnvironmentProblem as exc:
        return str(exc)
    return None

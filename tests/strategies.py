"""Hypothesis strategies: random baselines (services, workloads, user VirtualServices) and sandbox sets over them."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from meshgen.documents import Document
from meshgen.errors import Location

NAMESPACES = ("alpha", "beta")
APPS = ("web", "cart", "pay", "mail", "auth")


@st.composite
def baselines(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Services (one per app and namespace), one or two Deployments per Service, and some user VSs."""
    objects: list[dict[str, Any]] = []
    hosts: list[tuple[str, str]] = []
    for ns in NAMESPACES:
        for app in draw(st.lists(st.sampled_from(APPS), min_size=1, max_size=len(APPS), unique=True)):
            hosts.append((ns, app))
            objects.append({
                "apiVersion": "v1", "kind": "Service", "metadata": {"name": app, "namespace": ns},
                "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": 8080}]},
            })
            for version in range(draw(st.integers(1, 2))):
                labels = {"app": app, "version": f"v{version + 1}"}
                objects.append({
                    "apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": f"{app}-v{version + 1}", "namespace": ns},
                    "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                             "template": {"metadata": {"labels": labels},
                                          "spec": {"containers": [{"name": app, "image": f"img/{app}:1"}]}}},
                })
    for i, (ns, app) in enumerate(draw(st.lists(st.sampled_from(hosts), max_size=4, unique=True))):
        objects.append(draw(virtual_services(f"vs-{i}", ns, app, hosts)))
    return objects


@st.composite
def virtual_services(draw: st.DrawFn, name: str, ns: str, app: str, hosts: list[tuple[str, str]]) -> dict[str, Any]:
    """A user VirtualService for ``app`` with random routes (some to other hosts), maybe gateway-bound."""
    def host_ref(target: tuple[str, str]) -> str:
        tns, tapp = target
        return draw(st.sampled_from([f"{tapp}.{tns}", f"{tapp}.{tns}.svc.cluster.local"]
                                    + ([tapp] if tns == ns else [])))

    routes = []
    for r in range(draw(st.integers(1, 4))):
        route: dict[str, Any] = {"name": f"r{r}"}
        if draw(st.booleans()):
            route["match"] = [{"uri": {"prefix": f"/p{r}/{m}"}} if m % 2 == 0 else
                              {"headers": {"x-user": {"exact": f"u{m}"}}}
                              for m in range(draw(st.integers(1, 2)))]
        targets = draw(st.lists(st.sampled_from(hosts), min_size=1, max_size=2))
        if len(targets) == 1:
            route["route"] = [{"destination": {"host": host_ref(targets[0])}}]
        else:
            route["route"] = [{"destination": {"host": host_ref(targets[0])}, "weight": 60},
                              {"destination": {"host": host_ref(targets[1])}, "weight": 40}]
        if draw(st.booleans()):
            route["retries"] = {"attempts": draw(st.integers(1, 3)), "retryOn": "5xx"}
        if draw(st.booleans()):
            route["timeout"] = f"{draw(st.integers(1, 9))}s"
        if draw(st.booleans()):
            route["rewrite"] = {"uri": "/"}
        routes.append(route)
    spec: dict[str, Any] = {"hosts": [host_ref((ns, app))], "http": routes}
    if draw(st.integers(0, 5)) == 0:
        spec["gateways"] = ["edge-gateway"]
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


@st.composite
def sandbox_sets(draw: st.DrawFn, baseline: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sandboxes forking random baseline Deployments, and maybe a route group over some of them."""
    workloads = [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in baseline if o["kind"] == "Deployment"]
    specs = []
    for i in range(draw(st.integers(1, 5))):
        forks = draw(st.lists(st.sampled_from(workloads), min_size=1, max_size=2, unique=True))
        specs.append({
            "apiVersion": "meshgen.dev/v1alpha1", "kind": "Sandbox",
            "metadata": {"name": f"sb-{i}", "labels": {"team": draw(st.sampled_from(["red", "blue"]))}},
            "spec": {"forks": [{"forkOf": {"namespace": ns, "name": name}} for ns, name in forks]},
        })
    if draw(st.booleans()):
        specs.append({"apiVersion": "meshgen.dev/v1alpha1", "kind": "RouteGroup", "metadata": {"name": "grp"},
                      "spec": {"match": {"all": [{"label": {"key": "team", "value": "red"}}]}}})
    return specs


def as_documents(objects: list[dict[str, Any]], source: str) -> list[Document]:
    """Wrap bodies as parsed documents."""
    return [Document(Location(source, i), o) for i, o in enumerate(objects)]

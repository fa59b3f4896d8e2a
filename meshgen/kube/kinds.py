"""The kinds meshgen reads and writes, and where each lives in the Kubernetes API.

A fixed table instead of API discovery: meshgen touches a handful of kinds, and discovery would cost requests on
every run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Kind:
    """One API resource: group/version, plural and scope."""

    kind: str
    group: str
    version: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def display(self) -> str:
        """kubectl's ``resource.group`` spelling: ``deployment.apps``, ``service``."""
        singular = self.kind.lower()
        return f"{singular}.{self.group}" if self.group else singular

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        """The REST path of the collection (in ``namespace``, or cluster-wide) or of one object."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return f"{base}/{name}" if name else base


DEPLOYMENT = Kind("Deployment", "apps", "v1", "deployments")
STATEFUL_SET = Kind("StatefulSet", "apps", "v1", "statefulsets")
# Read, never written (a Rollout's fork is a Deployment); its CRD may be absent from a cluster.
ROLLOUT = Kind("Rollout", "argoproj.io", "v1alpha1", "rollouts")
AUTHORIZATION_POLICY = Kind("AuthorizationPolicy", "security.istio.io", "v1", "authorizationpolicies")
PEER_AUTHENTICATION = Kind("PeerAuthentication", "security.istio.io", "v1", "peerauthentications")
REQUEST_AUTHENTICATION = Kind("RequestAuthentication", "security.istio.io", "v1", "requestauthentications")
NETWORK_POLICY = Kind("NetworkPolicy", "networking.k8s.io", "v1", "networkpolicies")
SERVICE = Kind("Service", "", "v1", "services")
NAMESPACE = Kind("Namespace", "", "v1", "namespaces", namespaced=False)
SECRET = Kind("Secret", "", "v1", "secrets")  # only the edge token's, read by name, never listed
VIRTUAL_SERVICE = Kind("VirtualService", "networking.istio.io", "v1", "virtualservices")
DESTINATION_RULE = Kind("DestinationRule", "networking.istio.io", "v1", "destinationrules")
ENVOY_FILTER = Kind("EnvoyFilter", "networking.istio.io", "v1alpha3", "envoyfilters")
SANDBOX = Kind("Sandbox", "meshgen.dev", "v1alpha1", "sandboxes", namespaced=False)
ROUTE_GROUP = Kind("RouteGroup", "meshgen.dev", "v1alpha1", "routegroups", namespaced=False)
# The platform's policy: written by `meshgen install --policy` only, read by every cluster command.
MESH_POLICY = Kind("MeshPolicy", "meshgen.dev", "v1alpha1", "meshpolicies", namespaced=False)
# The guardrails as the API server enforces them (meshgen.kube.admission), written by `meshgen install`.
ADMISSION_POLICY = Kind("ValidatingAdmissionPolicy", "admissionregistration.k8s.io", "v1",
                        "validatingadmissionpolicies", namespaced=False)
ADMISSION_BINDING = Kind("ValidatingAdmissionPolicyBinding", "admissionregistration.k8s.io", "v1",
                         "validatingadmissionpolicybindings", namespaced=False)
# Not written by meshgen; the istiod test environment (meshgen.testenv.istiomesh) creates them for its proxies.
WORKLOAD_ENTRY = Kind("WorkloadEntry", "networking.istio.io", "v1", "workloadentries")
SIDECAR = Kind("Sidecar", "networking.istio.io", "v1", "sidecars")
GATEWAY = Kind("Gateway", "networking.istio.io", "v1", "gateways")  # the test environment's edge
CRD = Kind("CustomResourceDefinition", "apiextensions.k8s.io", "v1", "customresourcedefinitions", namespaced=False)

POLICIES = (AUTHORIZATION_POLICY, PEER_AUTHENTICATION, REQUEST_AUTHENTICATION, NETWORK_POLICY)
# What the Istio backend renders, in the order they are read.
RENDERED = (DEPLOYMENT, STATEFUL_SET, SERVICE, DESTINATION_RULE, VIRTUAL_SERVICE, ENVOY_FILTER, *POLICIES)
# Read for the baseline only, and skipped when the cluster does not serve them (an optional CRD).
OPTIONAL = (ROLLOUT,)
BY_NAME = {k.kind: k for k in (*RENDERED, *OPTIONAL, NAMESPACE, SECRET, SANDBOX, ROUTE_GROUP, CRD, WORKLOAD_ENTRY,
                                     SIDECAR, GATEWAY, MESH_POLICY, ADMISSION_POLICY, ADMISSION_BINDING)}


def of(body: dict[str, Any]) -> Kind:
    """The kind of an object body."""
    return BY_NAME[body["kind"]]


@dataclass(frozen=True, order=True)
class Ref:
    """One object's identity: kind, namespace ("" for cluster-scoped) and name."""

    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, body: dict[str, Any]) -> Ref:
        meta = body["metadata"]
        return cls(body["kind"], meta.get("namespace") or "", meta["name"])

    @property
    def api(self) -> Kind:
        return BY_NAME[self.kind]

    def path(self) -> str:
        return self.api.path(self.namespace or None, self.name)

    def __str__(self) -> str:
        """``deployment.apps/reviews-v1-pr-1 -n bookinfo`` (kubectl style)."""
        where = f" -n {self.namespace}" if self.namespace else ""
        return f"{self.api.display}/{self.name}{where}"

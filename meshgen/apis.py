"""The Kubernetes API resources meshgen reads or writes: group, version, plural and scope of each kind.

A fixed table instead of API discovery: meshgen touches a handful of kinds, and discovery would cost requests on
every run. Facts about the Kubernetes API, not about a cluster: backends name the kinds they write from here, and
the reconciler (:mod:`meshgen.kube.kinds`) finds where each lives.
"""

from __future__ import annotations

from dataclasses import dataclass


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
# The index kept honest (meshgen.kube.admission): an edit around meshgen unindexes the spec it edits.
MUTATING_POLICY = Kind("MutatingAdmissionPolicy", "admissionregistration.k8s.io", "v1",
                       "mutatingadmissionpolicies", namespaced=False)
MUTATING_BINDING = Kind("MutatingAdmissionPolicyBinding", "admissionregistration.k8s.io", "v1",
                        "mutatingadmissionpolicybindings", namespaced=False)
# Not written by meshgen; the istiod test environment (meshgen.testenv.istiomesh) creates them for its proxies.
WORKLOAD_ENTRY = Kind("WorkloadEntry", "networking.istio.io", "v1", "workloadentries")
SIDECAR = Kind("Sidecar", "networking.istio.io", "v1", "sidecars")
GATEWAY = Kind("Gateway", "networking.istio.io", "v1", "gateways")  # the test environment's edge
# The Gateway API (gateway.networking.k8s.io, standard channel): routes meshgen edits or owns, and the Gateways
# and classes routes attach to (read only; the test environment creates them). Their CRDs may be absent.
HTTP_ROUTE = Kind("HTTPRoute", "gateway.networking.k8s.io", "v1", "httproutes")
GRPC_ROUTE = Kind("GRPCRoute", "gateway.networking.k8s.io", "v1", "grpcroutes")
KUBERNETES_GATEWAY = Kind("Gateway", "gateway.networking.k8s.io", "v1", "gateways")
GATEWAY_CLASS = Kind("GatewayClass", "gateway.networking.k8s.io", "v1", "gatewayclasses", namespaced=False)
CRD = Kind("CustomResourceDefinition", "apiextensions.k8s.io", "v1", "customresourcedefinitions", namespaced=False)

# Read for the baseline only, and skipped when the cluster does not serve them (an optional CRD).
OPTIONAL = (ROLLOUT, HTTP_ROUTE, GRPC_ROUTE)
POLICIES = (AUTHORIZATION_POLICY, PEER_AUTHENTICATION, REQUEST_AUTHENTICATION, NETWORK_POLICY)

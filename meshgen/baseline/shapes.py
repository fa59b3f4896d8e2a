"""The shape of the baseline fields meshgen reads, checked before the planner trusts them.

Lenient models: every field meshgen does not read is allowed and ignored (these are other people's manifests),
and the raw body is kept as it was; only the fields meshgen relies on must have the right type. A Secret is
checked for shape alone, and the error translation never quotes its values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from meshgen.errors import InvalidInput, Location, Problem
from meshgen.validation import validate_model

Labels = dict[str, str]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=False)


class Meta(_Lenient):
    name: str = Field(min_length=1)
    namespace: str | None = None
    labels: Labels = Field(default_factory=dict)
    annotations: Labels = Field(default_factory=dict)


class Container(_Lenient):
    name: str
    image: str | None = None
    env: list[dict[str, Any]] | None = None


class PodSpec(_Lenient):
    containers: list[Container] = Field(min_length=1)
    init_containers: list[Container] | None = Field(default=None, alias="initContainers")


class PodMeta(_Lenient):
    labels: Labels = Field(min_length=1)
    annotations: Labels = Field(default_factory=dict)


class PodTemplate(_Lenient):
    metadata: PodMeta
    spec: PodSpec


class Selector(_Lenient):
    match_labels: Labels = Field(default_factory=dict, alias="matchLabels")


class DeploymentSpec(_Lenient):
    selector: Selector = Selector()
    template: PodTemplate


class StatefulSetSpec(DeploymentSpec):
    service_name: str | None = Field(default=None, alias="serviceName")
    volume_claim_templates: list[dict[str, Any]] | None = Field(default=None, alias="volumeClaimTemplates")


class WorkloadRef(_Lenient):
    api_version: str = Field(default="apps/v1", alias="apiVersion")
    kind: Literal["Deployment"]
    name: str = Field(min_length=1)


class RolloutSpec(_Lenient):
    selector: Selector = Selector()
    template: PodTemplate | None = None
    workload_ref: WorkloadRef | None = Field(default=None, alias="workloadRef")

    @model_validator(mode="after")
    def _template(self) -> RolloutSpec:
        if (self.template is None) == (self.workload_ref is None):
            raise ValueError("a Rollout has either a pod template (template) or a workloadRef to a Deployment")
        return self


class ServicePort(_Lenient):
    port: int
    name: str | None = None
    protocol: str | None = None
    app_protocol: str | None = Field(default=None, alias="appProtocol")


class ServiceSpec(_Lenient):
    selector: Labels | None = None
    ports: list[ServicePort] = Field(default_factory=list)  # none: valid (ExternalName, headless), not routable
    cluster_ip: str | None = Field(default=None, alias="clusterIP")


class Destination(_Lenient):
    host: str = Field(min_length=1)
    subset: str | None = None


class RouteDestination(_Lenient):
    destination: Destination
    weight: int | None = None


class HTTPMatch(_Lenient):
    headers: dict[str, dict[str, Any]] | None = None
    source_labels: Labels | None = Field(default=None, alias="sourceLabels")
    source_namespace: str | None = Field(default=None, alias="sourceNamespace")


class IstioRoute(_Lenient):
    name: str | None = None
    match: list[HTTPMatch] | None = None
    route: list[RouteDestination] | None = None


class VirtualServiceSpec(_Lenient):
    hosts: list[str] = Field(default_factory=list)
    gateways: list[str] | None = None
    http: list[IstioRoute] = Field(default_factory=list)


class ParentRef(_Lenient):
    group: str | None = None
    kind: str | None = None
    namespace: str | None = None
    name: str = Field(min_length=1)
    port: int | None = None


class BackendRef(_Lenient):
    group: str | None = None
    kind: str | None = None
    namespace: str | None = None
    name: str = Field(min_length=1)
    port: int | None = None
    weight: int | None = Field(default=None, ge=0)
    filters: list[dict[str, Any]] | None = None


class GatewayHeaderMatch(_Lenient):
    type: Literal["Exact", "RegularExpression"] | None = None
    name: str = Field(min_length=1)
    value: str


class PathMatch(_Lenient):
    type: Literal["Exact", "PathPrefix", "RegularExpression"] | None = None
    value: str | None = None


class HTTPRouteMatch(_Lenient):
    path: PathMatch | None = None
    headers: list[GatewayHeaderMatch] | None = None
    query_params: list[GatewayHeaderMatch] | None = Field(default=None, alias="queryParams")
    method: str | None = None


class GRPCMethodMatch(_Lenient):
    type: Literal["Exact", "RegularExpression"] | None = None
    service: str | None = None
    method: str | None = None


class GRPCRouteMatch(_Lenient):
    method: GRPCMethodMatch | None = None
    headers: list[GatewayHeaderMatch] | None = None


class RouteFilter(_Lenient):
    type: str


class HTTPRouteRule(_Lenient):
    name: str | None = None
    matches: list[HTTPRouteMatch] | None = None
    filters: list[RouteFilter] | None = None
    backend_refs: list[BackendRef] | None = Field(default=None, alias="backendRefs")
    timeouts: dict[str, str] | None = None


class GRPCRouteRule(_Lenient):
    name: str | None = None
    matches: list[GRPCRouteMatch] | None = None
    filters: list[RouteFilter] | None = None
    backend_refs: list[BackendRef] | None = Field(default=None, alias="backendRefs")


class HTTPRouteSpec(_Lenient):
    parent_refs: list[ParentRef] = Field(default_factory=list, alias="parentRefs")
    hostnames: list[str] | None = None
    rules: list[HTTPRouteRule] = Field(default_factory=list)


class GRPCRouteSpec(HTTPRouteSpec):
    rules: list[GRPCRouteRule] = Field(default_factory=list)  # type: ignore[assignment]


class Subset(_Lenient):
    name: str = Field(min_length=1)
    labels: Labels | None = None
    traffic_policy: dict[str, Any] | None = Field(default=None, alias="trafficPolicy")


class DestinationRuleSpec(_Lenient):
    host: str = Field(min_length=1)
    traffic_policy: dict[str, Any] | None = Field(default=None, alias="trafficPolicy")
    subsets: list[Subset] | None = None
    workload_selector: dict[str, Any] | None = Field(default=None, alias="workloadSelector")
    export_to: list[str] | None = Field(default=None, alias="exportTo")


class Requirement(_Lenient):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] | None = None


class LabelSelector(_Lenient):
    match_labels: Labels | None = Field(default=None, alias="matchLabels")
    match_expressions: list[Requirement] | None = Field(default=None, alias="matchExpressions")


class WorkloadSelector(_Lenient):
    match_labels: Labels | None = Field(default=None, alias="matchLabels")


class SecurityPolicySpec(_Lenient):
    """AuthorizationPolicy, PeerAuthentication, RequestAuthentication: the fields that say which workloads."""

    selector: WorkloadSelector | None = None
    target_ref: dict[str, Any] | None = Field(default=None, alias="targetRef")
    target_refs: list[dict[str, Any]] | None = Field(default=None, alias="targetRefs")


class Peer(_Lenient):
    pod_selector: LabelSelector | None = Field(default=None, alias="podSelector")
    namespace_selector: LabelSelector | None = Field(default=None, alias="namespaceSelector")


class IngressRule(_Lenient):
    from_: list[Peer] | None = Field(default=None, alias="from")


class EgressRule(_Lenient):
    to: list[Peer] | None = None


class NetworkPolicySpec(_Lenient):
    pod_selector: LabelSelector = Field(alias="podSelector")
    policy_types: list[Literal["Ingress", "Egress"]] | None = Field(default=None, alias="policyTypes")
    ingress: list[IngressRule] | None = None
    egress: list[EgressRule] | None = None


class _Object(_Lenient):
    metadata: Meta


class Deployment(_Object):
    spec: DeploymentSpec


class StatefulSet(_Object):
    spec: StatefulSetSpec


class Rollout(_Object):
    spec: RolloutSpec


class SecurityPolicy(_Object):
    spec: SecurityPolicySpec = SecurityPolicySpec()


class NetworkPolicy(_Object):
    spec: NetworkPolicySpec


class Service(_Object):
    spec: ServiceSpec


class VirtualService(_Object):
    spec: VirtualServiceSpec


class DestinationRule(_Object):
    spec: DestinationRuleSpec


class Gateway(_Object):
    spec: dict[str, Any] = Field(default_factory=dict)


class HTTPRoute(_Object):
    spec: HTTPRouteSpec = HTTPRouteSpec()


class GRPCRoute(_Object):
    spec: GRPCRouteSpec = GRPCRouteSpec()


class Secret(_Object):
    data: Labels | None = None
    string_data: Labels | None = Field(default=None, alias="stringData")


SHAPES: Mapping[str, type[_Object]] = {
    "Deployment": Deployment, "StatefulSet": StatefulSet, "Rollout": Rollout, "Service": Service,
    "VirtualService": VirtualService, "DestinationRule": DestinationRule, "Secret": Secret, "Gateway": Gateway,
    "HTTPRoute": HTTPRoute, "GRPCRoute": GRPCRoute, "Gateway.gateway.networking.k8s.io": Gateway,
    "AuthorizationPolicy": SecurityPolicy, "PeerAuthentication": SecurityPolicy,
    "RequestAuthentication": SecurityPolicy, "NetworkPolicy": NetworkPolicy,
}


def check_object(body: Mapping[str, Any], location: Location, kind: str | None = None) -> list[Problem]:
    """Problems with the fields of a baseline object that meshgen reads (empty when it has the right shape);
    ``kind``: its baseline kind, when that is not the body's (a Gateway API Gateway)."""
    try:
        validate_model(SHAPES[kind or str(body["kind"])], body, location)
    except InvalidInput as exc:
        return list(exc.problems)
    return []

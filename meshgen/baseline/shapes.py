"""The shape of the baseline fields meshgen reads, checked before the planner trusts them.

Lenient models: every field meshgen does not read is allowed and ignored (these are other people's manifests),
and the raw body is kept as it was; only the fields meshgen relies on must have the right type. A Secret is
checked for shape alone, and the error translation never quotes its values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

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


class HTTPRoute(_Lenient):
    name: str | None = None
    match: list[HTTPMatch] | None = None
    route: list[RouteDestination] | None = None


class VirtualServiceSpec(_Lenient):
    hosts: list[str] = Field(default_factory=list)
    gateways: list[str] | None = None
    http: list[HTTPRoute] = Field(default_factory=list)


class DestinationRuleSpec(_Lenient):
    host: str = Field(min_length=1)
    traffic_policy: dict[str, Any] | None = Field(default=None, alias="trafficPolicy")
    workload_selector: dict[str, Any] | None = Field(default=None, alias="workloadSelector")
    export_to: list[str] | None = Field(default=None, alias="exportTo")


class _Object(_Lenient):
    metadata: Meta


class Deployment(_Object):
    spec: DeploymentSpec


class Service(_Object):
    spec: ServiceSpec


class VirtualService(_Object):
    spec: VirtualServiceSpec


class DestinationRule(_Object):
    spec: DestinationRuleSpec


class Gateway(_Object):
    spec: dict[str, Any] = Field(default_factory=dict)


class Secret(_Object):
    data: Labels | None = None
    string_data: Labels | None = Field(default=None, alias="stringData")


SHAPES: Mapping[str, type[_Object]] = {
    "Deployment": Deployment, "Service": Service, "VirtualService": VirtualService,
    "DestinationRule": DestinationRule, "Secret": Secret, "Gateway": Gateway,
}


def check_object(body: Mapping[str, Any], location: Location) -> list[Problem]:
    """Problems with the fields of a baseline object that meshgen reads (empty when it has the right shape)."""
    try:
        validate_model(SHAPES[str(body["kind"])], body, location)
    except InvalidInput as exc:
        return list(exc.problems)
    return []

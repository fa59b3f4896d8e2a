"""What users write: ``Sandbox``, ``RouteGroup`` and ``MeshPolicy`` (apiVersion ``meshgen.dev/v1alpha1``).

Models are frozen and reject unknown fields. Field names are the camelCase the YAML uses. Validators return
messages in the user's terms; :mod:`meshgen.spec.loading` attaches file, line and field path.
"""

from __future__ import annotations

import enum
import fnmatch
import functools
import ipaddress
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from meshgen.spec import images, names
from meshgen.validation import FieldProblem

API_VERSION = "meshgen.dev/v1alpha1"
SPEC_KINDS = ("Sandbox", "RouteGroup", "MeshPolicy")


def _check(problem: Callable[[str], str | None], fix: str | None = None) -> AfterValidator:
    def validate(value: str) -> str:
        message = problem(value)
        if message:
            raise FieldProblem(message, fix)
        return value

    return AfterValidator(validate)


DnsLabel = Annotated[str, _check(names.dns_label_problem)]
ObjectName = Annotated[str, _check(names.dns_subdomain_problem)]
SandboxName = Annotated[str, _check(lambda v: names.dns_label_problem(v, names.SANDBOX_NAME_MAX))]
SpecLabelKey = Annotated[str, _check(names.spec_label_key_problem, "use a key like team or example.com/team")]
LabelValue = Annotated[str, _check(names.label_value_problem, "shorten the value, or use only A-Z a-z 0-9 - _ .")]
AnnotationKey = Annotated[str, _check(lambda v: names.label_key_problem(v, "annotation key"),
                                      "use a key like example.com/note")]
# A header that carries a routing key or the edge token: never one HTTP, Envoy or tracing owns.
KeyHeader = Annotated[str, _check(names.key_header_problem, "use a header of your own, like x-<team>-routing-key")]
ImageReference = Annotated[str, _check(images.reference_problem,
                                       "use a reference like registry.example.com/team/app:1.2")]
Registry = Annotated[str, _check(images.registry_problem, "list registries as host[:port] or host[:port]/path")]
RoutingKey = Annotated[str, _check(names.routing_key_problem)]
BaggageKey = Annotated[str, _check(names.baggage_key_problem)]
TracestateKey = Annotated[str, _check(names.tracestate_key_problem)]
EnvName = Annotated[str, _check(names.env_name_problem)]
NonEmpty = Annotated[str, Field(min_length=1)]
Duration = Annotated[str, _check(names.duration_problem, f"use a duration of at most {names.MAX_DURATION}, like 2h "
                                 "or 3d (to keep a sandbox longer, apply it again with ttl.offsetFrom: updatedAt)")]


class Model(BaseModel):
    """Base of every spec model: immutable, strict about unknown fields, camelCase in YAML."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=False, str_strip_whitespace=False)


class ObjectMeta(Model):
    """The subset of Kubernetes ObjectMeta a spec may carry. Specs are cluster-scoped: no namespace."""

    name: SandboxName
    # Stored as the object's own metadata: what the apiserver refuses must not get that far.
    labels: dict[SpecLabelKey, LabelValue] = Field(default_factory=dict)
    annotations: dict[AnnotationKey, str] = Field(default_factory=dict)


WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Rollout")
# Set in every container of a fork (a downward API for sandboxes); a user may read them, never set them.
ENV_SANDBOX = "MESHGEN_SANDBOX_NAME"
ENV_ROUTING_KEY = "MESHGEN_ROUTING_KEY"
RESERVED_ENV = (ENV_SANDBOX, ENV_ROUTING_KEY)


def _namespace_optional(schema: dict[str, Any]) -> None:
    # The loader fills a missing namespace (from -n, or the kubeconfig context's) before validating, so the model
    # always has one; editors and the CRD must accept a spec that leaves it out.
    schema["required"] = [r for r in schema.get("required", []) if r != "namespace"]
    schema["properties"]["namespace"]["description"] = (
        "Defaults to -n/--namespace (cluster commands: the kubeconfig context's namespace, else default).")


class WorkloadRef(Model):
    """A baseline workload, by kind, namespace and name. A ``Rollout`` is an Argo Rollout
    (argoproj.io/v1alpha1)."""

    model_config = ConfigDict(json_schema_extra=_namespace_optional)

    kind: Literal["Deployment", "StatefulSet", "Rollout"] = "Deployment"
    namespace: DnsLabel
    name: ObjectName

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


class ImageCustomization(Model):
    """Replace one container's image. ``container`` may be omitted when the pod has a single container."""

    container: str | None = None
    image: ImageReference


def _reserved_problem(name: str) -> str | None:
    if name in RESERVED_ENV:
        return f"{name} is set by meshgen in every container of a fork (the sandbox's name and routing key)"
    return None


class EnvCustomization(Model):
    """Set (add or replace) one environment variable in one container (not ``MESHGEN_SANDBOX_NAME`` or
    ``MESHGEN_ROUTING_KEY``: meshgen sets those in every container of a fork)."""

    container: str | None = None
    name: Annotated[EnvName, _check(_reserved_problem, "remove this entry; read the variable in the application "
                                                       "instead")]
    value: str | None = None
    value_from: dict[str, Any] | None = Field(default=None, alias="valueFrom")

    @model_validator(mode="after")
    def _one_value(self) -> EnvCustomization:
        if (self.value is None) == (self.value_from is None):
            raise ValueError("set exactly one of 'value' and 'valueFrom'")
        return self


class PatchType(enum.StrEnum):
    """How ``customizations.patch.value`` is applied to the fork's workload."""

    STRATEGIC = "strategic"
    MERGE = "merge"
    JSON = "json"


class Patch(Model):
    """A patch applied to the fork's workload after images and env (kubectl patch semantics): a Deployment, or a
    StatefulSet for the fork of a StatefulSet (a Rollout's fork is a Deployment)."""

    type: PatchType = PatchType.STRATEGIC
    value: dict[str, Any] | list[dict[str, Any]]

    @model_validator(mode="after")
    def _shape(self) -> Patch:
        if self.type is PatchType.JSON and not isinstance(self.value, list):
            raise ValueError("a json patch is a list of operations ({op, path, value})")
        if self.type is not PatchType.JSON and not isinstance(self.value, dict):
            raise ValueError(f"a {self.type.value} patch is a mapping (a partial Deployment or StatefulSet)")
        return self


class Customizations(Model):
    """What makes the fork differ from the baseline workload."""

    images: tuple[ImageCustomization, ...] = ()
    env: tuple[EnvCustomization, ...] = ()
    patch: Patch | None = None


class Fork(Model):
    """A baseline workload this sandbox runs a modified copy of."""

    fork_of: WorkloadRef = Field(alias="forkOf")
    customizations: Customizations = Customizations()


class VirtualWorkload(Model):
    """A workload the sandbox claims without forking it: the sandbox's key routes to its baseline, and no
    other sandbox in the same route group may fork it."""

    name: DnsLabel
    workload: WorkloadRef


class TTL(Model):
    """How long a sandbox lives; ``meshgen gc`` deletes it afterwards."""

    duration: Duration
    offset_from: Literal["createdAt", "updatedAt"] = Field(default="createdAt", alias="offsetFrom")

    @property
    def seconds(self) -> int:
        """The duration in seconds (at most a year: a longer one is refused)."""
        return names.parse_duration(self.duration) or 0


class KeyedSpec(Model):
    """What every object that owns a routing key has in its spec."""

    description: str = ""
    routing_key: RoutingKey | None = Field(default=None, alias="routingKey")


S = TypeVar("S", bound=KeyedSpec)


class KeyedObject(Model, Generic[S]):
    """A Sandbox or RouteGroup: a named object with a routing key (explicit, or derived from kind and name)."""

    api_version: Literal["meshgen.dev/v1alpha1"] = Field(alias="apiVersion")
    kind: str
    metadata: ObjectMeta
    spec: S

    # Cached: the planner asks each spec for these many times (pydantic ignores cached properties in
    # equality, hashing and dumps).
    @functools.cached_property
    def name(self) -> str:
        return self.metadata.name

    @functools.cached_property
    def routing_key(self) -> str:
        """The explicit routing key, or the one derived from the kind and name."""
        return self.spec.routing_key or names.derive_routing_key(self.kind, self.name)


class SandboxSpec(KeyedSpec):
    """The body of a Sandbox."""

    ttl: TTL | None = None
    forks: tuple[Fork, ...] = ()
    virtual: tuple[VirtualWorkload, ...] = ()

    @model_validator(mode="after")
    def _claims(self) -> SandboxSpec:
        if not self.forks and not self.virtual:
            raise ValueError("a sandbox needs at least one entry in 'forks' or 'virtual'")
        seen: set[WorkloadRef] = set()
        for ref in [f.fork_of for f in self.forks] + [v.workload for v in self.virtual]:
            if ref in seen:
                raise ValueError(f"{ref} appears more than once in forks/virtual; a sandbox claims it once")
            seen.add(ref)
        virtual_names = [v.name for v in self.virtual]
        if len(set(virtual_names)) != len(virtual_names):
            raise ValueError("virtual workload names must be unique within a sandbox")
        return self


class Sandbox(KeyedObject[SandboxSpec]):
    """A change under test: forks of some baseline workloads, reachable with one routing key."""

    kind: Literal["Sandbox"]


class LabelMatch(Model):
    """Matches a sandbox label; ``value`` is a glob (``*``, ``?``, ``[...]``)."""

    key: NonEmpty
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        return self.key in labels and fnmatch.fnmatchcase(labels[self.key], self.value)


class MatchTerm(Model):
    """One condition of a route group's match."""

    label: LabelMatch


class GroupMatch(Model):
    """Which sandboxes a route group joins: all terms must hold, or any one of them."""

    all: tuple[MatchTerm, ...] | None = None
    any: tuple[MatchTerm, ...] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> GroupMatch:
        if (self.all is None) == (self.any is None):
            raise ValueError("set exactly one of 'all' and 'any'")
        if not (self.all or self.any):
            raise ValueError("a match needs at least one term")
        return self

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a sandbox with ``labels`` belongs to the group."""
        if self.all is not None:
            return all(term.label.matches(labels) for term in self.all)
        return any(term.label.matches(labels) for term in self.any or ())


class RouteGroupSpec(KeyedSpec):
    """The body of a RouteGroup."""

    match: GroupMatch


class RouteGroup(KeyedObject[RouteGroupSpec]):
    """One routing key that reaches the forks of every sandbox it matches."""

    kind: Literal["RouteGroup"]


class PropagationSource(Model):
    """One place a routing key may arrive: a plain header, a W3C baggage member, or a tracestate member."""

    header: KeyHeader | None = None
    baggage: BaggageKey | None = None
    tracestate: TracestateKey | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> PropagationSource:
        if sum(x is not None for x in (self.header, self.baggage, self.tracestate)) != 1:
            raise ValueError("set exactly one of 'header', 'baggage' and 'tracestate'")
        return self

    @property
    def kind(self) -> Literal["header", "baggage", "tracestate"]:
        if self.header is not None:
            return "header"
        return "baggage" if self.baggage is not None else "tracestate"

    @property
    def key(self) -> str:
        return self.header or self.baggage or self.tracestate or ""


DEFAULT_ROUTING_HEADER = "x-meshgen-routing-key"
DEFAULT_PROPAGATION = (
    PropagationSource(header=DEFAULT_ROUTING_HEADER),
    PropagationSource(baggage="meshgen-routing-key"),
    PropagationSource(tracestate="meshgen-routing-key"),
)


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a CIDR block like 10.0.0.0/8 or fd00::/8 ({exc})") from None


Cidr = Annotated[str, AfterValidator(_cidr)]


class SecretRef(Model):
    """A key of a Kubernetes Secret. meshgen reads it, never prints it, and embeds only its SHA-256."""

    namespace: DnsLabel
    name: ObjectName
    key: NonEmpty = "token"

    def __str__(self) -> str:
        return f"Secret {self.namespace}/{self.name} key {self.key!r}"


class EdgeToken(Model):
    """A shared secret a trusted client presents in a header to keep its routing key at the edge."""

    header: KeyHeader = "x-meshgen-edge-token"
    secret_ref: SecretRef = Field(alias="secretRef")


class IngressMode(enum.StrEnum):
    """Who may bring a routing key in from outside the mesh."""

    STRIP = "strip"  # nobody: keys are removed at the edge
    ALLOW_CIDRS = "allowCidrs"  # clients whose address is in allowCidrs
    TOKEN = "token"  # clients presenting the edge token


class Ingress(Model):
    """Edge protection: a routing key is a capability (it chooses which code serves a request), so keys arriving
    at an ingress gateway are removed unless the client is trusted."""

    mode: IngressMode = IngressMode.STRIP
    allow_cidrs: tuple[Cidr, ...] = Field(default=(), alias="allowCidrs")
    token: EdgeToken | None = None

    @model_validator(mode="after")
    def _mode_needs(self) -> Ingress:
        if self.mode is IngressMode.ALLOW_CIDRS and not self.allow_cidrs:
            raise ValueError("mode allowCidrs needs at least one entry in allowCidrs")
        if self.mode is IngressMode.TOKEN and self.token is None:
            raise ValueError("mode token needs token: {header, secretRef: {namespace, name, key}}")
        return self

    @property
    def token_secret(self) -> SecretRef | None:
        """The Secret holding the edge token, when the mode uses one."""
        return self.token.secret_ref if self.mode is IngressMode.TOKEN and self.token is not None else None


class Guardrails(Model):
    """Limits a platform team sets on what sandboxes may do. A violation is an error naming the rule."""

    allowed_namespaces: tuple[DnsLabel, ...] = Field(default=(), alias="allowedNamespaces")
    denied_namespaces: tuple[DnsLabel, ...] = Field(default=("kube-system", "istio-system"), alias="deniedNamespaces")
    allowed_registries: tuple[Registry, ...] = Field(default=(), alias="allowedRegistries")
    max_sandboxes_per_host: int | None = Field(default=None, ge=1, alias="maxSandboxesPerHost")
    max_ttl: str | None = Field(default=None, alias="maxTTL")
    required_labels: tuple[NonEmpty, ...] = Field(default=(), alias="requiredLabels")

    @model_validator(mode="after")
    def _ttl(self) -> Guardrails:
        problem = names.duration_problem(self.max_ttl) if self.max_ttl is not None else None
        if problem:
            raise FieldProblem(f"maxTTL: {problem}", f"use a duration of at most {names.MAX_DURATION}")
        return self

    @property
    def max_ttl_seconds(self) -> int | None:
        return names.parse_duration(self.max_ttl) if self.max_ttl else None


class Backend(enum.StrEnum):
    """Which routing API meshgen writes on a cluster."""

    ISTIO = "istio"  # Istio VirtualServices (with DestinationRules and the normaliser's EnvoyFilter)
    GATEWAY_API = "gateway-api"  # Gateway API HTTPRoutes and GRPCRoutes (GAMMA: parentRefs to Services)


class Target(enum.StrEnum):
    """The data plane that runs the routes: what it can do decides what meshgen can promise
    (:mod:`meshgen.plan.targets`)."""

    ISTIO_SIDECAR = "istio-sidecar"  # Envoy sidecars and gateways configured by istiod: EnvoyFilters run
    ISTIO_AMBIENT = "istio-ambient"  # ztunnel and waypoint proxies: HTTPRoutes, no EnvoyFilter
    LINKERD = "linkerd"  # Linkerd's proxies: HTTPRoutes (and GRPCRoutes), no EnvoyFilter
    GENERIC = "generic"  # any GAMMA implementation: the Gateway API's core features only


class MeshPolicySpec(Model):
    """How routing keys travel, who may set them, what sandboxes may do, and where meshgen's shared objects live."""

    backend: Backend = Backend.ISTIO
    target: Target = Target.ISTIO_SIDECAR
    routing_header: KeyHeader = Field(default=DEFAULT_ROUTING_HEADER, alias="routingHeader")
    propagation: tuple[PropagationSource, ...] = Field(default=DEFAULT_PROPAGATION, min_length=1)
    filter_namespace: DnsLabel = Field(default="istio-system", alias="filterNamespace")
    cluster_domain: ObjectName = Field(default="cluster.local", alias="clusterDomain")
    ingress: Ingress = Ingress()
    guardrails: Guardrails = Guardrails()

    @model_validator(mode="after")
    def _unique_sources(self) -> MeshPolicySpec:
        seen = [(s.kind, s.key) for s in self.propagation]
        if len(set(seen)) != len(seen):
            raise ValueError("propagation lists the same source twice")
        return self

    @model_validator(mode="after")
    def _backend_runs_on_target(self) -> MeshPolicySpec:
        mismatch = self.backend_mismatch()
        if mismatch is not None:
            raise FieldProblem(*mismatch)
        return self

    def backend_mismatch(self) -> tuple[str, str] | None:
        """Why the backend cannot run on the target, and the fix (None: it can). Checked when a policy is read,
        and again for a compile whose ``--backend`` replaces the policy's."""
        if self.backend is Backend.ISTIO and self.target is not Target.ISTIO_SIDECAR:
            return (f"backend istio needs target istio-sidecar (got {self.target.value}): it writes VirtualServices "
                    "and an EnvoyFilter that runs the routing-key normaliser, and only Istio's sidecars and gateways "
                    "run EnvoyFilters",
                    f"use backend: gateway-api with target: {self.target.value}")
        return None


class MeshPolicy(Model):
    """Mesh-wide settings: the routing header and the propagation formats. One per compile."""

    api_version: Literal["meshgen.dev/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["MeshPolicy"]
    metadata: ObjectMeta
    spec: MeshPolicySpec = MeshPolicySpec()


DEFAULT_POLICY = MeshPolicy.model_validate(
    {"apiVersion": API_VERSION, "kind": "MeshPolicy", "metadata": {"name": "default"}}
)

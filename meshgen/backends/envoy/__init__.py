"""The Envoy backend: a plan as plain Envoy configuration for one local mesh (:mod:`.configuration`)."""

from meshgen.backends.envoy.configuration import (
    BACKEND,
    EDGE_LISTENER,
    EDGE_ROUTE_CONFIG,
    EnvoyConfig,
    build,
    rds_version_stat,
    render,
    route_config_file,
)

__all__ = ["BACKEND", "EDGE_LISTENER", "EDGE_ROUTE_CONFIG", "EnvoyConfig", "build", "rds_version_stat", "render",
           "route_config_file"]

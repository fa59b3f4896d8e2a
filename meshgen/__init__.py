"""meshgen: request-level sandbox routing for Istio/Envoy, compiled and reconciled."""

__version__ = "0.1.0"

"""The baseline: what already runs, read from manifests or a cluster."""

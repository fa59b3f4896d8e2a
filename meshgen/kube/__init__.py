"""Reconciling a Plan with a live cluster: diff, ordered apply, prune."""

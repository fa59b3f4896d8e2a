"""``meshgen install``: the platform's step. CRDs, the one stored MeshPolicy, the admission policy generated from
it and the one that keeps the index honest, then every host reconciled with it.

Run by the platform's identity (``meshgen install --print-rbac --platform``), the only one allowed to write the
MeshPolicy. Changing the policy is running it again with the new file: the admission policy follows (and is
waited for until the API server enforces it), then every stored sandbox is reconciled with the new policy; a
changed routing header goes make-before-break (:mod:`meshgen.kube.transition`).
"""

from __future__ import annotations

from collections.abc import Callable

from meshgen.errors import ClusterError
from meshgen.kube import admission, crds, discovery, policies
from meshgen.kube.client import Client
from meshgen.kube.diffing import Change
from meshgen.kube.reconciling import DryRun, Reconciler, Report
from meshgen.spec.loading import Specs
from meshgen.spec.models import DEFAULT_POLICY, MeshPolicy


def install(client: Client, policy: MeshPolicy | None, dry_run: bool = False,
            on_line: Callable[[str], None] = lambda line: None) -> Report:
    """Install everything for ``policy`` (``None``: keep the stored policy, or store the built-in default if
    there is none) and reconcile every host with it; each step is reported through ``on_line``. With nothing
    stored there is nothing to reconcile (and Istio need not be installed yet)."""
    for line in crds.install(client, dry_run):
        on_line(line)
    stored = discovery.list_specs(client) if not dry_run else discovery.StoredSpecs((), (), "")
    try:
        current = policies.stored_policy(stored)
    except ClusterError:
        current = None  # several, or one that does not validate: replaced below
    chosen = policy or current or DEFAULT_POLICY
    tenants = bool(stored.sandboxes or stored.route_groups)
    if tenants:
        # Bad input never half-applies: the policy must compile over what is stored (a stored sandbox it
        # forbids is left out, with a warning; a problem of the policy itself is an error) before it is stored.
        trial = Reconciler.trying(client, chosen)
        trial.plan_round(trial.observe(), Specs(), set(), {})
    for line in policies.store(client, chosen, stored, dry_run):
        on_line(line)
    for body in [*admission.objects(chosen), *admission.index_objects()]:
        on_line(crds.upsert(client, body, dry_run))
    if dry_run:
        return Report()
    admission.wait_enforced(client, chosen)
    for name in (admission.NAME, admission.ROUTE_GROUP_NAME):
        on_line(f"validatingadmissionpolicy.admissionregistration.k8s.io/{name} enforced")

    if not tenants:
        return Report()

    def changed(change: Change) -> None:
        on_line(change.summary)

    return Reconciler(client, chosen, on_change=changed).reconcile(DryRun.NONE)


def ensure_policy(client: Client, policy: MeshPolicy) -> None:
    """Install ``policy`` unless the cluster already stores exactly it (a test environment switching cases)."""
    try:
        current = policies.stored_policy(discovery.list_specs(client))
    except ClusterError:
        current = None
    if current is None or policies.document(current) != policies.document(policy):
        install(client, policy)

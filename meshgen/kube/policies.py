"""The platform's MeshPolicy as the cluster stores it: one cluster-scoped ``MeshPolicy`` (meshgen.dev).

Routing header, propagation, edge rules and guardrails are the platform's, not a CI job's (DESIGN invariant 9):
``meshgen install --policy FILE`` stores the policy (an identity with the platform's RBAC), and every cluster
command compiles with the stored one. A command may name a policy file only to insist on it (``--policy``): if
it is not exactly the stored one, the command fails and shows the difference. A cluster with no stored policy is
an error (not a silent default): the guardrails a platform meant to set must never be replaced by none.
"""

from __future__ import annotations

import difflib
from typing import Any

from meshgen.documents import Document, JsonObject, dump_yaml
from meshgen.errors import ClusterError, InvalidInput, Location, Problem
from meshgen.kube.client import Client
from meshgen.kube.discovery import StoredSpecs
from meshgen.kube.kinds import Ref
from meshgen.spec.loading import validate_document
from meshgen.spec.models import MeshPolicy

INSTALL_FIX = ("the platform stores one with `meshgen install --policy FILE` (or `meshgen install` for the built-in "
               "default)")


def document(policy: MeshPolicy) -> JsonObject:
    """The policy as stored: what its file says, normalised (defaults spelled out, so two files meaning the
    same policy store the same object)."""
    return policy.model_dump(by_alias=True, mode="json", exclude_none=True,
                             exclude={"metadata": {"labels", "annotations"}})


def stored_policy(stored: StoredSpecs) -> MeshPolicy | None:
    """The policy the cluster stores, or ``None``. More than one, or one that does not validate, is an error
    for every command until the platform fixes it."""
    if not stored.policies:
        return None
    if len(stored.policies) > 1:
        names = ", ".join(sorted(p["metadata"]["name"] for p in stored.policies))
        raise ClusterError(f"the cluster stores {len(stored.policies)} MeshPolicies ({names}); meshgen compiles with "
                           f"exactly one\n  fix: {INSTALL_FIX} replaces them with one")
    body = stored.policies[0]
    name = body["metadata"]["name"]
    clean = {"apiVersion": body.get("apiVersion"), "kind": "MeshPolicy", "metadata": {"name": name},
             "spec": body.get("spec") or {}}
    try:
        policy = validate_document(Document(Location(f"cluster: MeshPolicy/{name}"), clean))
    except InvalidInput as exc:
        raise ClusterError(f"the stored MeshPolicy {name} is invalid:\n{exc}\n  fix: {INSTALL_FIX}") from None
    assert isinstance(policy, MeshPolicy)
    return policy


def chosen(stored: StoredSpecs, expected: MeshPolicy | None, source: str = "--policy") -> MeshPolicy:
    """The policy a cluster command compiles with: the stored one. ``expected`` (read from ``source``) must
    equal it; the difference is shown otherwise."""
    policy = stored_policy(stored)
    if policy is None:
        raise ClusterError(f"no MeshPolicy is stored in this cluster; {INSTALL_FIX}")
    if expected is not None and document(expected) != document(policy):
        raise InvalidInput([Problem(
            Location(source),
            f"this policy is not the cluster's MeshPolicy {policy.metadata.name}; cluster commands compile with "
            f"the stored policy only:\n{difference(policy, expected, source)}",
            f"drop --policy (the cluster's policy applies), or have the platform store this one: {INSTALL_FIX}")])
    return policy


def difference(stored: MeshPolicy, given: MeshPolicy, source: str) -> str:
    """A unified diff, stored -> given, of the two policies as stored."""
    before = dump_yaml([document(stored)]).splitlines(keepends=True)
    after = dump_yaml([document(given)]).splitlines(keepends=True)
    return "".join(difflib.unified_diff(before, after, f"cluster/meshpolicy/{stored.metadata.name}", source)).rstrip()


def store(client: Client, policy: MeshPolicy, stored: StoredSpecs, dry_run: bool = False) -> list[str]:
    """Make ``policy`` the one stored policy (other stored ones are deleted after it is written); one summary
    line per object. Writes carry resourceVersion preconditions."""
    desired: dict[str, Any] = {**document(policy), "metadata": {"name": policy.metadata.name,
                                                                "labels": {"app.kubernetes.io/part-of": "meshgen"}}}
    live = next((p for p in stored.policies if p["metadata"]["name"] == policy.metadata.name), None)
    lines = []
    ref = Ref("MeshPolicy", "", policy.metadata.name)
    if live is None:
        client.create(desired, dry_run=dry_run)
        lines.append(f"{ref} created")
    elif live.get("spec") != desired["spec"]:
        ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": live["metadata"]["resourceVersion"]},
               {"op": "replace", "path": "/spec", "value": desired["spec"]}]
        client.patch(ref, ops, dry_run=dry_run)
        lines.append(f"{ref} configured")
    else:
        lines.append(f"{ref} unchanged")
    for other in stored.policies:
        if other["metadata"]["name"] != policy.metadata.name:
            client.delete(Ref.of(other), other["metadata"]["resourceVersion"], dry_run=dry_run)
            lines.append(f"{Ref.of(other)} deleted")
    return lines


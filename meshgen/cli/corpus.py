"""``meshgen corpus``: Istio's own samples through istiod and the Envoy backend, judged by comparison alone."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from meshgen.errors import ChecksFailed, EnvironmentProblem, InvalidInput, Location


@click.command("corpus")
@click.argument("names", nargs=-1)
@click.option("--samples", "samples_dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              default=None, help="Istio's samples/ directory (default: the one in the istio.io/istio module that "
                                 "`make testenv` put in the Go module cache).")
@click.option("--via", type=click.Choice(["istio", "envoy"]), default="istio", show_default=True,
              help="istio: through real istiod and the Envoy backend, all three checks (needs the binaries of "
                   "`make testenv`); envoy: the Envoy backend alone, checks (a) and (b).")
def corpus_command(names: tuple[str, ...], samples_dir: Path | None, via: str) -> None:
    """Run the real-world corpus and print its table.

    Every baseline made of Istio's samples (bookinfo's platform with each networking file in turn, httpbin,
    helloworld, tcp-echo, the addons, ...) gets generated sandboxes (each HTTP workload forked, a virtual workload,
    a route group over two forks) and requests (one per route, else per Service port), and is checked with no
    hand-written expectation: (a) without a key, every answer is the answer without sandboxes; (b) with a
    sandbox's key, it is that answer with each forked workload replaced by its fork; (c) istiod and the Envoy
    backend answer alike. A baseline holding Gateway API routes (bookinfo's gateway-api/route-*.yaml, ...) runs
    with spec.backend gateway-api; one with a Gateway API Gateway goes through the Envoy backend only (the istio
    test environment cannot serve one), said in the table's notes. Files that make no baseline are listed with the
    reason. Exit code 2 on any disagreement.

    NAMES limit the run to baselines whose name ends with one of them, or to whole groups.

    \b
    Examples:
      meshgen corpus                                   # everything, ~15 min on 2 cores
      meshgen corpus bookinfo                          # bookinfo's baselines only
      meshgen corpus virtual-service-reviews-90-10 --via envoy
    """
    from meshgen.corpus import checking, samples
    from meshgen.testenv import binaries, istiomesh
    from meshgen.testenv.mesh import RunningMesh

    root = samples_dir or binaries.istio_samples()
    if root is None:
        raise EnvironmentProblem("Istio's samples are not in the Go module cache; run `make testenv` (it downloads "
                                 "the istio.io/istio module) or pass --samples DIR")
    corpus = samples.discover(root)
    if names:
        chosen = tuple(e for e in corpus.entries if e.group in names or any(e.name.endswith(n) for n in names))
        if not chosen:
            raise InvalidInput.one(Location("NAMES"), f"no baseline of the corpus is named {', '.join(names)}",
                                   f"groups: {', '.join(dict.fromkeys(e.group for e in corpus.entries))}")
        corpus = dataclasses.replace(corpus, entries=chosen, skipped=())

    def say(line: str) -> None:
        click.echo(f"corpus: {line}", err=True)

    with RunningMesh() as baseline_mesh, RunningMesh() as sandbox_mesh:
        if via == "envoy":
            outcomes = checking.run(corpus, checking.Meshes(None, baseline_mesh, sandbox_mesh), say)
        else:
            with istiomesh.running(progress=say) as istio:
                outcomes = checking.run(corpus, checking.Meshes(istio, baseline_mesh, sandbox_mesh,
                                                                istiomesh.refusal), say)
    click.echo(checking.table(outcomes, corpus.skipped))
    failed = sum(len(o.failures) for o in outcomes)
    if failed:
        raise ChecksFailed(f"{failed} failure(s) in the corpus")


COMMANDS = (corpus_command,)

"""``meshgen compile`` and ``meshgen validate``."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import click

from meshgen import compiler
from meshgen.backends import BACKENDS
from meshgen.cli import options
from meshgen.documents import JsonObject, locate_all
from meshgen.errors import InvalidInput, Problem


@click.command("compile")
@options.spec_files()
@options.baseline()
@options.policy
@options.namespace
@options.output
@click.option("--backend", type=click.Choice(sorted(BACKENDS)), default=None,
              help="What to generate: istio (VirtualServices), gateway-api (HTTPRoutes and GRPCRoutes) or envoy "
                   "(one local Envoy's configuration). Default: the MeshPolicy's spec.backend (istio). Its spec.target "
                   "stays: istio on a target other than istio-sidecar is an error.")
@click.option("--analyze", is_flag=True,
              help="Also run `istioctl analyze` (from PATH) on the output together with the baseline: its errors "
                   "fail the compile (exit 2, nothing printed), its warnings go to stderr.")
def compile_command(
    filenames: tuple[str, ...],
    baseline_paths: tuple[str, ...],
    policy_path: str | None,
    namespace: str,
    output: compiler.OutputFormat,
    backend: str | None,
    analyze: bool,
) -> None:
    """Compile sandboxes and route groups into mesh resources, printed to stdout.

    Nothing is written to a cluster. Output is sorted by kind, namespace and name, and byte-identical for
    identical inputs, so it can be committed and reviewed. Warnings go to stderr.

    \b
    Examples:
      meshgen compile -f examples/sandboxes.yaml --baseline examples/baseline
      meshgen compile -f sandboxes/ --baseline k8s/ --policy policies/signadot-compat.yaml -o json
      cat pr-1234.yaml | meshgen compile -f - --baseline k8s/
      meshgen compile -f pr-1234.yaml --baseline k8s/ --analyze | kubectl apply -f -
      meshgen compile -f pr-1234.yaml --baseline k8s/ --backend gateway-api   # HTTPRoutes, whatever the policy says
    """
    if analyze and backend not in (None, "istio", "gateway-api"):
        raise click.UsageError("--analyze checks what istiod reads: use it with --backend istio or gateway-api")
    with compiler.batch():
        inputs = compiler.for_backend(compiler.read_inputs(filenames, baseline_paths, policy_path, namespace),
                                      backend)
        plan = compiler.plan_of(inputs)
        try:
            rendered = compiler.rendering(plan, backend)
        except InvalidInput as exc:  # a backend that cannot express a baseline field names it, with its line
            raise locate_all(exc, inputs.texts) from None
        objects = rendered.objects
        text = compiler.dump(objects, output)
    for warning in (*plan.warnings, *rendered.warnings):
        click.echo(warning.render(), err=True)
    if analyze:
        analyze_output(objects, baseline_paths)
    click.echo(text, nl=False)


def analyze_output(objects: list[JsonObject], baseline_paths: Sequence[str]) -> None:
    """istioctl analyze over the compiled objects and the baseline: warnings to stderr, errors raised."""
    from meshgen.testenv import istioctl

    with tempfile.TemporaryDirectory(prefix="meshgen-analyze-") as tmp:
        compiled = Path(tmp) / "compiled.yaml"
        compiled.write_text(compiler.dump(objects, "yaml"), encoding="utf-8")
        findings = istioctl.analyze([compiled, *baseline_paths])
        shown = [f.render().replace(str(compiled), "<compiled>") for f in findings]
    errors = [line for f, line in zip(findings, shown, strict=True) if f.level == istioctl.ERROR]
    for line in shown:
        if line not in errors:
            click.echo(f"istioctl analyze: {line}", err=True)
    if errors:
        raise InvalidInput([Problem(None, f"istioctl analyze: {line}") for line in errors])


@click.command("validate")
@options.spec_files()
@options.baseline(required=False)
@options.policy
@options.namespace
def validate_command(
    filenames: tuple[str, ...], baseline_paths: tuple[str, ...], policy_path: str | None, namespace: str
) -> None:
    """Check specs (and, with --baseline, that they compile) without printing resources.

    Without --baseline only the specs themselves are checked (fields, names, routing keys). With it, the
    whole compile runs: workloads must exist, keys must not collide, route groups must not conflict.

    \b
    Examples:
      meshgen validate -f sandboxes/
      meshgen validate -f pr-1234.yaml --baseline k8s/
    """
    if not baseline_paths:
        specs, _ = compiler.read_specs(filenames, namespace=namespace)
        click.echo(f"ok: {len(specs.sandboxes)} sandbox(es), {len(specs.route_groups)} route group(s)")
        return
    inputs = compiler.read_inputs(filenames, baseline_paths, policy_path, namespace)
    plan = compiler.plan_of(inputs)
    for warning in plan.warnings:
        click.echo(warning.render(), err=True)
    click.echo(
        f"ok: {len(inputs.specs.sandboxes)} sandbox(es), {len(inputs.specs.route_groups)} route group(s), "
        f"{len(plan.forks)} fork(s), {len(plan.tables)} routing object(s) with sandbox routes"
    )


COMMANDS = (compile_command, validate_command)

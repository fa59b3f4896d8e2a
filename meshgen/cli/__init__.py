"""The ``meshgen`` command line: thin click commands over the library; errors become exit codes here only."""

from __future__ import annotations

import sys
import traceback
from typing import Any

import click

from meshgen import __version__
from meshgen.errors import ExitCode, MeshgenError


class _Group(click.Group):
    """Maps meshgen errors to their exit codes and one clear message, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MeshgenError as exc:
            click.echo(str(exc) if str(exc).startswith("error:") else f"error: {exc}", err=True)
            ctx.exit(int(exc.exit_code))
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except Exception:
            click.echo("meshgen: internal error (this is a bug; please report it with the input):", err=True)
            traceback.print_exc(file=sys.stderr)
            ctx.exit(int(ExitCode.ERROR))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="meshgen")
def main() -> None:
    """Request-level sandboxes on one shared Istio mesh.

    meshgen compiles Sandbox and RouteGroup specs, over your baseline manifests and a MeshPolicy, into the
    Istio resources (VirtualService, DestinationRule, EnvoyFilter, fork Deployment/Service) that send requests
    carrying a routing key to forks, and everything else to the baseline, untouched.

    \b
    Exit codes: 0 ok / no changes, 1 changes pending (diff), 2 invalid input or error.

    \b
    Start here:
      meshgen demo                # the example on a live local mesh: real Envoy, real processes
      meshgen compile -f examples/sandboxes.yaml --baseline examples/baseline
      meshgen schema Sandbox
    """


def _register() -> None:
    from meshgen.cli import cluster, compiling, demo, golden, schema, testenv, verify

    for module in (compiling, demo, golden, schema, cluster, testenv, verify):
        for command in module.COMMANDS:
            main.add_command(command)


_register()

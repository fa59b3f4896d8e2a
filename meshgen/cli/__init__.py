"""The ``meshgen`` command line: thin click commands over the library; errors become exit codes here only
(by :func:`meshgen.errors.exit_code`). Commands raise :class:`~meshgen.errors.MeshgenError` for every failure and
return an :class:`~meshgen.errors.ExitCode` only to report pending changes; none exits on its own."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from meshgen import __version__
from meshgen.errors import ExitCode, MeshgenError, exit_code, result_code


class _Group(click.Group):
    """The one exit path: whatever a command returns or raises becomes one clear message and the exit code
    :mod:`meshgen.errors` assigns it, never a traceback (except for a bug, which says so)."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> NoReturn:
        try:
            # Not standalone: click then hands back every outcome (usage errors, aborts, --help's exit) instead
            # of choosing exit codes itself (it exits 1 for an abort, our "changes pending").
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except BaseException as exc:  # every outcome is mapped, interrupts included
            _report(exc)
            code = exit_code(exc)
        else:
            code = result_code(result)
        sys.exit(int(code))


def _report(exc: BaseException) -> None:
    """Say on stderr why the command ended."""
    if isinstance(exc, MeshgenError):
        click.echo(str(exc) if str(exc).startswith("error:") else f"error: {exc}", err=True)
    elif isinstance(exc, click.ClickException):
        exc.show()
    elif exit_code(exc) is ExitCode.INTERRUPTED:
        click.echo("interrupted", err=True)
    elif isinstance(exc, SystemExit):
        pass  # a library's own exit (click's on a closed stdout); its message, if any, is printed
    else:
        click.echo("meshgen: internal error (this is a bug; please report it with the input):", err=True)
        traceback.print_exception(exc, file=sys.stderr)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="meshgen")
def main() -> None:
    """Request-level sandboxes on one shared Istio mesh.

    meshgen compiles Sandbox and RouteGroup specs, over your baseline manifests and a MeshPolicy, into the
    Istio resources (VirtualService, DestinationRule, EnvoyFilter, fork Deployment/Service) that send requests
    carrying a routing key to forks, and everything else to the baseline, untouched.

    \b
    Exit codes: 0 ok / no changes, 1 changes pending (diff), 2 invalid input or any error, 130 interrupted.

    \b
    Start here:
      meshgen demo                # the example on a live local mesh: real Envoy, real processes
      meshgen compile -f examples/sandboxes.yaml --baseline examples/baseline
      meshgen schema Sandbox
    """


def _register() -> None:
    from meshgen.cli import cluster, compiling, corpus, demo, golden, schema, testenv, verify

    for module in (compiling, demo, golden, schema, cluster, testenv, verify, corpus):
        for command in module.COMMANDS:
            main.add_command(command)


_register()

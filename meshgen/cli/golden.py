"""``meshgen golden``: run (or update) the golden cases."""

from __future__ import annotations

from pathlib import Path

import click

from meshgen import golden
from meshgen.errors import ExitCode


@click.command("golden")
@click.argument("cases", nargs=-1)
@click.option("--cases", "cases_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("golden"),
              show_default=True, help="Directory holding one sub-directory per case.")
@click.option("--update", is_flag=True, help="Rewrite each case's expected output from what compiles now.")
def golden_command(cases: tuple[str, ...], cases_dir: Path, update: bool) -> None:
    """Compile every golden case and compare with its expected output.

    Each case is a directory with sandboxes.yaml, baseline/, an optional policy.yaml, and expected.yaml or
    expected-error.txt. A mismatch prints a unified diff; the exit code is 2 if any case fails.

    \b
    Examples:
      meshgen golden                       # all cases under ./golden
      meshgen golden single-fork route-group
      meshgen golden --update single-fork  # accept the new output, then review it with git diff
    """
    found = golden.discover(cases_dir, cases)
    failed = 0
    for case in found:
        result = golden.update(case) if update else golden.check(case)
        status = "ok" if result.ok else "FAIL"
        if update:
            status = result.detail or "unchanged"
        click.echo(f"{status:>9}  {case.name}")
        if not result.ok:
            failed += 1
            click.echo(result.detail, nl=not result.detail.endswith("\n"))
    click.echo(f"{len(found) - failed} passed, {failed} failed" if not update else f"{len(found)} case(s)")
    if failed:
        raise SystemExit(int(ExitCode.ERROR))


COMMANDS = (golden_command,)

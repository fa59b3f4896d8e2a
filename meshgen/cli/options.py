"""Options shared by several commands, defined once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def spec_files(required: bool = True) -> Callable[[F], F]:
    """``-f/--filename``: spec files or directories (repeatable, ``-`` for stdin)."""
    return click.option(
        "-f", "--filename", "filenames", multiple=True, required=required, metavar="FILE|DIR",
        help="Sandbox/RouteGroup specs: files or directories (recursive), repeatable; '-' reads stdin.",
    )


def baseline(required: bool = True) -> Callable[[F], F]:
    """``--baseline``: baseline manifests."""
    return click.option(
        "--baseline", "baseline_paths", multiple=True, required=required, metavar="FILE|DIR",
        help="Baseline manifests (Deployments, Services, VirtualServices, HTTPRoutes, DestinationRules), repeatable.",
    )


def policy(f: F) -> F:
    """``--policy``: the MeshPolicy file."""
    return click.option(
        "--policy", "policy_path", metavar="FILE", default=None,
        help="MeshPolicy to compile against (default: the built-in policy, same as policies/default.yaml).",
    )(f)


def namespace(f: F) -> F:
    """``-n/--namespace``: where namespace-less baseline objects and workload references are."""
    return click.option(
        "-n", "--namespace", default="default", show_default=True,
        help="Namespace for baseline objects that do not set one (like kubectl apply -n), and for forkOf and "
             "virtual[].workload references that leave theirs out.",
    )(f)


def output(f: F) -> F:
    """``-o/--output``: yaml or json."""
    return click.option(
        "-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True,
        help="Output format: multi-document YAML, or a JSON List.",
    )(f)

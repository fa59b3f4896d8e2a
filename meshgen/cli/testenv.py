"""``meshgen testenv up|down``: a local kube-apiserver + etcd with Istio's and meshgen's CRDs, to try meshgen."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

import click

from meshgen.kube import crds
from meshgen.kube.client import Client
from meshgen.testenv import binaries, controlplane


def default_directory() -> Path:
    return binaries.cache_dir() / "testenv"


@click.group("testenv")
def testenv_group() -> None:
    """A local control plane (etcd + kube-apiserver, no Docker) for trying meshgen's cluster commands.

    \b
    Examples:
      eval "$(meshgen testenv up --detach)"   # start it in the background, point KUBECONFIG at it
      meshgen install >/dev/null && meshgen apply -f examples/sandboxes.yaml
      meshgen testenv down
    """


@testenv_group.command("up")
@click.option("--detach", is_flag=True, help="Leave it running in the background and print `export KUBECONFIG=...`.")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where certificates, data, logs and the kubeconfig go (default: ~/.cache/meshgen/testenv).")
def up_command(detach: bool, directory: Path | None) -> None:
    """Start etcd and kube-apiserver, install Istio's and meshgen's CRDs, print the kubeconfig path.

    Binaries come from $MESHGEN_TESTENV_BIN, $KUBEBUILDER_ASSETS or ~/.cache/meshgen (built once with Go).
    """
    directory = directory or default_directory()
    state = controlplane.read_state(directory)
    if state is not None and controlplane.running(directory):
        if not detach:
            raise click.ClickException(f"a control plane already runs from {directory}; "
                                       f"stop it with: meshgen testenv down --dir {directory}")
        click.echo(f"export KUBECONFIG={state['kubeconfig']}")
        return
    plane = controlplane.ControlPlane(directory, binaries.ensure(), detached=detach)
    plane.start()
    try:
        crds.install(Client.from_kubeconfig(str(plane.kubeconfig)))
    except BaseException:
        plane.stop()
        raise
    if detach:
        click.echo(f"# kube-apiserver at {plane.url}; stop it with: meshgen testenv down", err=True)
        click.echo(f"export KUBECONFIG={plane.kubeconfig}")
        return
    click.echo(f"kube-apiserver at {plane.url}\nkubeconfig: {plane.kubeconfig}\n"
               f"  export KUBECONFIG={plane.kubeconfig}\nPress Ctrl-C to stop.")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Explicit handlers: a shell may start a background job with SIGINT ignored, and Ctrl-C must still stop it.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        while not stop.wait(1.0):
            if not (plane.apiserver and plane.apiserver.running()):
                raise click.ClickException(f"kube-apiserver exited; see {plane.directory / 'kube-apiserver.log'}")
    finally:
        plane.stop()
        click.echo("stopped", err=True)


@testenv_group.command("down")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The directory given to `up` (default: ~/.cache/meshgen/testenv).")
def down_command(directory: Path | None) -> None:
    """Stop a control plane started with `meshgen testenv up --detach`."""
    directory = directory or default_directory()
    if controlplane.stop_detached(directory):
        click.echo(f"stopped the control plane in {directory}")
    else:
        click.echo(f"no control plane recorded in {directory}")


COMMANDS = (testenv_group,)

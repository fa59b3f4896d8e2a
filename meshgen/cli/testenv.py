"""``meshgen testenv up|down``: a local kube-apiserver + etcd with Istio's and meshgen's CRDs, and optionally
istiod, to try meshgen."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

import click

from meshgen.errors import EnvironmentProblem
from meshgen.kube import installing
from meshgen.kube.client import Client
from meshgen.testenv import binaries, controlplane, istiod, processes


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
@click.option("--istio", "with_istio", is_flag=True,
              help="Also run istiod against it (plaintext xDS, no CA, no webhooks; settings upstream Envoy accepts).")
@click.option("--xds-port", type=int, default=istiod.DEFAULT_XDS_PORT, show_default=True,
              help="istiod's plaintext xDS port on 127.0.0.1 (0: any free port).")
def up_command(detach: bool, directory: Path | None, with_istio: bool, xds_port: int) -> None:
    """Start etcd and kube-apiserver, install Istio's and meshgen's CRDs, print the kubeconfig path.

    With --istio, istiod (pilot-discovery) runs against it too, outside any cluster: point an Envoy at its xDS
    address as a sidecar (see meshgen.testenv.sidecars for the bootstrap). Binaries come from
    $MESHGEN_TESTENV_BIN, $KUBEBUILDER_ASSETS or ~/.cache/meshgen (built once with Go).

    \b
    Examples:
      eval "$(meshgen testenv up --istio --detach)"
      meshgen testenv up --istio                # in the foreground; Ctrl-C stops everything
    """
    directory = directory or default_directory()
    state = controlplane.read_state(directory)
    if state is not None and controlplane.running(directory):
        if not detach:
            raise EnvironmentProblem(f"a control plane already runs from {directory}; "
                                       f"stop it with: meshgen testenv down --dir {directory}")
        click.echo(f"export KUBECONFIG={state['kubeconfig']}")
        return
    pilot = binaries.ensure_istio().pilot_discovery if with_istio else None
    if pilot is not None and xds_port and not processes.can_bind(xds_port):
        raise EnvironmentProblem(f"127.0.0.1:{xds_port} is in use (another istiod?); pass --xds-port 0 for any "
                                   "free port")
    plane = controlplane.ControlPlane(directory, binaries.ensure(), detached=detach)
    plane.start()
    server = None
    try:
        installing.install(Client.from_kubeconfig(str(plane.kubeconfig)), None)
        if pilot is not None:
            server = istiod.Istiod(directory / "istiod", pilot, plane.kubeconfig, detached=detach)
            if xds_port:
                server.xds_port = xds_port
            server.start()
            plane.save_state(pids={"istiod": server.pid}, istiod={"xds": server.xds_address,
                                                                  "debug": f"http://{server.http_address}"})
    except BaseException:
        if server is not None:
            server.stop()
        plane.stop()
        raise
    where = [f"kube-apiserver at {plane.url}", f"kubeconfig: {plane.kubeconfig}"]
    if server is not None:
        where += [f"istiod: xDS (plaintext gRPC) at {server.xds_address}, debug endpoints at "
                  f"http://{server.http_address}/debug/syncz, log {server.log}"]
    if detach:
        for line in where:
            click.echo(f"# {line}", err=True)
        click.echo("# stop it with: meshgen testenv down", err=True)
        click.echo(f"export KUBECONFIG={plane.kubeconfig}")
        return
    click.echo("\n".join([*where, f"  export KUBECONFIG={plane.kubeconfig}", "Press Ctrl-C to stop."]))
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Explicit handlers: a shell may start a background job with SIGINT ignored, and Ctrl-C must still stop it.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        while not stop.wait(1.0):
            if not (plane.apiserver and plane.apiserver.running()):
                raise EnvironmentProblem(f"kube-apiserver exited; see {plane.directory / 'kube-apiserver.log'}")
            if server is not None and not (server.process and server.process.running()):
                raise EnvironmentProblem(f"istiod exited; see {server.log}")
    finally:
        if server is not None:
            server.stop()
        plane.stop()
        click.echo("stopped", err=True)


@testenv_group.command("down")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The directory given to `up` (default: ~/.cache/meshgen/testenv).")
def down_command(directory: Path | None) -> None:
    """Stop a control plane (and its istiod) started with `meshgen testenv up --detach`."""
    directory = directory or default_directory()
    if controlplane.stop_detached(directory):
        click.echo(f"stopped the control plane in {directory}")
    else:
        click.echo(f"no control plane recorded in {directory}")


COMMANDS = (testenv_group,)

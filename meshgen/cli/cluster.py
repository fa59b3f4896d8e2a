"""Cluster commands: ``install``, ``apply``, ``diff``, ``delete``, ``get``, ``gc`` (kubectl conventions)."""

from __future__ import annotations

import contextlib
import datetime
import difflib
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click

from meshgen import compiler
from meshgen.cli import options
from meshgen.documents import dump_json_end, dump_json_items, dump_json_start, dump_yaml, locate_all
from meshgen.errors import ClusterError, ExitCode, InvalidInput, Problem
from meshgen.kube import admission, crds, diffing, discovery, indexes, installing, kinds, policies, statuses, storing
from meshgen.kube.client import Client, NotFound
from meshgen.kube.diffing import Action, Change
from meshgen.kube.kinds import Ref
from meshgen.kube.reconciling import DryRun, NewSpecs, Reconciler, Report
from meshgen.spec.loading import Specs
from meshgen.spec.models import DEFAULT_POLICY, MeshPolicy, RouteGroup, Sandbox

F = TypeVar("F", bound=Callable[..., Any])


def cluster_options(f: F) -> F:
    """``--kubeconfig``, ``--context``, ``-n`` and ``--policy``: shared by every cluster command."""
    f = click.option("-n", "--namespace", "namespaces", multiple=True, metavar="NS",
                     help="Read the baseline and meshgen's objects in these namespaces only (repeatable; default: "
                          "all namespaces). The first is also where a forkOf or virtual[].workload reference without "
                          "a namespace points (default: the kubeconfig context's namespace, else default), like "
                          "kubectl -n; meshgen apply stores the spec with it filled in.")(f)
    f = click.option("--context", default=None, help="The kubeconfig context to use.")(f)
    f = click.option("--kubeconfig", default=None, metavar="FILE", envvar="KUBECONFIG",
                     help="Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).")(f)
    return click.option(
        "--policy", "policy_path", metavar="FILE", default=None,
        help="Insist on this MeshPolicy: the command fails, showing the difference, unless it is exactly the one "
             "the cluster stores (cluster commands always compile with the stored policy; the platform sets it "
             "with meshgen install --policy).")(f)


def _expected_policy(policy_path: str | None) -> MeshPolicy | None:
    return compiler.read_policy(policy_path, Specs())[0] if policy_path is not None else None


def _reconciler(client: Client, namespaces: tuple[str, ...], policy_path: str | None,
                dry_run: DryRun = DryRun.NONE) -> Reconciler:
    expected = _expected_policy(policy_path)
    suffix = {DryRun.NONE: "", DryRun.CLIENT: " (dry run)", DryRun.SERVER: " (server dry run)"}[dry_run]
    return Reconciler(client, expected, namespaces, on_change=lambda c: click.echo(c.summary + suffix),
                      policy_source=policy_path or "--policy")


def _finish(report: Report) -> None:
    for warning in report.warnings:
        click.echo(warning.render(), err=True)
    _excluded(report)
    if not report.changes:
        click.echo("no changes")


def _excluded(report: Report) -> None:
    """One warning per stored spec left out (another tenant's, usually): it cannot block this command."""
    for exclusion in report.excluded:
        click.echo(f"warning: {exclusion.kind.value} {exclusion.name} is not reconciled ({exclusion.reason.value}): "
                   f"its routes are withheld; meshgen get {exclusion.kind.value.lower()} {exclusion.name} -o yaml "
                   "says why", err=True)


@click.command("install")
@click.option("--kubeconfig", default=None, metavar="FILE", envvar="KUBECONFIG", help="Path to the kubeconfig file.")
@click.option("--context", default=None, help="The kubeconfig context to use.")
@click.option("--print-only", is_flag=True, help="Print the CRDs, the MeshPolicy, the admission policies and the "
                                                 "RBAC instead of installing.")
@click.option("--print-rbac", is_flag=True, help="Only print the RBAC (no cluster access): the CI identity's, or "
                                                 "with --platform the platform's.")
@click.option("--platform", is_flag=True, help="The RBAC of the platform's identity (install, the MeshPolicy).")
@click.option("--group", default=None, help=f"The group the RBAC binds (default: {crds.CI_GROUP}, with --platform "
                                            f"{crds.PLATFORM_GROUP}).")
@click.option("--policy", "policy_path", metavar="FILE", default=None,
              help="The MeshPolicy to store in the cluster (default: keep the stored one; with none stored, the "
                   "built-in policy, same as policies/default.yaml).")
def install_command(kubeconfig: str | None, context: str | None, print_only: bool, print_rbac: bool,
                    platform: bool, group: str | None, policy_path: str | None) -> None:
    """Install meshgen on a cluster, as the platform: the CRDs (Sandbox, RouteGroup, MeshPolicy in meshgen.dev),
    the MeshPolicy every cluster command compiles with, a ValidatingAdmissionPolicy that makes the API server
    itself refuse a Sandbox breaking the policy's guardrails, and a MutatingAdmissionPolicy that unindexes a spec
    edited around meshgen (kubectl edit), so every command still finds it. Then every host is reconciled with the
    policy (a new routing header goes make-before-break).

    Run it again with another --policy to change the policy. Progress goes to stderr; stdout is the RBAC for CI
    jobs (a ClusterRole and ClusterRoleBinding for --group with exactly what apply/diff/delete/get/gc use:
    MeshPolicy read-only), ready for kubectl apply -f -. --print-rbac --platform prints the platform's instead.

    \b
    Examples:
      meshgen install --policy policies/prod.yaml | kubectl apply -f -
      meshgen install --print-rbac --platform --group platform-admins | kubectl apply -f -
      meshgen install --print-rbac --policy policies/prod.yaml --group ci-deployers | kubectl apply -f -
      meshgen install --print-only --policy policies/prod.yaml > meshgen-install.yaml
    """
    policy = _expected_policy(policy_path)
    subject = group or (crds.PLATFORM_GROUP if platform else crds.CI_GROUP)
    rbac = crds.rbac(policy or DEFAULT_POLICY, subject, platform)
    if print_rbac:
        click.echo(dump_yaml(rbac), nl=False)
        return
    if print_only:
        chosen = policy or DEFAULT_POLICY
        stored = {**policies.document(chosen), "metadata": {"name": chosen.metadata.name}}
        click.echo(dump_yaml([*crds.definitions(), stored, *admission.objects(chosen),
                                     *admission.index_objects(), *rbac]), nl=False)
        return
    report = installing.install(Client.from_kubeconfig(kubeconfig, context), policy,
                                on_line=lambda line: click.echo(line, err=True))
    for warning in report.warnings:
        click.echo(warning.render(), err=True)
    _excluded(report)
    click.echo(dump_yaml(rbac), nl=False)


def _read(filenames: tuple[str, ...], client: Client, namespaces: tuple[str, ...]) -> NewSpecs:
    """The specs to apply, workload references without a namespace given kubectl's default: the first ``-n``,
    else the kubeconfig context's namespace. A MeshPolicy among them is an error: on a cluster the policy is the
    platform's."""
    default = namespaces[0] if namespaces else client.namespace
    specs, documents, texts = compiler.read_spec_documents(filenames, namespace=default)
    if specs.policies:
        raise locate_all(InvalidInput(Problem(
            origin.at("kind") if (origin := specs.origin("MeshPolicy", p.metadata.name)) else None,
            f"MeshPolicy {p.metadata.name} cannot be applied with -f: the cluster's policy is the one the platform "
            "stored, and every cluster command compiles with it",
            "remove it from the specs; the platform changes the policy with meshgen install --policy FILE")
            for p in specs.policies), texts)
    return NewSpecs(specs, tuple(d.body for d in documents), texts)


@click.command("apply")
@options.spec_files()
@cluster_options
@click.option("--dry-run", type=click.Choice([d.value for d in DryRun]), default="none", show_default=True,
              help="client: compute and print, write nothing; server: send every write with dryRun=All.")
def apply_command(filenames: tuple[str, ...], kubeconfig: str | None, context: str | None,
                  namespaces: tuple[str, ...], policy_path: str | None, dry_run: str) -> None:
    """Store sandboxes/route groups in the cluster and reconcile every host they touch.

    Everything is validated and compiled (over all stored sandboxes and the cluster's baseline, with the
    cluster's MeshPolicy) and sent to the API server as a dry run before the first write; invalid input, or
    anything the API server would refuse, exits 2 with nothing written. Changes are written make-before-break
    as JSON patches guarded by resourceVersion. One line is printed per changed object. A stored sandbox that
    cannot be reconciled (another tenant's, say) is left out with a warning and never fails this command.

    \b
    Examples:
      meshgen apply -f pr-1234.yaml
      meshgen apply -f sandboxes/ --dry-run=server
      meshgen apply -f pr-1234.yaml --context staging --policy policies/signadot-compat.yaml
      meshgen apply -f pr-1234.yaml -n shop     # forkOf without a namespace means shop; reads only shop
    """
    client = Client.from_kubeconfig(kubeconfig, context)
    new = _read(filenames, client, namespaces)
    mode = DryRun(dry_run)
    report = _reconciler(client, namespaces, policy_path, mode).apply(new, mode)
    _finish(report)


@click.command("diff")
@options.spec_files()
@cluster_options
@click.option("--server", is_flag=True, help="Also send each change as a server-side dry run, to catch schema "
                                             "and admission errors.")
@click.option("-o", "--output", type=click.Choice(["diff", "json"]), default="diff", show_default=True)
def diff_command(filenames: tuple[str, ...], kubeconfig: str | None, context: str | None,
                 namespaces: tuple[str, ...], policy_path: str | None, server: bool, output: str) -> ExitCode:
    """Show what apply would change: a unified diff per object (coloured on a terminal), or JSON.

    Exit code: 0 no changes, 1 changes, 2 error (like kubectl diff).

    \b
    Examples:
      meshgen diff -f pr-1234.yaml
      meshgen diff -f sandboxes/ --server -o json | jq '.[].name'
    """
    client = Client.from_kubeconfig(kubeconfig, context)
    new = _read(filenames, client, namespaces)
    reconciler = _reconciler(client, namespaces, policy_path)
    reconciler.on_change = lambda change: None
    report = reconciler.apply(new, DryRun.SERVER if server else DryRun.CLIENT)
    for warning in report.warnings:
        click.echo(warning.render(), err=True)
    if output == "json":
        click.echo(json.dumps([describe(c) for c in report.changes], indent=2, sort_keys=True))
    else:
        colour = sys.stdout.isatty()
        for change in report.changes:
            click.echo(unified(change, colour), nl=False)
    return ExitCode.CHANGES if report.changes else ExitCode.OK


def describe(change: Change) -> dict[str, Any]:
    """A change for machines: action, object, and the JSON patch for an update."""
    out: dict[str, Any] = {"action": change.action.value, "apiVersion": change.ref.api.api_version,
                           "kind": change.ref.kind, "namespace": change.ref.namespace or None,
                           "name": change.ref.name, "summary": change.summary}
    if change.action is Action.UPDATE:
        out["patch"] = change.operations()
    elif change.action is Action.CREATE:
        out["object"] = change.desired
    return out


def unified(change: Change, colour: bool) -> str:
    """A unified diff of one object's YAML, live -> after the change."""
    before_body = diffing.shown(change.live)
    before = dump_yaml([before_body]) if before_body is not None else ""
    after_body = diffing.shown(change.target())
    after = dump_yaml([after_body]) if after_body is not None else ""
    name = str(change.ref)
    lines = difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                 f"live/{name}", f"desired/{name}")
    out = []
    for raw in lines:
        line = raw if raw.endswith("\n") else raw + "\n"
        if colour and line.startswith(("+", "-")) and not line.startswith(("+++", "---")):
            line = click.style(line, fg="green" if line.startswith("+") else "red")
        elif colour and line.startswith("@@"):
            line = click.style(line, fg="cyan")
        out.append(line)
    return "".join(out)


@click.command("delete")
@click.argument("names", nargs=-1, required=True)
@click.option("--kind", type=click.Choice(["Sandbox", "RouteGroup"]), default="Sandbox", show_default=True)
@cluster_options
@click.option("--dry-run", type=click.Choice([d.value for d in DryRun]), default="none", show_default=True)
def delete_command(names: tuple[str, ...], kind: str, kubeconfig: str | None, context: str | None,
                   namespaces: tuple[str, ...], policy_path: str | None, dry_run: str) -> None:
    """Delete sandboxes (or route groups) and remove everything meshgen made for them.

    User VirtualServices get their own spec back exactly; forks are deleted after the routes to them.

    \b
    Examples:
      meshgen delete pr-1234
      meshgen delete --kind RouteGroup checkout-flow
    """
    mode = DryRun(dry_run)
    client = Client.from_kubeconfig(kubeconfig, context)
    _finish(_reconciler(client, namespaces, policy_path, dry_run=mode).delete(kind, names, mode))


@click.command("gc")
@cluster_options
@click.option("--dry-run", type=click.Choice([d.value for d in DryRun]), default="none", show_default=True)
def gc_command(kubeconfig: str | None, context: str | None, namespaces: tuple[str, ...],
               policy_path: str | None, dry_run: str) -> None:
    """Delete sandboxes past their TTL and reconcile the hosts they shared; also repair what an interrupted
    apply or delete left (specs not reconciled at their generation, objects of sandboxes no longer stored). Reads
    the store a page at a time.

    \b
    Examples:
      meshgen gc                      # e.g. from a CronJob every 10 minutes
      meshgen gc --dry-run=client     # which sandboxes have expired
    """
    mode = DryRun(dry_run)
    _finish(_reconciler(Client.from_kubeconfig(kubeconfig, context), namespaces, policy_path, dry_run=mode).gc(mode))


@click.command("get")
@click.argument("what", type=click.Choice(["sandboxes", "sandbox", "routegroups", "routegroup"]))
@click.argument("names", nargs=-1)
@click.option("--kubeconfig", default=None, metavar="FILE", envvar="KUBECONFIG", help="Path to the kubeconfig file.")
@click.option("--context", default=None, help="The kubeconfig context to use.")
@click.option("-o", "--output", type=click.Choice(["table", "yaml", "json"]), default="table", show_default=True)
def get_command(what: str, names: tuple[str, ...], kubeconfig: str | None, context: str | None, output: str) -> None:
    """List stored sandboxes or route groups, with their status: whether meshgen reconciled them, and if not,
    why (-o yaml|json show the whole status: routing key, hosts, objects, conditions). Reads the store a page at a
    time.

    \b
    Examples:
      meshgen get sandboxes
      meshgen get sandbox pr-1234 -o yaml
    """
    client = Client.from_kubeconfig(kubeconfig, context)
    kind = kinds.SANDBOX if what.startswith("sandbox") else kinds.ROUTE_GROUP
    try:
        stored = discovery.StoredSpecs((), (), "", client.list(kinds.MESH_POLICY).items)
    except NotFound as exc:
        raise ClusterError(f"{exc}; meshgen's CRDs are not installed in this cluster: run `meshgen install`") from exc
    pages = _named(client, kind, names) if names else (list(p.items) for p in client.pages(kind))
    now, first, shown = storing.now_utc(), True, 0
    if output == "json":
        click.echo(dump_json_start(), nl=False)
    for objects in pages:
        # The API server lists in name order: a page at a time, the output is the whole store's, sorted.
        objects.sort(key=lambda o: o["metadata"]["name"])
        if output == "yaml":
            click.echo(dump_yaml(objects), nl=False)
        elif output == "json":
            click.echo(dump_json_items(objects, first), nl=False)
        elif objects:
            click.echo(table(objects, stored, now, client, header=first), nl=False)
        first, shown = first and not objects, shown + len(objects)
    if output == "json":
        click.echo(dump_json_end(not shown), nl=False)
    elif output == "table" and not shown:
        click.echo("No resources found.")


def _named(client: Client, kind: kinds.Kind, names: tuple[str, ...]) -> Iterator[list[dict[str, Any]]]:
    """The stored specs of these names (one GET each; a name not stored is left out, as kubectl lists)."""
    found = []
    for name in sorted(set(names)):
        with contextlib.suppress(NotFound):
            found.append(client.get(Ref(kind.kind, "", name)))
    yield found


def _status(body: dict[str, Any]) -> tuple[str, str]:
    """STATUS and REASON: the Reconciled condition (Unknown until a command has written it)."""
    condition = statuses.reconciled(body)
    if condition is None:
        return "Unknown", ""
    return ("Reconciled" if condition.get("status") == "True" else "Failed"), str(condition.get("reason") or "")


def table(objects: list[dict[str, Any]], stored: discovery.StoredSpecs, now: datetime.datetime, client: Client,
          header: bool = True) -> str:
    """kubectl-like columns: NAME, ROUTING KEY, STATUS, REASON, then FORKS, AGE, EXPIRES (sandboxes) or
    SANDBOXES, AGE (route groups). Any stored object gets a row, whatever it holds. ``stored`` holds the
    MeshPolicy (for the TTL limit); a route group's members are listed by its label selectors (a page of groups
    costs a LIST per group, never the whole store)."""
    if not objects:
        return "No resources found.\n"
    rows: list[tuple[str, ...]] = []
    is_sandbox = objects[0]["kind"] == "Sandbox"
    columns = ("NAME", "ROUTING KEY", "STATUS", "REASON", "FORKS", "AGE", "EXPIRES") if is_sandbox else \
        ("NAME", "ROUTING KEY", "STATUS", "REASON", "SANDBOXES", "AGE")
    try:
        policy = policies.stored_policy(stored)
    except ClusterError:
        policy = None
    limit = policy.spec.guardrails.max_ttl_seconds if policy is not None else None
    for body in objects:
        meta = body["metadata"]
        age = _age(now, storing.parse_timestamp(meta.get("creationTimestamp")))
        key = indexes.routing_key(body)
        status = _status(body)
        try:
            model: Sandbox | RouteGroup = (Sandbox if is_sandbox else RouteGroup).model_validate(
                discovery.spec_body(body))
        except ValueError:
            rows.append((meta["name"], key, *status, "<invalid>", age, "") if is_sandbox else
                        (meta["name"], key, *status, "<invalid>", age))
            continue
        if isinstance(model, Sandbox):
            forks = ",".join(f"{f.fork_of.namespace}/{f.fork_of.name}" for f in model.spec.forks) or "<none>"
            end = storing.expires_at(body, limit)
            expires = "<none>" if end is None else ("expired" if end <= now else f"in {_age(end, now)}")
            rows.append((model.name, model.routing_key, *status, forks, age, expires))
        else:
            members = len(_members(client, body, model))
            rows.append((model.name, model.routing_key, *status, str(members), age))
    widths = [max(len(r[i]) for r in (columns, *rows)) for i in range(len(columns))]
    return "".join("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n"
                   for r in ((columns, *rows) if header else rows))


def _members(client: Client, body: dict[str, Any], model: RouteGroup) -> set[str]:
    """The stored sandboxes a route group matches, found by its label selectors (:mod:`meshgen.kube.indexes`)."""
    found: set[str] = set()
    for selector in indexes.member_selectors(body):
        found.update(s["metadata"]["name"] for s in client.list(kinds.SANDBOX, label_selector=selector).items
                     if model.spec.match.matches(indexes.user_labels(s["metadata"].get("labels"))))
    return found


def _age(now: datetime.datetime, then: datetime.datetime | None) -> str:
    """kubectl's short durations: 45s, 12m, 3h4m, 2d5h."""
    if then is None:
        return "<unknown>"
    seconds = max(0, int((now - then).total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        hours, minutes = divmod(seconds // 60, 60)
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(seconds // 3600, 24)
    return f"{days}d{hours}h" if hours else f"{days}d"


COMMANDS = (install_command, apply_command, diff_command, delete_command, get_command, gc_command)

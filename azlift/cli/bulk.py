"""`azlift bulk`: many VMs' disks from one manifest, on Dask, resumable, with a report.

Parse, call ``azlift.bulk``, render. Progress is one tqdm bar on stderr (a terminal only,
not with --quiet) fed by the coordinator's callbacks; without a terminal each finished or
failed VM is one line. ``--json`` prints one document on stdout.
"""
from __future__ import annotations

import ipaddress
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from .. import exit_codes
from ..bulk import errors as bulk_errors
from ..bulk.engine import LOOPBACK_ANY_PORT
from .common import STATE, JsonOption, QuietOption, emit_json, say, warn

app = typer.Typer(
    help=("Run many VMs' disks from a manifest: check, upload, register; resumable, with a "
          "report.\n\n"
          "Examples:\n\n"
          "  azlift bulk check plan.toml\n\n"
          "  azlift bulk run plan.toml --dry-run\n\n"
          "  azlift bulk run plan.toml --json > report.json\n\n"
          "  azlift bulk run plan.toml --retry-failed\n\n"
          "  azlift bulk scheduler --tls-ca-file ca.pem --tls-cert s.pem --tls-key s.key "
          "--host 0.0.0.0\n\n"
          "  azlift bulk worker tls://coordinator:8786 --source hv01=2"),
    no_args_is_help=True, add_completion=False)

ManifestArg = Annotated[Path, typer.Argument(metavar="MANIFEST", help="The TOML manifest "
                                             "(schema azlift.bulk/1).", show_default=False)]
SchedulerOption = Annotated[str | None, typer.Option(
    "--scheduler", help="Run on the Dask scheduler at this address (tls://host:8786) instead "
    "of an embedded cluster.", show_default=False)]
StateOption = Annotated[Path | None, typer.Option(
    "--state", help="The run's state file (default: in azlift's state directory, named "
    "after the manifest).", show_default=False)]
WaitOption = Annotated[float, typer.Option(
    "--wait-for-workers", min=0, help="Seconds to wait for a worker of each source before "
    "its VMs fail.")]
TlsCaOption = Annotated[Path | None, typer.Option("--tls-ca-file", help="CA that signed the "
                                                  "cluster's certificates.", show_default=False)]
TlsCertOption = Annotated[Path | None, typer.Option("--tls-cert", help="This process's TLS "
                                                    "certificate (PEM).", show_default=False)]
TlsKeyOption = Annotated[Path | None, typer.Option("--tls-key", help="This process's TLS "
                                                   "private key (PEM).", show_default=False)]


# ---- shared pieces ---------------------------------------------------------------------------

def _load(path: Path) -> Any:
    from ..bulk import load_manifest

    try:
        return load_manifest(path)
    except bulk_errors.ManifestError as error:
        if len(error.problems) > 1:
            for problem in error.problems:
                say(f"azlift: {problem}")
        raise


def _security(ca: Path | None, cert: Path | None, key: Path | None) -> Any:
    if not (ca or cert or key):
        return None
    if not (ca and cert and key):
        raise typer.BadParameter("--tls-ca-file, --tls-cert and --tls-key go together")
    from distributed.security import Security

    return Security(tls_ca_file=str(ca), tls_client_cert=str(cert), tls_client_key=str(key),
                    require_encryption=True)


def _engine(manifest: Any, run_id: str, scheduler: str | None, security: Any,
            notify: Any, processes: bool = False) -> Any:
    from ..bulk import DaskEngine, source_resources
    from ..bulk.runner import embedded_resources

    slots = int(sum(source_resources(manifest).values()))
    return DaskEngine(run_id, address=scheduler, threads=slots + 4, processes=processes,
                      resources=embedded_resources(manifest), on_event=notify,
                      security=security, no_workers_timeout=None)


def _store(manifest_path: Path, state: Path | None) -> Any:
    from ..bulk import StateStore, default_state_path

    return StateStore(state or default_state_path(manifest_path))


def _terminal(quiet: bool) -> bool:
    if quiet or STATE.quiet:
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """Renders the coordinator's callbacks: one bar on a terminal, else a line per VM."""

    def __init__(self, enabled: bool, lines: bool = True) -> None:
        self.enabled = enabled
        self.lines = lines and not enabled
        self._lock = threading.Lock()
        self._disks: dict[tuple[str, str], tuple[int, int]] = {}
        self.done = self.failed = 0
        self.bar: Any = None

    def __call__(self, message: dict[str, Any]) -> None:
        with self._lock:
            self._handle(message)

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("kind")
        if kind == "progress":
            self._disks[(message["vm"], message["disk"])] = (message["done"], message["total"])
        elif kind == "vm":
            if message["status"] == "done":
                self.done += 1
            else:
                self.failed += 1
            if self.lines or (self.bar is None and not STATE.quiet and message["status"] != "done"):
                error = message.get("error") or {}
                detail = f" ({error.get('code')}: {error.get('message')})" if error else ""
                say(f"azlift: {message['vm']}: {message['status']}{detail}")
        elif kind == "prep" and self.lines:
            say(f"azlift: {message['vm']}: generalizing {message['host']}")
        elif kind == "waiting" and self.lines:
            say(f"azlift: waiting for a worker of source {message['sources']}")
        elif kind == "cancelling":
            say("azlift: interrupted: stopping running uploads (state is kept)")
        if self.enabled:
            self._draw()

    def _draw(self) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=0, unit="B", unit_scale=True, unit_divisor=1024,
                            desc="bulk", file=sys.stderr, dynamic_ncols=True, leave=False)
        total = sum(t for _, t in self._disks.values())
        done = sum(d for d, _ in self._disks.values())
        self.bar.total = total
        self.bar.n = done
        active = [f"{vm}/{disk}" for (vm, disk), (d, t) in self._disks.items() if d < t]
        self.bar.set_postfix_str(f"done {self.done} failed {self.failed} "
                                 f"active {' '.join(active[:4])}", refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ---- commands --------------------------------------------------------------------------------

@app.command("check")
def check(
    manifest: ManifestArg,
    scheduler: SchedulerOption = None,
    wait_for_workers: WaitOption = 60.0,
    tls_ca_file: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Read and judge every disk in parallel; upload nothing. Exit 0 all ready, 1 if not."""
    from ..bulk import check_all, new_run_id

    plan = _load(manifest)
    run_id = new_run_id()
    engine = _engine(plan, run_id, scheduler, _security(tls_ca_file, tls_cert, tls_key), None)
    try:
        results = check_all(plan, engine, run_id, wait_for_workers=wait_for_workers)
    finally:
        engine.close()
    ready = all(result["ok"] for result in results)
    if STATE.json:
        emit_json({"schema": "azlift.bulk.check/1", "manifest": str(manifest), "ready": ready,
                   "disks": results})
    else:
        for result in results:
            verdict = "ready" if result["ok"] else "NOT READY"
            say(f"{result['vm']}/{result['disk']}: {verdict}  {result.get('path', '')}",
                err=False)
            if result.get("error"):
                say(f"    {result['error']['code']}: {result['error']['message']}", err=False)
        count = sum(not r["ok"] for r in results)
        say(f"{len(results)} disk(s) checked, {count} not ready" if count else
            f"{len(results)} disk(s) checked, all ready", err=False)
    if not ready:
        raise typer.Exit(exit_codes.NOT_READY)


@app.command("run")
def run(
    manifest: ManifestArg,
    scheduler: SchedulerOption = None,
    state: StateOption = None,
    retry_failed: Annotated[bool, typer.Option(
        "--retry-failed", help="Also run the VMs that failed before.")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the plan per VM and each guest's prep plan; read no disk, "
        "call no Azure API, change no guest.")] = False,
    yes: Annotated[bool, typer.Option(
        "--yes", "-y", help="Generalize the manifest's guests without asking (you have "
        "backups).")] = False,
    processes: Annotated[bool, typer.Option(
        "--processes", help="Embedded cluster: run tasks in a worker process instead of "
        "threads of this process.")] = False,
    wait_for_workers: WaitOption = 60.0,
    tls_ca_file: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Prepare, check, upload and register every VM not done yet. Exit 0 all done, 1 if any
    failed; a run that would generalize guests needs --yes or a yes on the terminal (exit 5)."""
    from ..bulk import Coordinator, build_report, default_state_path, new_run_id
    from .bulk_prep import confirm_generalizing, pending_guests

    plan = _load(manifest)
    guests = pending_guests(plan, state or default_state_path(manifest), retry_failed)
    if not dry_run:
        confirm_generalizing(guests, yes)
    store = _store(manifest, state)
    try:
        if dry_run:
            _print_plan(plan, store, guests, lambda: _engine(
                plan, "dry-run", scheduler, _security(tls_ca_file, tls_cert, tls_key), None))
            return
        run_id = new_run_id()
        progress = Progress(_terminal(quiet), lines=not quiet)
        engine = _engine(plan, run_id, scheduler, _security(tls_ca_file, tls_cert, tls_key),
                         progress, processes)
        try:
            Coordinator(plan, store, engine, run_id, notify=progress,
                        wait_for_workers=wait_for_workers).run(retry_failed=retry_failed)
        finally:
            progress.close()
            engine.close()
        report = build_report(store, str(manifest))
    finally:
        store.close()
    if STATE.json:
        emit_json(report)
    else:
        _print_totals(report)
    if report["totals"]["failed"] or report["totals"]["pending"]:
        raise typer.Exit(exit_codes.NOT_READY)


def _print_plan(plan: Any, store: Any, guests: list[Any], engine_factory: Any) -> None:
    from ..bulk import new_run_id
    from ..bulk import plan as make_plan
    from .bulk_prep import guest_plans, not_ready, say_plans, with_guest_plans

    rows = {row.id: row for row in store.vms()}
    entries = make_plan(plan, rows, lambda vm: store.prep_finished(vm.id,
                                                                   vm.prep.identity_key()))
    results = guest_plans(plan, guests, engine_factory, new_run_id())
    blocked = not_ready(results)
    if STATE.json:
        emit_json({"schema": "azlift.bulk.plan/1", "manifest": plan.path,
                   "vms": with_guest_plans(entries, results)})
        if blocked:
            raise typer.Exit(exit_codes.NOT_READY)
        return
    say_plans(results)
    for entry in entries:
        say(f"{entry['id']} (source {entry['source']}): {entry['action']}", err=False)
        for disk in entry["disks"]:
            where = "os" if disk["role"] == "os" else f"lun {disk['lun']}"
            say(f"    {where}: {disk['path']} -> {disk['target']}", err=False)
        if entry.get("prep"):
            prep = entry["prep"]
            say(f"    prep {prep['os']} guest {prep['host']}: {prep['action']}, then settle "
                f"{prep['settle_seconds']:g} s (at most {prep['settle_timeout']:g} s)", err=False)
        if entry["register"] != "none":
            say(f"    register {entry['register']} {entry['resource']} in "
                f"{entry['resource_group']} ({entry['location']})", err=False)
    say("dry run: no disk was read, nothing was sent, no guest was changed", err=True)
    if blocked:
        warn(f"not ready for prep: {', '.join(blocked)}")
        raise typer.Exit(exit_codes.NOT_READY)


def _print_totals(report: dict[str, Any]) -> None:
    totals = report["totals"]
    for vm in report["vms"]:
        if vm["status"] == "failed":
            say(f"  FAILED {vm['id']}: {vm['error']['code']}: {vm['error']['message']}",
                err=False)
    say(f"{totals['done']} done, {totals['failed']} failed, {totals['pending']} pending of "
        f"{totals['vms']} VMs; {totals['bytes_sent']} bytes sent, "
        f"{totals['zero_bytes_skipped']} zero bytes skipped, {totals['throttled']} throttled "
        "requests", err=False)


@app.command("status")
def status(manifest: ManifestArg, state: StateOption = None,
           json_output: JsonOption = False) -> None:
    """Where each VM stands, from the state file (no cluster needed)."""
    from ..bulk import build_report

    plan = _load(manifest)
    store = _store(manifest, state)
    try:
        store.sync(plan)
        report = build_report(store, str(manifest))
    finally:
        store.close()
    if STATE.json:
        emit_json(report)
        return
    for vm in report["vms"]:
        error = f"  {vm['error']['code']}: {vm['error']['message']}" if vm["error"] else ""
        say(f"{vm['id']:<24} {vm['status']:<8} {vm['phase']:<9} attempts {vm['attempts']}"
            f"{error}", err=False)
    _print_totals(report)


@app.command("report")
def report(
    manifest: ManifestArg,
    state: StateOption = None,
    csv_output: Annotated[bool, typer.Option("--csv", help="One CSV row per disk on stdout.")] = False,
    json_output: JsonOption = False,
) -> None:
    """The run report (schema azlift.bulk.report/1) as JSON (default) or CSV."""
    from ..bulk import build_report, report_csv

    plan = _load(manifest)
    store = _store(manifest, state)
    try:
        store.sync(plan)
        document = build_report(store, str(manifest))
    finally:
        store.close()
    if csv_output:
        sys.stdout.write(report_csv(document))
        return
    emit_json(document)


@app.command("import")
def import_csv(
    table: Annotated[Path, typer.Argument(metavar="DISKS_CSV", help="One row per disk: vm, "
                                          "source, path, role or lun, optional overrides.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Manifest to write.")],
    destination: Annotated[str | None, typer.Option(
        "--destination", help="[defaults] destination: a container URL.")] = None,
    emulator: Annotated[bool, typer.Option("--emulator", help="[defaults] emulator = true.")] = False,
    register: Annotated[str | None, typer.Option("--register", help="[defaults] register.")] = None,
    resource_group: Annotated[str | None, typer.Option("--resource-group", "-g")] = None,
    location: Annotated[str | None, typer.Option("--location", "-l")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite OUTPUT.")] = False,
) -> None:
    """Write a manifest from a spreadsheet export (CSV), validated like any manifest."""
    from ..bulk.importer import import_table

    defaults: dict[str, Any] = {key: value for key, value in (
        ("destination", destination), ("register", register),
        ("resource_group", resource_group), ("location", location)) if value is not None}
    if emulator:
        defaults["emulator"] = True
    manifest = import_table(table, output, defaults=defaults, force=force)
    say(f"wrote {output}: {len(manifest.vms)} VMs, "
        f"{sum(len(vm.disks) for vm in manifest.vms)} disks, "
        f"{len(manifest.sources)} sources", err=False)


# ---- the cluster ----------------------------------------------------------------------------

def _loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command("scheduler")
def scheduler(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535,
                                      help="Port (0: any free one).")] = 8786,
    scheduler_file: Annotated[Path | None, typer.Option(
        "--scheduler-file", help="Write the scheduler's address to this JSON file.")] = None,
    tls_ca_file: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
    insecure: Annotated[bool, typer.Option(
        "--insecure", help="Listen beyond loopback without TLS (anyone who reaches the port "
        "can run code on the workers).")] = False,
    no_workers_timeout: Annotated[float, typer.Option(
        "--no-workers-timeout", min=1, help="Seconds a task waits for a worker that can run "
        "it (its source) before it fails.")] = 300.0,
) -> None:
    """Start the Dask scheduler of a scale-out run (a thin wrapper over `dask scheduler`)."""
    tls = bool(tls_ca_file or tls_cert or tls_key)
    if tls and not (tls_ca_file and tls_cert and tls_key):
        raise typer.BadParameter("--tls-ca-file, --tls-cert and --tls-key go together")
    if not tls and not _loopback(host):
        if not insecure:
            raise bulk_errors.InsecureListenError(
                f"refusing to listen on {host} without TLS: give --tls-ca-file, --tls-cert "
                "and --tls-key, or --insecure on a network you trust")
        warn(f"listening on {host} WITHOUT TLS: anyone who reaches port {port} can run code "
             "on every worker")
    _dask_cli("scheduler", _scheduler_args(host, port, scheduler_file, tls_ca_file, tls_cert,
                                           tls_key), no_workers_timeout)


def _scheduler_args(host: str, port: int, scheduler_file: Path | None, ca: Path | None,
                    cert: Path | None, key: Path | None) -> list[str]:
    args = ["--host", host, "--port", str(port), "--no-dashboard",
            "--dashboard-address", LOOPBACK_ANY_PORT]
    if scheduler_file:
        args += ["--scheduler-file", str(scheduler_file)]
    if ca:
        args = ["--protocol", "tls", *args, "--tls-ca-file", str(ca), "--tls-cert", str(cert),
                "--tls-key", str(key)]
    return args


def parse_source(text: str, option: str = "--source") -> tuple[str, int]:
    """``NAME`` or ``NAME=N`` (N disks of that source, or N guests, at once on this worker)."""
    from ..bulk.manifest import NAME_PATTERN

    name, sep, count = text.partition("=")
    if not NAME_PATTERN.match(name) or (sep and not count.isdigit()) or (sep and int(count) < 1):
        raise typer.BadParameter(f"{option} expects NAME or NAME=N (N ≥ 1), found {text!r}")
    return name, int(count) if sep else 2


@app.command("worker")
def worker(
    address: Annotated[str, typer.Argument(metavar="SCHEDULER_ADDRESS",
                                           help="tls://host:8786 (or tcp:// on loopback).")],
    source: Annotated[list[str] | None, typer.Option(
        "--source", help="A source this machine can read, NAME[=N disks at once]; repeat.")]
    = None,
    reach: Annotated[list[str] | None, typer.Option(
        "--reach", help="Guests this machine can reach, NAME[=N generalized at once] (a VM's "
        "reach key); repeat. VMs without a reach are prepared by the coordinator.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Worker name (shown in the "
                                             "report); default: the host name.")] = None,
    threads: Annotated[int | None, typer.Option(
        "--nthreads", min=1, help="Task threads (default: the sum of the source slots + 2).")] = None,
    local_directory: Annotated[Path | None, typer.Option(
        "--local-directory", help="Dask's scratch directory.")] = None,
    tls_ca_file: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """Serve sources to a scale-out run (a thin wrapper over `dask worker`).

    Credentials come from this machine's environment (AZURE_STORAGE_* or a sign-in), never
    from the coordinator.
    """
    import socket

    from ..bulk.prep_phase import PROBE_SLOTS, probe_resource
    from ..bulk.prep_spec import reach_resource

    sources = [parse_source(text) for text in source or ()]
    reaches = [parse_source(text, "--reach") for text in reach or ()]
    if not sources and not reaches:
        raise typer.BadParameter("give at least one --source or --reach")
    resources = ",".join([*(f"src-{name}={count},{probe_resource(name)}={PROBE_SLOTS}"
                            for name, count in sources),
                          *(f"{reach_resource(name)}={count}" for name, count in reaches)])
    slots = sum(count for _, count in sources) + sum(count for _, count in reaches)
    args = [address, "--name", name or socket.gethostname(), "--nthreads",
            str(threads or slots + 2), "--nworkers", "1", "--no-nanny", "--resources", resources,
            "--no-dashboard", "--dashboard-address", LOOPBACK_ANY_PORT]
    if local_directory:
        args += ["--local-directory", str(local_directory)]
    if tls_ca_file or tls_cert or tls_key:
        if not (tls_ca_file and tls_cert and tls_key):
            raise typer.BadParameter("--tls-ca-file, --tls-cert and --tls-key go together")
        args += ["--tls-ca-file", str(tls_ca_file), "--tls-cert", str(tls_cert),
                 "--tls-key", str(tls_key)]
    _dask_cli("worker", args, None)


def _dask_cli(which: str, args: list[str], no_workers_timeout: float | None) -> None:
    """Run Dask's own scheduler/worker command in this process with azlift's settings."""
    import dask

    from ..bulk.engine import dask_config

    dask.config.set(dask_config(no_workers_timeout))
    if which == "scheduler":
        from distributed.cli.dask_scheduler import main as command
    else:
        from distributed.cli.dask_worker import main as command
    try:
        command.main(args=args, prog_name=f"azlift bulk {which}", standalone_mode=False)
    except KeyboardInterrupt:
        raise typer.Exit(exit_codes.INTERRUPTED) from None

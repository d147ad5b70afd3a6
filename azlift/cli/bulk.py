"""`azlift bulk`: many VMs' disks from one manifest, on Dask, resumable, with a report.

Parse, call ``azlift.bulk``, render. The coordinator's commands live here; the scheduler
and worker commands in ``bulk_cluster``, the progress display in ``bulk_progress``.
``--json`` prints one document on stdout.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from .. import exit_codes
from ..bulk import errors as bulk_errors
from . import bulk_cluster
from .bulk_options import (ManifestArg, SchedulerOption, StateOption, TlsCaOption, TlsCertOption,
                           TlsKeyOption, WaitOption)
from .bulk_progress import Progress
from .common import STATE, JsonOption, QuietOption, emit_json, progress_on_terminal, say, warn

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


def _engine(manifest: Any, run_id: str, scheduler: str | None, tls_files: tuple[Any, Any, Any],
            notify: Any, processes: bool = False) -> Any:
    """The embedded cluster, or the scheduler at ``scheduler`` (with TLS: after a handshake
    of our own, so a refused certificate is one line instead of a long wait)."""
    from ..bulk import DaskEngine, source_resources
    from ..bulk.runner import embedded_resources
    from ..bulk.tls import TlsFiles, check_address, probe

    tls = TlsFiles.from_options(*tls_files)
    security = None
    if scheduler is not None:
        scheduler = check_address(scheduler, tls)
        if tls is not None:
            probe(scheduler, tls)
            security = tls.security()
    elif tls is not None:
        raise bulk_errors.TlsConfigError("--tls-ca-file, --tls-cert and --tls-key are for a "
                                         "--scheduler; the embedded cluster needs none")
    slots = int(sum(source_resources(manifest).values()))
    return DaskEngine(run_id, address=scheduler, threads=slots + 4, processes=processes,
                      resources=embedded_resources(manifest), on_event=notify,
                      security=security, no_workers_timeout=None)


def _store(manifest_path: Path, state: Path | None) -> Any:
    from ..bulk import StateStore, default_state_path

    return StateStore(state or default_state_path(manifest_path))


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
    engine = _engine(plan, run_id, scheduler, (tls_ca_file, tls_cert, tls_key), None)
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
                plan, "dry-run", scheduler, (tls_ca_file, tls_cert, tls_key), None))
            return
        with store.only_run():
            run_id = new_run_id()
            progress = Progress(progress_on_terminal(quiet), lines=not quiet)
            engine = _engine(plan, run_id, scheduler, (tls_ca_file, tls_cert, tls_key),
                             progress, processes)
            try:
                Coordinator(plan, store, engine, run_id, notify=progress,
                            wait_for_workers=wait_for_workers).run(retry_failed=retry_failed)
            finally:
                progress.close()
                engine.close()
            report = build_report(store, str(manifest), {vm.id for vm in plan.vms})
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
        if not store.run_in_progress():
            store.sync(plan)
        report = build_report(store, str(manifest), {vm.id for vm in plan.vms})
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
        if not store.run_in_progress():
            store.sync(plan)
        document = build_report(store, str(manifest), {vm.id for vm in plan.vms})
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


app.command("scheduler")(bulk_cluster.scheduler)
app.command("worker")(bulk_cluster.worker)

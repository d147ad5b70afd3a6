"""`azlift lift`: one VM all the way, guest → generalized → checked → uploaded → registered.

The options become a one-VM manifest (validated like any manifest, its key paths shown as
the options they came from) that runs through the bulk engine, embedded: the same phases,
state, resume and report as `azlift bulk run`. Parse, build, call, render.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer

from .. import exit_codes
from .common import STATE, JsonOption, QuietOption, YesOption, emit_json, say

HOST_HELP = "Generalize this {} guest first (name or address)."
EXIT_BY_ERROR = {"not_ready": exit_codes.NOT_READY, "io_error": exit_codes.BAD_INPUT,
                 "not_confirmed": exit_codes.REFUSED}
SOURCE = "local"


def lift(
    disk: Annotated[list[Path], typer.Option(
        "--disk", help="A disk file; the first is the OS disk, each further one a data disk "
        "(give its --lun). Repeat.", show_default=False)],
    linux: Annotated[str | None, typer.Option("--linux", metavar="HOST",
                                              help=HOST_HELP.format("Linux"))] = None,
    windows: Annotated[str | None, typer.Option("--windows", metavar="HOST",
                                                help=HOST_HELP.format("Windows"))] = None,
    no_prep: Annotated[bool, typer.Option(
        "--no-prep", help="The disks are generalized already: start at check.")] = False,
    lun: Annotated[list[int] | None, typer.Option(
        "--lun", min=0, max=63, help="LUN of each data disk, in --disk order. Repeat.")] = None,
    destination: Annotated[str | None, typer.Option(
        "--destination", help="Container URL the disks are uploaded to (with --emulator: a "
        "container name).")] = None,
    emulator: Annotated[bool, typer.Option(
        "--emulator", help="Upload to the local Azurite storage emulator.")] = False,
    image: Annotated[str | None, typer.Option(
        "--image", metavar="NAME", help="Register a managed image of this name.")] = None,
    gallery: Annotated[str | None, typer.Option(
        "--gallery", help="Register a gallery image version in this gallery (with "
        "--gallery-image and --gallery-version).")] = None,
    gallery_image: Annotated[str | None, typer.Option("--gallery-image",
                                                      help="Image definition name.")] = None,
    gallery_version: Annotated[str | None, typer.Option(
        "--gallery-version", help="Version, MAJOR.MINOR.PATCH.")] = None,
    publisher: Annotated[str | None, typer.Option(
        "--publisher", help="To create a missing image definition (with --offer, --sku).")] = None,
    offer: Annotated[str | None, typer.Option("--offer")] = None,
    sku: Annotated[str | None, typer.Option("--sku")] = None,
    managed_disk: Annotated[bool, typer.Option(
        "--managed-disk", help="Register managed disks imported from the uploaded blobs "
        "(named NAME-os, NAME-lunN).")] = False,
    storage_account_id: Annotated[str | None, typer.Option(
        "--storage-account-id", help="Resource id of the storage account (gallery version, "
        "managed disk).")] = None,
    resource_group: Annotated[str | None, typer.Option("--resource-group", "-g",
                                                       help="Resource group.")] = None,
    location: Annotated[str | None, typer.Option("--location", "-l",
                                                 help="Azure region, e.g. westeurope.")] = None,
    subscription: Annotated[str | None, typer.Option(
        "--subscription", help="Subscription id (default: AZURE_SUBSCRIPTION_ID).")] = None,
    arm_endpoint: Annotated[str | None, typer.Option(
        "--arm-endpoint", help="ARM endpoint URL (Azure Stack Hub).")] = None,
    os_type: Annotated[str | None, typer.Option(
        "--os-type", help="linux or windows (default: the guest's, else the disk's).")] = None,
    hyper_v_generation: Annotated[str | None, typer.Option(
        "--hyper-v-generation", help="V1 or V2 (default: what the disk shows).")] = None,
    name: Annotated[str | None, typer.Option(
        "--name", help="The VM's id in the state and report, and the prefix of its blob "
                       "names (default: the image name, else the host).")] = None,
    port: Annotated[int | None, typer.Option("--port", min=1, max=65535,
                                             help="SSH or WinRM port.")] = None,
    user: Annotated[str | None, typer.Option(
        "--user", help="Login user (default: root for Linux, Administrator for Windows).")] = None,
    identity: Annotated[Path | None, typer.Option(
        "--identity", "-i", metavar="KEY_FILE", help="SSH private key file.")] = None,
    password_env: Annotated[str | None, typer.Option(
        "--password-env", metavar="VAR", help="The login password is in this environment "
        "variable (required for Windows).")] = None,
    sudo_password_env: Annotated[str | None, typer.Option(
        "--sudo-password-env", metavar="VAR", help="sudo password in this variable.")] = None,
    known_hosts: Annotated[Path | None, typer.Option(
        "--known-hosts", metavar="FILE", help="known_hosts file (default ~/.ssh/known_hosts).")]
    = None,
    transport: Annotated[str | None, typer.Option(
        "--transport", help="WinRM authentication: ntlm, kerberos, credssp or basic.")] = None,
    ca_cert: Annotated[Path | None, typer.Option(
        "--ca-cert", help="CA of the guest's WinRM certificate (PEM).")] = None,
    http: Annotated[bool, typer.Option("--http", help="WinRM over plain HTTP (5985).")] = False,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", min=0.1, help="Linux: per command and for the power-off (60); Windows: "
        "Sysprep (1800).")] = None,
    poll_interval: Annotated[float | None, typer.Option(
        "--poll-interval", min=0.05, help="Windows: seconds between image-state polls.")] = None,
    settle_seconds: Annotated[float | None, typer.Option(
        "--settle-seconds", min=0, help="The disk files must stay unchanged this long after "
        "the guest stops (30).")] = None,
    settle_timeout: Annotated[float | None, typer.Option(
        "--settle-timeout", min=1, help="...within this many seconds (600).")] = None,
    threads: Annotated[int | None, typer.Option("--threads", min=1, max=64,
                                                help="Put Page requests in flight per disk.")]
    = None,
    state: Annotated[Path | None, typer.Option(
        "--state", help="State file (default: in azlift's state directory, named after the VM; "
        "the same command again resumes).")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the guest's findings and plan and what would be uploaded and "
        "registered; change nothing.")] = False,
    yes: YesOption = False,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Take one VM all the way: generalize the guest, let its disk files settle, check,
    upload, verify and register them (a one-VM `azlift bulk run`, embedded).

    Exit 0 done; 1 the guest or a disk is not ready; 3 a disk cannot be read; 4 a remote
    or service error; 5 not confirmed (generalizing asks first; --yes).
    """
    host, os_name = _guest(linux, windows, no_prep)
    register = _register(image, gallery, managed_disk)
    vm_id = name or _default_id(image or gallery_image, host, disk[0])
    prep = None
    if host is not None:
        prep = _drop_none({
            "os": os_name, "host": host, "port": port, "user": user,
            "identity": str(identity) if identity else None, "password_env": password_env,
            "sudo_password_env": sudo_password_env,
            "known_hosts": str(known_hosts) if known_hosts else None, "transport": transport,
            "ca_cert": str(ca_cert) if ca_cert else None, "http": http or None,
            "timeout": timeout, "poll_interval": poll_interval,
            "settle_seconds": settle_seconds, "settle_timeout": settle_timeout})
    vm = _drop_none({
        "id": vm_id, "source": SOURCE, "disk": _disks(disk, lun or []), "prep": prep,
        "destination": destination, "emulator": emulator or None, "register": register,
        "image_name": image, "gallery": gallery, "gallery_image": gallery_image,
        "gallery_version": gallery_version, "publisher": publisher, "offer": offer, "sku": sku,
        "storage_account_id": storage_account_id, "resource_group": resource_group,
        "location": location, "subscription": subscription, "arm_endpoint": arm_endpoint,
        "os_type": os_type, "hyper_v_generation": hyper_v_generation, "threads": threads})
    manifest = _manifest(vm, len(disk))
    run_lift(manifest, state or _state_path(vm_id), dry_run=dry_run, yes=yes, quiet=quiet)


# ---- options → one-VM manifest ----------------------------------------------------------

def _guest(linux: str | None, windows: str | None, no_prep: bool) -> tuple[str | None, str]:
    given = [flag for flag, value in (("--linux", linux), ("--windows", windows),
                                      ("--no-prep", no_prep)) if value]
    if len(given) != 1:
        raise typer.BadParameter("give exactly one of --linux HOST, --windows HOST or "
                                 f"--no-prep, found {', '.join(given) or 'none'}")
    host = linux or windows
    if host and host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, "linux" if linux else "windows"


def _register(image: str | None, gallery: str | None, managed_disk: bool) -> str:
    given = [kind for kind, value in (("image", image), ("gallery-version", gallery),
                                      ("disk", managed_disk)) if value]
    if len(given) != 1:
        raise typer.BadParameter("give exactly one of --image NAME, --gallery GALLERY or "
                                 "--managed-disk")
    return given[0]


def _default_id(preferred: str | None, host: str | None, first_disk: Path) -> str:
    text = preferred or host or first_disk.stem
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", text).strip("-._")[:63]
    return cleaned or "vm"


def _disks(paths: list[Path], luns: list[int]) -> list[dict[str, Any]]:
    if len(luns) != len(paths) - 1:
        raise typer.BadParameter(f"expected one --lun for each data disk (every --disk after "
                                 f"the first): {len(paths) - 1} data disk(s), found "
                                 f"{len(luns)} --lun")
    disks: list[dict[str, Any]] = [{"path": str(paths[0]), "role": "os"}]
    disks += [{"path": str(path), "lun": number} for path, number in zip(paths[1:], luns)]
    return disks


def _drop_none(table: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in table.items() if value is not None}


def _as_option(problem: str) -> str:
    """``lift: vm[0].prep.password_env: ...`` → ``--password-env: ...``."""
    def option(match: re.Match[str]) -> str:
        key = match.group(1).split(".")[-1]
        key = {"image_name": "image", "register": "image/--gallery/--managed-disk"}.get(key, key)
        return "--" + key.replace("_", "-")
    problem = problem.replace(" (here or in [defaults])", "")
    return re.sub(r"^lift: vm\[0\]\.((?:prep\.)?\w+)(?:\[\d+\]\.\w+)?", option, problem)


def _manifest(vm: dict[str, Any], disk_count: int) -> Any:
    from ..bulk import parse_manifest
    from ..bulk.errors import ManifestError, SecretInManifestError
    from ..bulk.manifest import SCHEMA

    document = {"schema": SCHEMA, "source": [{"name": SOURCE, "max_disks": disk_count}],
                "vm": [vm]}
    try:
        return parse_manifest(document, "lift", base_dir=Path.cwd())
    except ManifestError as error:
        problems = [_as_option(problem) for problem in error.problems]
        if len(problems) > 1:
            for problem in problems:
                say(f"azlift: {problem}")
        raise (SecretInManifestError if isinstance(error, SecretInManifestError)
               else ManifestError)(problems) from None


def _state_path(vm_id: str) -> Path:
    from azlift.upload.journal import state_dir

    return state_dir() / "lift" / f"{vm_id}.sqlite"


# ---- the run ---------------------------------------------------------------------------------

def run_lift(manifest: Any, state_path: Path, *, dry_run: bool, yes: bool, quiet: bool) -> None:
    """Confirm, then run the one-VM manifest on an embedded cluster; print its entry."""
    from ..bulk import Coordinator, DaskEngine, StateStore, build_report, new_run_id
    from ..bulk.runner import embedded_resources
    from .bulk_progress import Progress
    from .common import progress_on_terminal
    from .bulk_prep import confirm_generalizing, pending_guests

    guests = pending_guests(manifest, state_path, retry_failed=True)
    if dry_run:
        _dry_run(manifest, state_path, guests)
        return
    confirm_generalizing(guests, yes)
    store = StateStore(state_path)
    try:
        run_id = new_run_id()
        progress = Progress(progress_on_terminal(quiet), lines=not quiet)
        engine = DaskEngine(run_id, threads=len(manifest.vms[0].disks) + 4,
                            resources=embedded_resources(manifest), on_event=progress)
        try:
            Coordinator(manifest, store, engine, run_id, notify=progress,
                        wait_for_workers=0).run(retry_failed=True)
        finally:
            progress.close()
            engine.close()
        report = build_report(store, "lift")
    finally:
        store.close()
    [entry] = report["vms"]
    if STATE.json:
        emit_json(report)
    else:
        render_entry(entry)
    if entry["status"] != "done":
        error = entry["error"] or {}
        raise typer.Exit(EXIT_BY_ERROR.get(error.get("code", ""), exit_codes.REMOTE))


def _dry_run(manifest: Any, state_path: Path, guests: list[Any]) -> None:
    from ..bulk import StateStore, new_run_id
    from ..bulk import plan as make_plan
    from .bulk_prep import guest_plans, not_ready, say_plans, with_guest_plans

    store = StateStore(state_path) if state_path.exists() else None
    try:
        rows = {row.id: row for row in store.vms()} if store else {}
        entries = make_plan(manifest, rows, lambda vm: bool(
            store and store.prep_finished(vm.id, vm.prep.identity_key())))
    finally:
        if store is not None:
            store.close()
    results = guest_plans(manifest, guests, None, new_run_id())
    [entry] = with_guest_plans(entries, results)
    if STATE.json:
        emit_json({"schema": "azlift.lift.plan/1", "vm": entry})
    else:
        say_plans(results)
        for disk in entry["disks"]:
            where = "os" if disk["role"] == "os" else f"lun {disk['lun']}"
            say(f"{where}: {disk['path']} -> {disk['target']}", err=False)
        say(f"register {entry['register']} {entry['resource']} in {entry['resource_group']} "
            f"({entry['location']})", err=False)
        say("dry run: no disk was read, nothing was sent, no guest was changed")
    if not_ready(results):
        raise typer.Exit(exit_codes.NOT_READY)


def render_entry(entry: dict[str, Any]) -> None:
    """The report's entry for the VM, as text on stdout."""
    say(f"{entry['id']}: {entry['status']} (phases: {' → '.join(entry['phases']) or 'none'})",
        err=False)
    prep = entry.get("prep")
    if prep:
        say(f"  prep: {prep['status']} {prep.get('os') or ''} guest {prep.get('host') or ''}"
            + (f" ({prep['family']})" if prep.get("family") else ""), err=False)
        for finding in prep.get("findings") or []:
            if finding["severity"] == "blocker":
                say(f"    BLOCKER {finding['code']}: {finding['message']}", err=False)
    for disk in entry["disks"]:
        say(f"  {disk['path']} -> {disk['target'] or '(not uploaded)'}: {disk['bytes_sent']} "
            f"bytes sent, {disk['zero_bytes_skipped']} zero bytes skipped", err=False)
    for resource in entry["resources"]:
        say(f"  {resource['kind']}: {resource['id']}", err=False)
    if entry["error"]:
        say(f"  FAILED at {entry['phase']}: {entry['error']['code']}: "
            f"{entry['error']['message']}", err=False)



app = typer.Typer(add_completion=False, rich_markup_mode=None)
app.command("lift", no_args_is_help=True)(lift)

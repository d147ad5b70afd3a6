"""`azlift prep linux`: readiness checks and deprovisioning over SSH."""
from __future__ import annotations

import dataclasses
import getpass
from pathlib import Path
from typing import Annotated, Optional

import typer

from azlift.prep.errors import GuestNotReadyError, PrepUsageError, PrivilegeError, RemoteAuthError
from azlift.prep.linux import (
    DeprovisionPlan,
    Inspection,
    build_plan,
    check_deleted_user,
    deprovision,
    inspect,
)
from azlift.prep.plan import Step, blocking
from azlift.prep.shell import RootShell
from azlift.prep.reachability import wait_until_gone
from azlift.prep.ssh import DEFAULT_KNOWN_HOSTS, SshRemote, SshTarget

from . import common
from .common import STATE, CheckOnlyOption, DryRunOption, JsonOption, YesOption, emit_json
from .common import say, secret_from_env, warn
from .prep import app


@app.command("linux")
def prep_linux(
    host: Annotated[str, typer.Argument(metavar="HOST", help="The Linux guest (name or address).")],
    port: Annotated[int, typer.Option(min=1, max=65535, help="SSH port.")] = 22,
    user: Annotated[Optional[str], typer.Option(
        help="Login user: root, or a sudoer [default: your local user name].")] = None,
    identity: Annotated[Optional[Path], typer.Option(
        "--identity", "-i", metavar="KEY_FILE", exists=True, dir_okay=False, readable=True,
        help="Private key file (else your SSH agent and ~/.ssh keys are tried).")] = None,
    password_env: Annotated[Optional[str], typer.Option(
        "--password-env", metavar="VAR", help="Log in with the password held in VAR.")] = None,
    sudo_password_env: Annotated[Optional[str], typer.Option(
        "--sudo-password-env", metavar="VAR",
        help="sudo password held in VAR, passed to sudo -S on stdin (else sudo -n; on a "
             "terminal you are prompted).")] = None,
    known_hosts: Annotated[Path, typer.Option(
        "--known-hosts", metavar="FILE", help="known_hosts file to verify the host key with.")]
    = DEFAULT_KNOWN_HOSTS,
    accept_new_host_key: Annotated[bool, typer.Option(
        "--accept-new-host-key",
        help="Accept and record a host key seen for the first time (never a changed one).")]
    = False,
    check_only: CheckOnlyOption = False,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Deprovision despite blocking findings.")] = False,
    delete_user: Annotated[Optional[str], typer.Option(
        "--delete-user", metavar="NAME",
        help="User to delete at the end [default: the login user unless it is root].")] = None,
    no_shutdown: Annotated[bool, typer.Option(
        "--no-shutdown", help="Leave the guest running after deprovisioning.")] = False,
    timeout: Annotated[float, typer.Option(
        min=0.1, help="Seconds allowed for connecting, for each command, and for the host "
                      "to go away after power-off.")] = 60.0,
    json_output: JsonOption = False,
) -> None:
    """Check a Linux VM over SSH for Azure readiness, deprovision it and power it off.

    Blocking findings (no Hyper-V drivers in the initramfs, /dev/sdX in fstab, no Azure
    agent, ...) stop the plan unless --force. Without --yes the plan and a backup reminder
    are shown and confirmation is asked on the terminal; without a terminal the command
    refuses (exit 5).
    """
    if check_only and dry_run:
        raise PrepUsageError("--check-only and --dry-run exclude each other")
    if delete_user is not None:
        check_deleted_user(delete_user)  # before connecting: a usage error, not a late one
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]  # an IPv6 address written as in URLs and known_hosts
    target = SshTarget(host=host, port=port, user=user or getpass.getuser(), identity=identity,
                       password=secret_from_env(password_env, "--password-env"),
                       known_hosts=known_hosts, accept_new_host_key=accept_new_host_key,
                       timeout=timeout)
    sudo_password = secret_from_env(sudo_password_env, "--sudo-password-env")
    remote = _connect(target)
    try:
        if remote.recorded_host_key:
            warn(f"recorded the new host key of {target.known_hosts_name} "
                 f"({remote.recorded_host_key}) in {known_hosts}")
        inspection, root = _inspect(remote, sudo_password, timeout)
        if inspection.detection.warning:
            warn(inspection.detection.warning)
        if check_only:
            _report(host, inspection)
            raise typer.Exit(0 if inspection.ready else 1)
        plan = build_plan(host, inspection.detection.family, inspection.facts,
                          login_user=inspection.login_user, login_home=inspection.login_home,
                          delete_user=delete_user, shutdown=not no_shutdown,
                          warnings=_plan_warnings(inspection, force))
        if dry_run:
            _report(host, inspection, plan)
            if not inspection.ready and not force:
                warn("a real run would stop at the blocking findings (or pass --force)")
                raise typer.Exit(1)
            return
        if not STATE.json:
            _render_findings(inspection)
        _refuse_if_blocked(host, inspection, force)
        if not yes:
            _confirm(host, plan)
        outcome = deprovision(
            root, plan, timeout=timeout, on_step=lambda i, s: _progress(plan, i, s),
            wait_until_gone=lambda: wait_until_gone(host, port, timeout))
    finally:
        remote.close()
    if STATE.json:
        emit_json({"ok": True, "host": host, **inspection.to_dict(), "plan": plan.to_dict(),
                   "result": outcome.to_dict()})
    elif outcome.host_gone:
        say(f"{host} is deprovisioned and powered off"
            f"{' (the connection dropped, as expected)' if outcome.connection_dropped else ''}: "
            "capture its disk.", err=False)
    else:
        say(f"{host} is deprovisioned; it is still running (--no-shutdown).", err=False)


def _connect(target: SshTarget) -> SshRemote:
    """Connect; refused without --identity or --password-env, ask for the login password
    on a terminal (as ssh does) rather than fail."""
    try:
        return SshRemote.connect(target)
    except RemoteAuthError:
        if (target.password is not None or target.identity is not None
                or not common.stdin_is_terminal()):
            raise
    password = typer.prompt(f"password for {target.user}@{target.host}", hide_input=True,
                            err=True)
    return SshRemote.connect(dataclasses.replace(target, password=password))


def _inspect(remote: SshRemote, sudo_password: str | None,
             timeout: float) -> tuple[Inspection, RootShell]:
    try:
        return inspect(remote, sudo_password, timeout=timeout)
    except PrivilegeError:
        if sudo_password is not None or not common.stdin_is_terminal():
            raise
    prompted = typer.prompt(f"sudo password for {remote.target.user}@{remote.host}",
                            hide_input=True, err=True)
    return inspect(remote, prompted, timeout=timeout)


def _plan_warnings(inspection: Inspection, force: bool) -> tuple[str, ...]:
    warnings = [inspection.detection.warning] if inspection.detection.warning else []
    if force and not inspection.ready:
        warnings.append("--force: deprovisioning despite blocking findings; the image may "
                        "not boot in Azure")
    return tuple(warnings)


def _refuse_if_blocked(host: str, inspection: Inspection, force: bool) -> None:
    blockers = blocking(list(inspection.findings))
    if blockers and not force:
        raise GuestNotReadyError(
            f"{host} is not ready for Azure ({', '.join(f.code for f in blockers)}); fix the "
            "blocking findings first, or pass --force")


def _confirm(host: str, plan: DeprovisionPlan) -> None:
    _render_plan(plan, err=True)
    common.require_confirmation("deprovision", host, f"Deprovision {host} and power it off?")


def _progress(plan: DeprovisionPlan, index: int, step: Step) -> None:
    total = len(plan.steps) + len(plan.final_steps)
    detached = " (detached)" if index >= len(plan.steps) else ""
    say(f"azlift: [{index + 1}/{total}] {step.description}{detached}")


def _report(host: str, inspection: Inspection, plan: DeprovisionPlan | None = None) -> None:
    def render_text() -> None:
        _render_findings(inspection)
        if plan is not None:
            _render_plan(plan, err=False)

    common.report_checks({"ok": inspection.ready, "host": host, **inspection.to_dict()}, plan,
                         render_text)


def _render_findings(inspection: Inspection) -> None:
    release = inspection.detection.os_release
    common.render_findings(inspection.findings, heading=(
        f"{release.pretty_name or release.id or 'unknown distribution'} "
        f"(family {inspection.detection.family.name}), as {inspection.login_user} "
        f"via {inspection.privilege.value}"))


def _render_plan(plan: DeprovisionPlan, err: bool) -> None:
    def marks(number: int, step: Step) -> str:
        return (" [destructive]" if step.destructive else "") + (
            " [detached, after the session]" if number > len(plan.steps) else "")

    common.render_plan(f"{plan.target} ({plan.family})", plan.steps + plan.final_steps,
                       plan.warnings, marks=marks, err=err)

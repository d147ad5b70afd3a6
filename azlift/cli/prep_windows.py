"""`azlift prep windows`: readiness checks and Sysprep over WinRM."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from azlift.prep.errors import PrepUsageError
from azlift.prep.plan import Finding, Plan, blocking
from azlift.prep.windows import (
    MODE_VM_HELP,
    WindowsPrepOptions,
    build_plan,
    execute,
    refuse_if_blocked,
    run_checks,
)
from azlift.prep.winrm import AUTH_TRANSPORTS, HTTP_PORT, HTTPS_PORT, WinRMRemote, WinRMSettings

from . import common
from .common import (
    STATE,
    CheckOnlyOption,
    DryRunOption,
    JsonOption,
    YesOption,
    emit_json,
    render_findings,
    say,
    warn,
)
from .prep import app


def _transport(value: str) -> str:
    if value not in AUTH_TRANSPORTS:
        raise typer.BadParameter(f"expected one of {', '.join(AUTH_TRANSPORTS)}, found {value!r}")
    return value


HELP = (
    "Check a Windows VM over WinRM, generalize it with Sysprep and shut it down.\n\n"
    "Blocking findings (BitLocker, pending reboot, per-user AppX packages, ...) stop the plan "
    "unless --force. Without --yes the plan and a backup reminder are shown and confirmation "
    "is asked on the terminal; without a terminal the command refuses (exit 5)."
)


@app.command("windows", help=HELP)
def prep_windows(
    host: Annotated[str, typer.Argument(metavar="HOST", help="The Windows guest (name or address).")],
    port: Annotated[Optional[int], typer.Option(
        min=1, max=65535, help=f"WinRM port (default {HTTPS_PORT}, or {HTTP_PORT} with --http).")] = None,
    user: Annotated[str, typer.Option(help="An administrator account on the guest.")]
    = "Administrator",
    password_env: Annotated[Optional[str], typer.Option(
        "--password-env", metavar="VAR",
        help="Read the password from this environment variable (else you are prompted; "
             "it is never taken from the command line).")] = None,
    transport: Annotated[str, typer.Option(
        callback=_transport, help="Authentication: ntlm, kerberos, credssp or basic "
                                  "(basic only over HTTPS).")] = "ntlm",
    ca_cert: Annotated[Optional[Path], typer.Option(
        "--ca-cert", exists=True, dir_okay=False, readable=True,
        help="PEM file of the CA that signed the guest's WinRM certificate.")] = None,
    insecure: Annotated[bool, typer.Option(
        "--insecure-skip-tls-verify",
        help="Do not check the guest's certificate (prints a warning every time).")] = False,
    http: Annotated[bool, typer.Option(
        "--http", help="Plain HTTP on 5985 instead of HTTPS (prints a warning every time; "
                       "refused with basic auth).")] = False,
    check_only: CheckOnlyOption = False,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Go ahead despite blocking findings.")] = False,
    mode_vm: Annotated[bool, typer.Option("--mode-vm", help=MODE_VM_HELP)] = False,
    timeout: Annotated[float, typer.Option(
        min=0.1, help="Overall bound on Sysprep, in seconds.")] = 1800.0,
    poll_interval: Annotated[float, typer.Option(
        min=0.05, help="Seconds between image-state polls.")] = 10.0,
    shutdown_wait: Annotated[float, typer.Option(
        min=0.1, help="Seconds to wait for the host to stop answering after shutdown.")] = 300.0,
    json_output: JsonOption = False,
) -> None:
    """Checks, then the Sysprep plan (see HELP)."""
    if check_only and dry_run:
        raise PrepUsageError("--check-only and --dry-run exclude each other")
    settings = WinRMSettings(host=host, user=user, port=port, transport=transport,
                             use_http=http, ca_cert=str(ca_cert) if ca_cert else None,
                             verify_tls=not insecure)
    settings.validate()
    for message in settings.warnings():
        warn(message)
    options = WindowsPrepOptions(port=port or (HTTP_PORT if http else HTTPS_PORT),
                                 mode_vm=mode_vm, timeout=timeout, poll_interval=poll_interval,
                                 shutdown_wait=shutdown_wait)
    remote = WinRMRemote(settings, _password(password_env, user, host))
    try:
        findings = run_checks(remote)
        if check_only:
            _report_checks(host, findings)
            raise typer.Exit(1 if blocking(findings) else 0)
        plan = build_plan(host, options, findings, force=force)
        if dry_run:
            _report_checks(host, findings, plan)
            if blocking(findings) and not force:
                warn("blocking findings would stop this plan (fix them, or pass --force)")
                raise typer.Exit(1)
            return
        if not STATE.json:
            render_findings(findings)
        refuse_if_blocked(findings, force)
        if not yes:
            _confirm(host, plan)
        else:  # no plan listing, but the risks it names are still said
            for message in plan.warnings:
                warn(message)
        result = execute(remote, options, progress=lambda m: say(f"azlift: {m}"))
    finally:
        remote.close()
    if STATE.json:
        emit_json({"ok": True, "host": host, "findings": [f.to_dict() for f in findings],
                   "plan": plan.to_dict(), "result": result.to_dict()})
    else:
        say(f"{host} is generalized ({result.image_state}), shut down and stopped answering; "
            "confirm the VM is Off in the hypervisor before capturing its disk.", err=False)


def _password(variable: str | None, user: str, host: str) -> str:
    """From the named environment variable, else a hidden prompt on the terminal."""
    secret = common.secret_from_env(variable or None, "--password-env")
    if secret is not None:
        return secret
    if not common.stdin_is_terminal():
        raise PrepUsageError("no password: set --password-env VAR, or run on a terminal to be "
                             "prompted")
    return typer.prompt(f"Password for {user}@{host}", hide_input=True, err=True)


def _confirm(host: str, plan: Plan) -> None:
    _render_plan(plan)
    common.require_confirmation("generalize", host,
                                f"Generalize {host} with Sysprep and shut it down?")


def _report_checks(host: str, findings: list[Finding], plan: Plan | None = None) -> None:
    def render_text() -> None:
        render_findings(findings)
        if plan is not None:
            _render_plan(plan)

    common.report_checks({"ok": not blocking(findings), "host": host,
                          "findings": [f.to_dict() for f in findings]}, plan, render_text)


def _render_plan(plan: Plan) -> None:
    common.render_plan(plan.target, plan.steps, plan.warnings)

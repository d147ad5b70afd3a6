"""Pieces every sub-app shares: option aliases, output, confirmation, run state."""
from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

# the sub-apps take these from here with the option aliases
from .output import STATE, RunState, emit_json, progress_on_terminal, say, warn  # noqa: F401


def _set_json(value: bool) -> bool:
    if value:
        STATE.json = True
    return value


def _set_quiet(value: bool) -> bool:
    if value:
        STATE.quiet = True
    return value


JsonOption = Annotated[
    bool,
    typer.Option("--json", help="Print one JSON document on stdout (text goes to stderr).",
                 callback=_set_json, is_eager=True),
]
QuietOption = Annotated[
    bool, typer.Option("--quiet", "-q", help="No progress bar.", callback=_set_quiet),
]
ForceOption = Annotated[
    bool, typer.Option("--force", help="Overwrite an existing output / override a refusal."),
]
YesOption = Annotated[
    bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (you have a backup)."),
]
CheckOnlyOption = Annotated[
    bool, typer.Option("--check-only", help="Run the readiness checks and stop (exit 1 on "
                       "blockers)."),
]
DiskOption = Annotated[
    int | None,
    typer.Option("--disk", min=1, metavar="N",
                 help="Which disk of an OVA that holds several (1-based, in the OVF's order; "
                      "`azlift vhd inspect` lists them)."),
]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="Run the checks and print the plan; change nothing."),
]


def open_source_image(path: str, format: str | None,  # noqa: A002
                      disk: int | None = None) -> Any:
    """``vhd.open_image`` for commands that send an image on: a --format that overrode a
    container signature gets its warning before any byte goes anywhere."""
    from azlift import vhd
    from azlift.vhd.check import source_findings

    image = vhd.open_image(path, format, disk)
    for finding in source_findings(image):
        warn(f"{finding.code}: {finding.message}")
    return image


def secret_from_env(variable: str | None, option: str) -> str | None:
    """The secret held in the environment variable the user named (never from argv)."""
    if variable is None:
        return None
    from azlift.prep.errors import PrepUsageError
    from azlift.redact import ENV_NAME

    if not ENV_NAME.fullmatch(variable):  # the password itself, given by mistake: not echoed
        raise PrepUsageError(f"{option}: expected the NAME of an environment variable that "
                             "holds the password (letters, digits, '_'), found something else "
                             "(the password itself?)")
    value = os.environ.get(variable)
    if not value:
        raise PrepUsageError(f"{option} {variable}: expected the password in that environment "
                             "variable, found it unset or empty")
    return value


def stdin_is_terminal() -> bool:
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def confirm(question: str) -> bool:
    """Ask on the terminal; False (never an exception) when there is no terminal."""
    if not stdin_is_terminal():
        return False
    return typer.confirm(question, default=False, err=True)


class DefaultCommandGroup(TyperGroup):
    """A group that runs ``default_command`` when the first word is not a sub-command.

    Lets ``azlift upload SOURCE URL`` and ``azlift upload verify SOURCE URL`` coexist.
    """

    default_command = "send"

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = [self.default_command, *args]
        elif not args and self.default_command in self.commands:
            args = [self.default_command]
        return super().parse_args(ctx, args)



SEVERITY_LABELS = {"blocker": "BLOCKER", "warning": "warning", "info": "info", "ok": "ok"}


def render_findings(findings: Iterable[Any], heading: str | None = None) -> None:
    """Readiness findings (prep.plan.Finding), one per line with its fix, then a verdict.

    ``heading`` (what was checked, and how) goes first when given.
    """
    if heading:
        say(heading, err=False)
    blockers = 0
    for finding in findings:
        severity = getattr(finding.severity, "value", finding.severity)
        blockers += severity == "blocker"
        say(f"  {SEVERITY_LABELS.get(severity, severity):<8} {finding.code}: {finding.message}",
            err=False)
        if finding.remediation and severity != "ok":
            say(f"  {'':<8} fix: {finding.remediation}", err=False)
    say(f"{blockers} blocking finding(s)" if blockers else "no blocking findings", err=False)


def render_plan(title: str, steps: Sequence[Any], warnings: Iterable[str] = (), *,
                marks: Callable[[int, Any], str] | None = None, err: bool = False) -> None:
    """A plan (prep.plan.Step items) as numbered steps with their commands, then warnings.

    ``marks(number, step)`` adds notes after a step's description ("[destructive]").
    """
    say(f"Plan for {title}:", err=err)
    for number, step in enumerate(steps, 1):
        say(f"  {number}. {step.description}{marks(number, step) if marks else ''}", err=err)
        say(f"       {step.command}", err=err)
    for message in warnings:
        warn(message)


def report_checks(document: dict[str, Any], plan: Any | None,
                  render_text: Callable[[], None]) -> None:
    """What --check-only and --dry-run print: one JSON document (with the plan's
    ``to_dict()`` under "plan") with --json, else ``render_text()``."""
    if STATE.json:
        emit_json(document if plan is None else {**document, "plan": plan.to_dict()})
    else:
        render_text()


def require_confirmation(action: str, host: str, question: str) -> None:
    """The backup reminder, then a yes on the terminal; NotConfirmedError (exit 5) otherwise.

    ``action`` is the verb for the refusal ("generalize", "deprovision").
    """
    from azlift.prep.errors import NotConfirmedError
    from azlift.prep.plan import BACKUP_REMINDER

    say(BACKUP_REMINDER)
    if not stdin_is_terminal():
        raise NotConfirmedError(f"refusing to {action} {host} without confirmation: no "
                                "terminal to ask on; pass --yes once you have a backup")
    if not confirm(question):
        raise NotConfirmedError(f"not confirmed: {host} was left unchanged")

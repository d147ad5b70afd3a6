"""Plan, then act, for a Windows guest: checks → plan → Sysprep → shutdown → host gone."""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..clixml import error_summary
from ..errors import GuestNotReadyError, RemoteCommandError
from ..plan import Finding, Plan, Step, blocking
from ..transport import Remote
from .findings import PAGE, findings_from_facts
from .scripts import script
from .shutdown import shut_down, wait_until_unreachable
from .sysprep import (
    GENERALIZED,
    IMAGE_STATE_KEY,
    SYSPREP_PATH,
    ImageStatePoll,
    start_sysprep,
    sysprep_arguments,
    wait_for_generalized,
)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class WindowsPrepOptions:
    """Knobs of one run; the short defaults of tests come in through these."""

    port: int = 5986
    mode_vm: bool = False
    timeout: float = 1800.0  # overall bound on Sysprep, seconds
    poll_interval: float = 10.0
    shutdown_wait: float = 300.0
    log_tail_lines: int = 60


@dataclass(frozen=True)
class WindowsPrepResult:
    """What the run did, for the human summary and the JSON document."""

    image_state: str
    polls: int
    sysprep_seconds: float
    shutdown: str
    host_gone_after: float
    steps_done: tuple[str, ...] = field(default_factory=tuple)
    sysprep_account: str = ""
    image_state_before: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"image_state": self.image_state, "image_state_before": self.image_state_before,
                "sysprep_account": self.sysprep_account, "polls": self.polls,
                "sysprep_seconds": round(self.sysprep_seconds, 1), "shutdown": self.shutdown,
                "host_gone_after_seconds": round(self.host_gone_after, 1),
                "steps_done": list(self.steps_done)}


def gather_facts(remote: Remote) -> dict[str, Any]:
    """Run check.ps1 and parse its one JSON document."""
    result = remote.run(script("check"), timeout=300)
    if not result.ok:
        raise RemoteCommandError(f"the readiness script failed on {remote.host} (exit "
                                 f"{result.exit_code}): {error_summary(result.stderr)}")
    text = result.stdout.strip()
    try:
        facts = json.loads(text[text.index("{"):]) if "{" in text else None
    except ValueError as error:
        raise RemoteCommandError(f"the readiness script on {remote.host} printed no valid "
                                 f"JSON: {text[:120]!r}") from error
    if not isinstance(facts, dict):
        raise RemoteCommandError(f"the readiness script on {remote.host} printed no JSON "
                                 f"object: {text[:120]!r}")
    return facts


def run_checks(remote: Remote) -> list[Finding]:
    """Readiness findings for the guest behind ``remote``."""
    return findings_from_facts(gather_facts(remote))


def build_plan(host: str, options: WindowsPrepOptions, findings: list[Finding] | None = None,
               force: bool = False) -> Plan:
    """The ordered steps of generalizing ``host`` (nothing runs here)."""
    arguments = " ".join(sysprep_arguments(options.mode_vm))
    steps = (
        Step("Delete the Panther folder so old answer files and logs stay out of the image, "
             "and the Sysprep logs of earlier runs so a failure shows this run's errors",
             "Remove-Item -Recurse -Force $env:WINDIR\\Panther; Remove-Item "
             "$env:WINDIR\\System32\\Sysprep\\Panther\\setuperr.log, "
             "$env:WINDIR\\System32\\Sysprep\\Panther\\setupact.log",
             destructive=True, source=PAGE),
        Step("Generalize with Sysprep, run as the connecting administrator (not SYSTEM, which "
             "Microsoft does not support) through Win32_Process.Create, so it outlives the "
             "WinRM shell and no WinRM call is held open",
             f"{SYSPREP_PATH} {arguments}", destructive=True, source=PAGE),
        Step(f"Poll ImageState every {options.poll_interval:g} s until this run's Sysprep has "
             f"exited with the image at {GENERALIZED} (give up after {options.timeout:g} s and "
             "show setuperr.log and the tail of setupact.log)",
             f"Get-ItemProperty {IMAGE_STATE_KEY} -Name ImageState"),
        Step("Shut down for capture; the WinRM connection dropping here is expected",
             "shutdown.exe /s /t 0 /f", destructive=True, source=PAGE),
        Step(f"Wait until {host}:{options.port} stops answering (at most "
             f"{options.shutdown_wait:g} s); that the VM is Off is then yours to confirm in "
             "the hypervisor", f"TCP connect to {host}:{options.port}"),
    )
    warnings = []
    if options.mode_vm:
        warnings.append("/mode:vm keeps the hardware configuration: wrong for a VM that comes "
                        "from another hypervisor or host, as Azure's hardware differs")
    blockers = blocking(findings or [])
    if blockers and force:
        warnings.append("--force: going ahead despite " + ", ".join(f.code for f in blockers))
    return Plan(target=host, steps=steps, warnings=tuple(warnings))


def refuse_if_blocked(findings: list[Finding], force: bool) -> None:
    """Blocking findings stop the plan unless the user forces it."""
    blockers = blocking(findings)
    if blockers and not force:
        raise GuestNotReadyError(
            f"{len(blockers)} blocking finding(s): "
            + "; ".join(f"{f.code}: {f.message}" for f in blockers)
            + " (fix them, or pass --force)")


def execute(remote: Remote, options: WindowsPrepOptions, progress: Progress | None = None,
            clock: Callable[[], float] = time.monotonic,
            sleep: Callable[[float], None] = time.sleep) -> WindowsPrepResult:
    """Run the plan's steps in order against ``remote``."""
    say = progress or (lambda _message: None)
    done: list[str] = []

    _run_ok(remote, script("clean-panther"), "deleting the Panther folder")
    done.append("clean-panther")
    say("Panther folder deleted")

    start = start_sysprep(remote, sysprep_arguments(options.mode_vm))
    done.append("start-sysprep")
    if start.removed_task:
        say("removed the leftover scheduled task azlift-sysprep (it ran Sysprep as SYSTEM)")
    if start.already_generalized:
        say(f"the image was already at {GENERALIZED} before this run (an earlier Sysprep); "
            "that state counts only after this run's Sysprep has run")
    say(f"Sysprep started as {start.account or 'the connecting user'} (process "
        f"{start.process_id}): " + " ".join(sysprep_arguments(options.mode_vm)))

    polls: list[ImageStatePoll] = []

    def on_poll(poll: ImageStatePoll) -> None:
        polls.append(poll)
        say(f"image state {poll.image_state or '(unset)'}; Sysprep "
            f"{'running' if poll.sysprep_running else 'not running'}")

    started = clock()
    final = wait_for_generalized(remote, options.timeout, options.poll_interval, on_poll,
                                 clock=clock, sleep=sleep, tail_lines=options.log_tail_lines,
                                 start=start)
    sysprep_seconds = clock() - started
    done.append("wait-generalized")

    shutdown = shut_down(remote)
    remote.close()
    done.append("shutdown")
    say(f"shutdown: {shutdown}")

    gone_after = wait_until_unreachable(remote.host, options.port, options.shutdown_wait,
                                        interval=min(2.0, options.poll_interval), clock=clock,
                                        sleep=sleep)
    done.append("host-gone")
    say(f"{remote.host}:{options.port} stopped answering after {gone_after:.1f} s")
    return WindowsPrepResult(final.image_state, len(polls), sysprep_seconds, shutdown,
                             gone_after, tuple(done), sysprep_account=start.account,
                             image_state_before=start.image_state_before)


def _run_ok(remote: Remote, text: str, what: str) -> None:
    result = remote.run(text, timeout=300)
    if not result.ok:
        raise RemoteCommandError(f"{what} on {remote.host} failed (exit {result.exit_code}): "
                                 f"{error_summary(result.stderr or result.stdout)}")

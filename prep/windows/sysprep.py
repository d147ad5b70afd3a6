"""Generalizing a Windows guest: the Sysprep plan, image-state polling, failure detail.

Sysprep is started detached and its completion read from the registry in short, separate
WinRM calls, under one overall deadline. A stuck or failed Sysprep therefore ends in a
bounded time with Sysprep's own error lines instead of an endless wait.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..clixml import error_summary
from ..errors import ConnectError, GeneralizeFailedError, PrepTimeoutError, RemoteCommandError
from ..transport import Remote, RunResult
from .logs import failure_summary
from .scripts import script

GENERALIZED = "IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE"
UNDEPLOYABLE = "IMAGE_STATE_UNDEPLOYABLE"
IMAGE_STATE_KEY = r"HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Setup\State"
SYSPREP_PATH = r"$env:windir\System32\Sysprep\Sysprep.exe"
# Consecutive polls that must show Sysprep gone without the image generalized before the
# run counts as failed (one poll can race the process exit and the registry write).
EXITED_POLLS_FOR_FAILURE = 2
# A process that is not (yet) visible proves nothing for this long after the start: until
# Sysprep was seen running, "not running" may only mean "not running yet".
STARTUP_GRACE_SECONDS = 60.0
LOG_TAIL_LINES = 60
# Win32_Process.Create's return values (other than 0, success).
CREATE_RESULTS = {2: "access denied", 3: "insufficient privilege", 8: "unknown failure",
                  9: "path not found", 21: "invalid parameter"}

MODE_VM_HELP = (
    "Add /mode:vm (keeps the hardware configuration). Only for an image that will run on "
    "the same hypervisor and virtual hardware; a VM from VMware, KVM or another Hyper-V "
    "host moves to Azure's different hardware, where the skipped device re-detection can "
    "leave it unbootable or without network."
)


def sysprep_arguments(mode_vm: bool = False) -> list[str]:
    """Sysprep's switches: generalize, OOBE on next boot, no UI, exit without shutdown."""
    arguments = ["/generalize", "/oobe", "/quiet", "/quit"]
    if mode_vm:
        arguments.append("/mode:vm")
    return arguments


@dataclass(frozen=True)
class SysprepStart:
    """How the start went: the image state found before it, who runs Sysprep, its process."""

    image_state_before: str
    account: str
    process_id: int
    running: bool
    breakaway: bool = True
    removed_task: bool = False

    @property
    def already_generalized(self) -> bool:
        """The image was generalized by an earlier Sysprep before this run started one."""
        return self.image_state_before == GENERALIZED


@dataclass(frozen=True)
class ImageStatePoll:
    """One reading of the guest's setup state."""

    image_state: str
    sysprep_running: bool


def json_document(result: RunResult, host: str, what: str) -> dict:
    """The JSON object a script printed as its last line; RemoteCommandError otherwise."""
    if not result.ok:
        raise RemoteCommandError(f"{what} on {host} failed (exit {result.exit_code}): "
                                 f"{error_summary(result.stderr or result.stdout)}")
    try:
        document = json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as error:
        raise RemoteCommandError(f"{what} on {host}: expected one JSON document, found "
                                 f"{result.stdout.strip()[:120]!r}") from error
    if not isinstance(document, dict):
        raise RemoteCommandError(f"{what} on {host}: expected a JSON object, found "
                                 f"{result.stdout.strip()[:120]!r}")
    return document


def start_sysprep(remote: Remote, arguments: list[str]) -> SysprepStart:
    """Start Sysprep as the connecting administrator; fail at once if it did not start."""
    host = remote.host
    document = json_document(remote.run(script("start-sysprep", SysprepArguments=arguments),
                                        timeout=300), host, "starting Sysprep")
    if document.get("already_running"):
        raise GeneralizeFailedError(
            f"Sysprep.exe is already running on {host} (an earlier run that has not ended): "
            "let it end, or stop it with Stop-Process -Name sysprep, then run again")
    code = document.get("return_value")
    if code != 0 or not isinstance(document.get("process_id"), int):
        meaning = CREATE_RESULTS.get(code, "unexpected answer") if isinstance(code, int) else \
            "no answer"
        raise GeneralizeFailedError(
            f"Sysprep did not start on {host}: Win32_Process.Create returned {code} "
            f"({meaning}) for {SYSPREP_PATH}")
    return SysprepStart(str(document.get("image_state_before") or ""),
                        str(document.get("account") or ""), document["process_id"],
                        bool(document.get("running")), bool(document.get("breakaway")),
                        bool(document.get("removed_task")))


def read_image_state(remote: Remote, call_timeout: float = 60.0) -> ImageStatePoll:
    """Ask the guest once for ImageState and whether sysprep.exe still runs."""
    document = json_document(remote.run(script("image-state"), timeout=call_timeout),
                             remote.host, "reading ImageState")
    return ImageStatePoll(str(document.get("image_state") or ""),
                          bool(document.get("sysprep_running")))


def fetch_failure_detail(remote: Remote, tail_lines: int = LOG_TAIL_LINES) -> str:
    """setuperr.log and the tail of setupact.log, reduced to their error lines."""
    try:
        document = json_document(remote.run(script("fetch-logs", TailLines=tail_lines),
                                            timeout=120), remote.host, "reading Sysprep's logs")
    except (ConnectError, PrepTimeoutError, RemoteCommandError) as error:
        return f"Sysprep's logs could not be fetched: {error}"
    return failure_summary(document.get("setuperr"), document.get("setupact_tail"))


def wait_for_generalized(
    remote: Remote,
    timeout: float,
    interval: float,
    on_poll: Callable[[ImageStatePoll], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    tail_lines: int = LOG_TAIL_LINES,
    start: SysprepStart | None = None,
) -> ImageStatePoll:
    """Poll until this run's Sysprep has generalized the image and exited; fail fast when it
    exited (or never showed up) without that, give up at ``timeout`` seconds. Failures carry
    Sysprep's error lines.

    GENERALIZE_RESEAL_TO_OOBE, read with Sysprep gone, counts when the state changed to it
    during this run; when it already read so before, only once this run's Sysprep was seen
    running and the state seen to leave it (an earlier Sysprep's state reads the same before
    this one has done anything). ``start`` says what the state was and whether the process
    was already seen; without it, both are unknown and a Sysprep seen running is required.
    """
    started = clock()
    deadline = started + timeout
    before = start.image_state_before if start is not None else None
    seen_running = start.running if start is not None else False
    left_generalized = False  # a state other than GENERALIZED was seen during this run
    exited_polls = 0
    last: ImageStatePoll | None = None
    last_error: Exception | None = None
    while True:
        try:
            last = read_image_state(remote, call_timeout=max(30.0, interval * 3))
            last_error = None
        except (ConnectError, PrepTimeoutError) as error:  # a busy guest may miss one poll
            last_error = error
        if last is not None and last_error is None:
            if on_poll is not None:
                on_poll(last)
            seen_running = seen_running or last.sysprep_running
            left_generalized = left_generalized or last.image_state != GENERALIZED
            if not last.sysprep_running and last.image_state == GENERALIZED and \
                    _this_run_generalized(before, seen_running, left_generalized):
                return last
            may_be_starting = not seen_running and clock() - started < STARTUP_GRACE_SECONDS
            exited_polls = 0 if last.sysprep_running or may_be_starting else exited_polls + 1
            if exited_polls >= EXITED_POLLS_FOR_FAILURE:
                raise GeneralizeFailedError(
                    _exit_reason(remote.host, last.image_state, seen_running, before,
                                 left_generalized)
                    + ": " + fetch_failure_detail(remote, tail_lines))
        if clock() >= deadline:
            state = last.image_state if last is not None else "unknown"
            cause = f" (last poll failed: {last_error})" if last_error is not None else ""
            running = ""
            if last is not None and last.sysprep_running:
                process = f" (process {start.process_id})" if start is not None else ""
                running = (f"; Sysprep.exe{process} is still running there: let it end or "
                           "stop it before running again")
            raise PrepTimeoutError(
                f"Sysprep on {remote.host} did not reach {GENERALIZED} within {timeout:g} s; "
                f"the image state is still {state}{cause}{running}: "
                + fetch_failure_detail(remote, tail_lines))
        sleep(interval)


def _this_run_generalized(before: str | None, seen_running: bool,
                          left_generalized: bool) -> bool:
    """Whether GENERALIZED, read with Sysprep gone, is this run's doing. When the image was
    generalized before, Sysprep must have been seen and the state seen to leave GENERALIZED
    (Sysprep resets it while it works): a Sysprep that refused at once leaves it untouched."""
    if before == GENERALIZED:
        return seen_running and left_generalized
    if before is None:  # unknown: only a Sysprep seen running counts
        return seen_running
    return True  # the state changed to GENERALIZED during this run


def _exit_reason(host: str, state: str, seen_running: bool, before: str | None,
                 left_generalized: bool = False) -> str:
    """Why the wait stopped when Sysprep is gone without having generalized the image."""
    already = (", as it already was before this run (an earlier Sysprep generalized the "
               "image), which says nothing about this run")
    if seen_running:
        reason = f"Sysprep on {host} exited and left the image at {state or '(unset)'}"
        if state == GENERALIZED and before == GENERALIZED and not left_generalized:
            reason += " without the state ever changing" + already
        return reason
    reason = (f"Sysprep.exe was not seen running on {host} within {STARTUP_GRACE_SECONDS:g} s "
              f"of its start, and the image state is {state or '(unset)'}")
    if state == GENERALIZED and before == GENERALIZED:
        reason += already
    return reason

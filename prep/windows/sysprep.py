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

from ..errors import ConnectError, GeneralizeFailedError, PrepTimeoutError, RemoteCommandError
from ..transport import Remote
from .logs import failure_summary
from .scripts import script

GENERALIZED = "IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE"
UNDEPLOYABLE = "IMAGE_STATE_UNDEPLOYABLE"
IMAGE_STATE_KEY = r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Setup\State"
# Consecutive polls that must show Sysprep gone with the image left undeployable before
# the run counts as failed (one poll can race the process exit and the registry write).
EXITED_POLLS_FOR_FAILURE = 2
# A failed earlier run leaves the image UNDEPLOYABLE, and the scheduled task needs a moment
# to start sysprep.exe: until Sysprep was seen running, that state alone proves nothing for
# this long.
STARTUP_GRACE_SECONDS = 60.0
LOG_TAIL_LINES = 60

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
class ImageStatePoll:
    """One reading of the guest's setup state."""

    image_state: str
    sysprep_running: bool


def read_image_state(remote: Remote, call_timeout: float = 60.0) -> ImageStatePoll:
    """Ask the guest once for ImageState and whether sysprep.exe still runs."""
    result = remote.run(script("image-state"), timeout=call_timeout)
    if not result.ok:
        raise RemoteCommandError(f"reading ImageState on {remote.host} failed (exit "
                                 f"{result.exit_code}): {result.stderr.strip()[:200]}")
    try:
        document = json.loads(result.stdout.strip().splitlines()[-1])
        return ImageStatePoll(str(document.get("image_state") or ""),
                              bool(document.get("sysprep_running")))
    except (ValueError, IndexError, AttributeError) as error:
        raise RemoteCommandError(f"expected a JSON image state from {remote.host}, found "
                                 f"{result.stdout.strip()[:120]!r}") from error


def fetch_failure_detail(remote: Remote, tail_lines: int = LOG_TAIL_LINES) -> str:
    """setuperr.log and the tail of setupact.log, reduced to their error lines."""
    try:
        result = remote.run(script("fetch-logs", TailLines=tail_lines), timeout=120)
        document = json.loads(result.stdout.strip().splitlines()[-1]) if result.ok else {}
    except (ConnectError, PrepTimeoutError, RemoteCommandError, ValueError, IndexError) as error:
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
) -> ImageStatePoll:
    """Poll until the image is generalized; fail fast when Sysprep exited undeployable,
    give up at ``timeout`` seconds. Both failures carry Sysprep's error lines."""
    started = clock()
    deadline = started + timeout
    exited_polls = 0
    seen_running = False
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
            if last.image_state == GENERALIZED:
                return last
            seen_running = seen_running or last.sysprep_running
            this_run = seen_running or clock() - started >= STARTUP_GRACE_SECONDS
            exited_polls = exited_polls + 1 if (
                this_run and not last.sysprep_running and last.image_state == UNDEPLOYABLE) else 0
            if exited_polls >= EXITED_POLLS_FOR_FAILURE:
                raise GeneralizeFailedError(
                    f"Sysprep on {remote.host} exited and left the image at {UNDEPLOYABLE}: "
                    + fetch_failure_detail(remote, tail_lines))
        if clock() >= deadline:
            state = last.image_state if last is not None else "unknown"
            cause = f" (last poll failed: {last_error})" if last_error is not None else ""
            raise PrepTimeoutError(
                f"Sysprep on {remote.host} did not reach {GENERALIZED} within {timeout:g} s; "
                f"the image state is still {state}{cause}: "
                + fetch_failure_detail(remote, tail_lines))
        sleep(interval)

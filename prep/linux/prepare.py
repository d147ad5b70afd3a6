"""Inspect a Linux guest, then (when asked) run its deprovision plan.

Plan, then act: :func:`inspect` is read-only; :func:`deprovision` runs a plan the caller
has shown and had confirmed.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import ConnectionLostError, RemoteCommandError
from ..plan import Finding, Step, blocking
from ..shell import Privilege, RootShell, detect_privilege
from ..transport import Remote
from .checks import evaluate
from .deprovision import DEFAULT_FINAL_DELAY, DeprovisionPlan
from .facts import Facts, gather
from .families import Detection, detect_family
from .os_release import parse_os_release

OS_RELEASE_COMMAND = "cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release"


@dataclass(frozen=True)
class Inspection:
    """Everything learned about a guest before any change."""

    detection: Detection
    privilege: Privilege
    login_user: str
    login_home: str
    facts: Facts
    findings: tuple[Finding, ...]

    @property
    def ready(self) -> bool:
        return not blocking(list(self.findings))

    def to_dict(self) -> dict[str, Any]:
        return {"os": self.detection.os_release.to_dict(),
                "family": self.detection.family.name,
                "family_matched_by": self.detection.matched_by,
                "privilege": self.privilege.value, "login_user": self.login_user,
                "ready": self.ready, "findings": [f.to_dict() for f in self.findings]}


def inspect(remote: Remote, sudo_password: str | None = None,
            timeout: float | None = None) -> tuple[Inspection, RootShell]:
    """Detect the family, the way to root and the readiness findings (read-only)."""
    os_release = parse_os_release(remote.run(OS_RELEASE_COMMAND, timeout=timeout).stdout)
    detection = detect_family(os_release)
    who = remote.run('id -un; printf %s "$HOME"', timeout=timeout).stdout.split("\n", 1)
    login_user, login_home = who[0].strip(), (who[1] if len(who) > 1 else "")
    privilege = detect_privilege(remote, sudo_password, timeout=timeout)
    root = RootShell(remote, privilege, sudo_password)
    facts = gather(root, detection.family, timeout=timeout)
    findings = tuple(evaluate(facts, detection.family))
    return Inspection(detection, privilege, login_user, login_home, facts, findings), root


@dataclass(frozen=True)
class Outcome:
    """How a deprovision ended."""

    steps_run: int
    final_launched: bool
    connection_dropped: bool
    host_gone: bool
    seconds_until_gone: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"steps_run": self.steps_run, "final_launched": self.final_launched,
                "connection_dropped": self.connection_dropped, "host_gone": self.host_gone,
                "seconds_until_gone": self.seconds_until_gone}


def run_step(root: RootShell, step: Step, timeout: float | None = None) -> None:
    """Run one plan step as root; a non-zero exit stops the plan."""
    result = root.run(step.command, timeout=timeout)
    if not result.ok:
        detail = (result.stderr.strip() or result.stdout.strip()).splitlines()
        raise RemoteCommandError(
            f"step '{step.description}' failed (exit {result.exit_code}) on {root.remote.host}"
            + (f": {detail[0]}" if detail else "") + "; later steps were not run")


def deprovision(root: RootShell, plan: DeprovisionPlan, *,
                wait_until_gone: Callable[[], float],
                on_step: Callable[[int, Step], None] | None = None,
                timeout: float | None = None,
                final_delay: float = DEFAULT_FINAL_DELAY) -> Outcome:
    """Run ``plan``; the detached final command may end the connection, which is expected."""
    for index, step in enumerate(plan.steps):
        if on_step:
            on_step(index, step)
        run_step(root, step, timeout)
    if on_step:
        for offset, step in enumerate(plan.final_steps):
            on_step(len(plan.steps) + offset, step)
    dropped = False
    try:
        result = root.run(plan.final_command(final_delay), timeout=timeout)
        if not result.ok:
            raise RemoteCommandError(
                f"could not start the final steps on {root.remote.host} "
                f"(exit {result.exit_code}): {result.stderr.strip()[:200]}")
    except ConnectionLostError:
        dropped = True  # the power-off won the race against our read: expected
    if not plan.powers_off:
        return Outcome(len(plan.steps), True, dropped, False, None)
    seconds = wait_until_gone()
    dropped = dropped or _connection_ended(root.remote)
    return Outcome(len(plan.steps), True, dropped, True, round(seconds, 2))


def _connection_ended(remote: Remote, grace: float = 5.0) -> bool:
    """Whether the session has ended (the transport notices a peer's reset shortly after)."""
    if not hasattr(remote, "alive"):
        return False
    deadline = time.monotonic() + grace
    while remote.alive and time.monotonic() < deadline:
        time.sleep(0.02)
    return not remote.alive

"""One guest of a manifest, reached and generalized with the same library calls as
`azlift prep linux|windows` (check → plan → execute), without a terminal to ask on.

Secrets are read here, on the worker that runs the prep, from the environment variables
the manifest names; they never travel in a task's arguments or come back in its result.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .prep_spec import PrepSpec

Progress = Callable[[str], None]
LINUX_TIMEOUT = 60.0
WINDOWS_TIMEOUT = 1800.0


def _secret(name: str | None, key: str, host: str) -> str | None:
    """The value of the variable the manifest names (read where the prep runs)."""
    from azlift.prep.errors import PrepUsageError

    if name is None:
        return None
    value = os.environ.get(name)
    if not value:
        raise PrepUsageError(f"prep.{key} = \"{name}\": expected the password of {host} in "
                             "that environment variable on the worker that reaches the guest, "
                             "found it unset or empty")
    return value


def _path(text: str | None) -> Path | None:
    return Path(text).expanduser() if text else None


class GuestPrep:
    """A connected guest with its findings and plan; ``execute`` generalizes it."""

    def __init__(self, spec: PrepSpec) -> None:
        self.spec = spec
        self.findings: list[Any] = []
        self.plan: Any = None
        self.detail: dict[str, Any] = {}
        self._remote: Any = None
        self._execute: Callable[[Progress], dict[str, Any]] | None = None

    # ---- read-only -------------------------------------------------------------------
    def inspect(self) -> "GuestPrep":
        """Connect, run the readiness checks and build the plan (nothing changes)."""
        if self.spec.os == "linux":
            self._inspect_linux()
        else:
            self._inspect_windows()
        return self

    @property
    def ready(self) -> bool:
        from azlift.prep.plan import blocking

        return not blocking(list(self.findings))

    def _inspect_linux(self) -> None:
        from azlift.prep.linux import build_plan, deprovision, inspect
        from azlift.prep.reachability import wait_until_gone
        from azlift.prep.ssh import DEFAULT_KNOWN_HOSTS, SshRemote, SshTarget

        spec = self.spec
        timeout = spec.timeout or LINUX_TIMEOUT
        port = spec.port or 22
        target = SshTarget(host=spec.host, port=port, user=spec.login,
                           identity=_path(spec.identity),
                           password=_secret(spec.password_env, "password_env", spec.host),
                           known_hosts=_path(spec.known_hosts) or DEFAULT_KNOWN_HOSTS,
                           timeout=timeout)
        sudo_password = _secret(spec.sudo_password_env, "sudo_password_env", spec.host)
        self._remote = SshRemote.connect(target)
        inspection, root = inspect(self._remote, sudo_password, timeout=timeout)
        self.findings = list(inspection.findings)
        detection = inspection.detection
        plan = build_plan(spec.host, detection.family, inspection.facts,
                          login_user=inspection.login_user, login_home=inspection.login_home,
                          delete_user=spec.delete_user, shutdown=True,
                          warnings=(detection.warning,) if detection.warning else ())
        self.plan = plan
        self.detail = {"family": detection.family.name,
                       "distribution": detection.os_release.pretty_name or detection.os_release.id}

        def execute(progress: Progress) -> dict[str, Any]:
            def step(index: int, item: Any) -> None:
                progress(f"[{index + 1}/{len(plan.steps) + len(plan.final_steps)}] "
                         f"{item.description}")
            outcome = deprovision(root, plan, timeout=timeout, on_step=step,
                                  wait_until_gone=lambda: wait_until_gone(spec.host, port, timeout))
            return outcome.to_dict()
        self._execute = execute

    def _inspect_windows(self) -> None:
        from azlift.prep.errors import PrepUsageError
        from azlift.prep.windows import WindowsPrepOptions, build_plan, execute, run_checks
        from azlift.prep.winrm import HTTP_PORT, HTTPS_PORT, WinRMRemote, WinRMSettings

        spec = self.spec
        password = _secret(spec.password_env, "password_env", spec.host)
        if password is None:
            raise PrepUsageError(f"prep of {spec.host}: a Windows guest needs password_env (the "
                                 "environment variable holding the administrator's password)")
        settings = WinRMSettings(host=spec.host, user=spec.login, port=spec.port,
                                 transport=spec.transport, use_http=spec.http,
                                 ca_cert=str(_path(spec.ca_cert)) if spec.ca_cert else None)
        options = WindowsPrepOptions(port=spec.port or (HTTP_PORT if spec.http else HTTPS_PORT),
                                     mode_vm=spec.mode_vm, timeout=spec.timeout or WINDOWS_TIMEOUT,
                                     poll_interval=spec.poll_interval)
        self._remote = WinRMRemote(settings, password)
        self.findings = run_checks(self._remote)
        self.plan = build_plan(spec.host, options, self.findings)
        self.detail = {"warnings": settings.warnings()}

        def run(progress: Progress) -> dict[str, Any]:
            return execute(self._remote, options, progress=progress).to_dict()
        self._execute = run

    # ---- the change ------------------------------------------------------------------
    def execute(self, progress: Progress | None = None) -> dict[str, Any]:
        """Generalize and power off (the caller checked ``ready`` and had it confirmed)."""
        assert self._execute is not None, "inspect() first"
        return self._execute(progress or (lambda message: None))

    def close(self) -> None:
        if self._remote is not None:
            try:
                self._remote.close()
            except Exception:  # noqa: BLE001 - a guest that went away closes itself
                pass

    def summary(self) -> dict[str, Any]:
        """Findings and plan as plain values (no secret: the plan holds commands only)."""
        return {"host": self.spec.host, "os": self.spec.os, "ready": self.ready, **self.detail,
                "findings": [f.to_dict() for f in self.findings],
                "plan": self.plan.to_dict() if self.plan is not None else None}

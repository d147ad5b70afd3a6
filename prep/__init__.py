"""Generalize guests remotely: Linux over SSH, Windows over WinRM. Plan first, then act."""
from __future__ import annotations

from .errors import (
    ConnectError,
    GeneralizeFailedError,
    HostKeyError,
    NotConfirmedError,
    PrepError,
    PrepTimeoutError,
    PrepUsageError,
    PrivilegeError,
    RemoteAuthError,
    RemoteCommandError,
)
from .plan import BACKUP_REMINDER, Finding, Plan, Severity, Step, blocking
from .transport import Remote, RunResult

__all__ = [
    "BACKUP_REMINDER",
    "ConnectError",
    "Finding",
    "GeneralizeFailedError",
    "HostKeyError",
    "NotConfirmedError",
    "Plan",
    "PrepError",
    "PrepTimeoutError",
    "PrepUsageError",
    "PrivilegeError",
    "Remote",
    "RemoteAuthError",
    "RemoteCommandError",
    "RunResult",
    "Severity",
    "Step",
    "blocking",
]

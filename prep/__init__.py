"""Generalize guests remotely: Linux over SSH, Windows over WinRM. Plan first, then act."""
from __future__ import annotations

from .errors import (
    ConnectError,
    ConnectionLostError,
    GeneralizeFailedError,
    GuestNotReadyError,
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
from .shell import Privilege, RootShell, detect_privilege, quote
from .ssh import SshRemote, SshTarget
from .transport import Remote, RunResult
from .winrm import WinRMRemote, WinRMSettings

__all__ = [
    "Privilege",
    "RootShell",
    "SshRemote",
    "SshTarget",
    "detect_privilege",
    "quote",
    "BACKUP_REMINDER",
    "ConnectError",
    "ConnectionLostError",
    "Finding",
    "GeneralizeFailedError",
    "GuestNotReadyError",
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
    "WinRMRemote",
    "WinRMSettings",
    "blocking",
]

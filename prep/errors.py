"""The prep package's exception tree (remote generalization over SSH and WinRM)."""
from __future__ import annotations


class PrepError(Exception):
    """Base of every error the prep package raises."""

    code = "prep_error"
    exit_code = 4


class ConnectError(PrepError):
    """The host could not be reached or the session could not be opened."""

    code = "connect_failed"


class HostKeyError(ConnectError):
    """The SSH host key is unknown or changed (or the TLS certificate is not trusted)."""

    code = "host_key_rejected"


class RemoteAuthError(ConnectError):
    """The remote refused the credentials."""

    code = "remote_auth_failed"


class RemoteCommandError(PrepError):
    """A remote command failed in a way the plan cannot continue past."""

    code = "remote_command_failed"


class PrivilegeError(PrepError):
    """No way to run commands as root / administrator."""

    code = "no_privilege"


class NotConfirmedError(PrepError):
    """A destructive plan was not confirmed (no terminal and no --yes, or the user said no)."""

    code = "not_confirmed"
    exit_code = 5


class GeneralizeFailedError(PrepError):
    """Generalization ran but did not reach the expected state."""

    code = "generalize_failed"


class PrepTimeoutError(PrepError):
    """A bounded wait ran out."""

    code = "timeout"


class PrepUsageError(PrepError):
    """Options that contradict each other (e.g. basic auth over plain HTTP)."""

    code = "usage"
    exit_code = 2


class GuestNotReadyError(PrepError):
    """Readiness checks found blockers, so the plan stops (override with --force)."""

    code = "not_ready"
    exit_code = 1


class ConnectionLostError(ConnectError):
    """An open SSH session ended while a command was still running."""

    code = "connection_lost"

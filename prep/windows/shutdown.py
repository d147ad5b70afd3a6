"""Shutting the generalized guest down: a dropped connection is the expected answer.

The WinRM port closing proves only that the guest stopped answering, not that the VM is
off: WinRM and HTTP.sys stop early in a shutdown, before Windows has finished and before
the hypervisor shows the VM Off. The wording says so.
"""
from __future__ import annotations

import time
from collections.abc import Callable

from ..clixml import error_summary
from ..errors import (
    ConnectError,
    HostKeyError,
    PrepTimeoutError,
    RemoteAuthError,
    RemoteCommandError,
)
from ..reachability import port_answers, wait_until_gone
from ..transport import Remote
from .scripts import script

# shutdown.exe's exit code when a shutdown is already in progress (ERROR_SHUTDOWN_IN_PROGRESS).
SHUTDOWN_IN_PROGRESS = 1115
STOPPED_ANSWERING_ADVICE = "confirm the VM is Off in the hypervisor before capturing its disk"


def shut_down(remote: Remote, call_timeout: float = 60.0) -> str:
    """Send the shutdown; return how it ended ("accepted" or "connection dropped")."""
    try:
        result = remote.run(script("shutdown"), timeout=call_timeout)
    except (RemoteAuthError, HostKeyError):
        raise
    except (ConnectError, PrepTimeoutError):
        return "connection dropped (expected while Windows shuts down)"
    except RemoteCommandError as error:
        # The WinRM service stops with the machine and may answer with a SOAP fault instead
        # of dropping the connection; whether the host went down is checked next.
        return f"WinRM failed as Windows shut down (expected): {error}"
    if result.exit_code == SHUTDOWN_IN_PROGRESS:
        return "a shutdown was already in progress"
    if not result.ok:
        raise RemoteCommandError(f"shutdown on {remote.host} was refused (exit "
                                 f"{result.exit_code}): "
                                 f"{error_summary(result.stderr or result.stdout, 200)}")
    return "shutdown accepted"


def host_answers(host: str, port: int, connect_timeout: float = 2.0) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    return port_answers(host, port, timeout=connect_timeout)


def wait_until_unreachable(
    host: str,
    port: int,
    timeout: float,
    interval: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """Seconds until ``host:port`` stopped answering; PrepTimeoutError past ``timeout``."""
    return wait_until_gone(host, port, timeout, interval=interval, clock=clock, sleep=sleep,
                           advice=STOPPED_ANSWERING_ADVICE)

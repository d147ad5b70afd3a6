"""Is the guest still there? The bounded wait that confirms a power-off took effect.

Shared by both operating systems: after the final command the connection drops, and
only a port that stops answering proves the machine went down.
"""
from __future__ import annotations

import socket
import time
from collections.abc import Callable

from .errors import PrepTimeoutError


def port_answers(host: str, port: int, timeout: float = 2.0) -> bool:
    """Whether something accepts TCP connections on ``host:port`` right now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until_gone(host: str, port: int, timeout: float, *, interval: float = 0.25,
                    advice: str = "check the VM's console; it may not have shut down",
                    clock: Callable[[], float] = time.monotonic,
                    sleep: Callable[[float], None] = time.sleep) -> float:
    """Seconds until ``host:port`` stopped answering; PrepTimeoutError past ``timeout``."""
    started = clock()
    while True:
        elapsed = clock() - started
        if not port_answers(host, port, timeout=min(2.0, max(0.2, timeout - elapsed))):
            return clock() - started
        if elapsed >= timeout:
            raise PrepTimeoutError(
                f"{host}:{port} still answers {timeout:g} s after power-off was requested: "
                f"{advice}")
        sleep(interval)

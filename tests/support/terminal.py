"""Run a command with its stderr on a pseudo-terminal, as a user's shell would."""
from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import termios
import threading


def run_on_terminal(command: list[str], *, rows: int, cols: int,
                    env: dict[str, str] | None = None,
                    timeout: float = 60) -> tuple[int, bytes, bytes]:
    """(exit code, stdout, what the terminal received): stderr on a ``rows`` x ``cols``
    pseudo-terminal, stdout a pipe, stdin empty."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    received: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the terminal
                return
            if not chunk:
                return
            received.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=slave,
                               stdin=subprocess.DEVNULL, env=env)
    os.close(slave)
    out, _ = process.communicate(timeout=timeout)
    reader.join(timeout=30)
    os.close(master)
    return process.returncode, out, b"".join(received)

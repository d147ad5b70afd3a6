"""Run a command on a pseudo-terminal, as a user's shell would."""
from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import termios
import threading


def _drained(master: int) -> tuple[threading.Thread, list[bytes]]:
    """A started thread that collects what the terminal ``master`` receives."""
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
    return reader, received


def run_on_terminal(command: list[str], *, rows: int, cols: int,
                    env: dict[str, str] | None = None,
                    timeout: float = 60) -> tuple[int, bytes, bytes]:
    """(exit code, stdout, what the terminal received): stderr on a ``rows`` x ``cols``
    pseudo-terminal, stdout a pipe, stdin empty."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    reader, received = _drained(master)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=slave,
                               stdin=subprocess.DEVNULL, env=env)
    os.close(slave)
    out, _ = process.communicate(timeout=timeout)
    reader.join(timeout=30)
    os.close(master)
    return process.returncode, out, b"".join(received)


def answer_on_terminal(command: list[str], answer: str, *,
                       timeout: float = 120) -> tuple[int, str]:
    """(exit code, everything the terminal showed): stdin, stdout and stderr all on one
    pseudo-terminal, ``answer`` typed on it as a user would (the line discipline holds it
    until the command reads)."""
    master, slave = pty.openpty()
    reader, received = _drained(master)
    process = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    os.write(master, answer.encode())
    code = process.wait(timeout=timeout)
    reader.join(timeout=30)
    os.close(master)
    return code, b"".join(received).decode(errors="replace")

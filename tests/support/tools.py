"""Where the project's own installs live, and how to find a free port."""
from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TOOLS_DIR = PROJECT_ROOT / ".tools"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def require_executable(name: str) -> str:
    """Path of ``name``, or skip (a failure in CI) saying what is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (run scripts/setup.sh)")
    return path


@contextmanager
def black_hole() -> Iterator[int]:
    """A port on 127.0.0.1 whose connections are never accepted: the listen queue (of
    length 0) is filled by connections nobody accepts, so new SYNs are dropped and a client
    waits for its connect timeout, as with a firewall that drops packets."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            try:
                filler.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            fillers.append(filler)
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()

"""Where the project's own installs live, and how to find a free port."""
from __future__ import annotations

import shutil
import socket
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

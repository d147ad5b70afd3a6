"""The seam between plans and machines: anything that can run a command remotely."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class RunResult:
    """What one remote command produced."""

    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class Remote(Protocol):
    """A connected remote machine (SSH for Linux, WinRM for Windows)."""

    host: str

    def run(self, command: str, stdin: bytes | None = None,
            timeout: float | None = None) -> RunResult: ...

    def close(self) -> None: ...

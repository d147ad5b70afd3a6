"""Ways to run the azlift CLI in tests: in process (``main``) and as the installed command."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from azlift.cli.main import main


@dataclass(frozen=True)
class CliRun:
    """Exit code and the two output streams of one azlift invocation."""

    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


@pytest.fixture
def run_main(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliRun]:
    """Call ``azlift.cli.main.main(args)`` in process and capture what it prints."""
    def run(*args: str | os.PathLike[str]) -> CliRun:
        capsys.readouterr()
        code = main([os.fspath(a) for a in args])
        captured = capsys.readouterr()
        return CliRun(code, captured.out, captured.err)
    return run


def installed_azlift() -> str:
    """The console script installed with the project (next to this interpreter)."""
    beside = Path(sys.executable).with_name("azlift")
    found = str(beside) if beside.exists() else shutil.which("azlift")
    if found is None:
        pytest.fail("the azlift console script is not installed (run scripts/setup.sh)")
    return found


@pytest.fixture
def run_azlift() -> Callable[..., CliRun]:
    """Run the installed ``azlift`` executable in a subprocess."""
    def run(*args: str | os.PathLike[str], cwd: str | os.PathLike[str] | None = None,
            timeout: float = 120) -> CliRun:
        done = subprocess.run([installed_azlift(), *map(os.fspath, args)], capture_output=True,
                              text=True, cwd=cwd, timeout=timeout,
                              env={**os.environ, "PYTHONIOENCODING": "utf-8"})
        return CliRun(done.returncode, done.stdout, done.stderr)
    return run

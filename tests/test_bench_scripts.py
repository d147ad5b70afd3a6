"""The benchmark scripts stay runnable: each one loads its imports and parses --help, so a
moved library name breaks the suite rather than the next measurement."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.tools import PROJECT_ROOT

BENCH_SCRIPTS = sorted((PROJECT_ROOT / "scripts").glob("bench_*.py"))


def test_there_are_benchmarks() -> None:
    assert len(BENCH_SCRIPTS) >= 4


@pytest.mark.parametrize("script", BENCH_SCRIPTS, ids=lambda path: path.name)
def test_benchmark_script_loads(script: Path) -> None:
    done = subprocess.run([sys.executable, str(script), "--help"], capture_output=True,
                          text=True, timeout=120, cwd=PROJECT_ROOT)
    assert done.returncode == 0, done.stderr
    assert "usage" in done.stdout.lower()


def test_own_usage_reports_the_commands_peak_not_the_callers() -> None:
    """Started straight from a large process, a command's ru_maxrss is the caller's peak
    (Linux keeps it across execve); through own_usage's launcher it is the command's."""
    sys.path.insert(0, str(PROJECT_ROOT / "scripts"))
    try:
        from own_usage import run_with_usage
    finally:
        sys.path.remove(str(PROJECT_ROOT / "scripts"))
    ballast = bytearray(300 * 2**20)
    ballast[::4096] = b"\x01" * len(range(0, len(ballast), 4096))  # resident, not just mapped
    small = run_with_usage([sys.executable, "-c", "pass"], capture_output=True)
    large = run_with_usage([sys.executable, "-c", "import sys; x = bytearray(150 * 2**20); "
                            "x[::4096] = b'y' * len(x[::4096]); sys.exit(3)"],
                           capture_output=True)
    straight = subprocess.Popen([sys.executable, "-c", "pass"])
    _, status, usage = os.wait4(straight.pid, 0)
    straight.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    straight_peak = usage.ru_maxrss * 1024
    assert straight_peak >= 300 * 2**20  # what the benchmarks used to report
    assert small.returncode == 0 and small.peak_rss < 100 * 2**20
    assert large.returncode == 3 and 150 * 2**20 <= large.peak_rss < 250 * 2**20
    assert 0 < small.wall_s < 10 and 0 < large.cpu_s < 10
    killed = run_with_usage([sys.executable, "-c", "import os; os.kill(os.getpid(), 9)"],
                            capture_output=True)
    assert killed.returncode == -9
    del ballast

"""The benchmark scripts stay runnable: each one loads its imports and parses --help, so a
moved library name breaks the suite rather than the next measurement."""
from __future__ import annotations

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

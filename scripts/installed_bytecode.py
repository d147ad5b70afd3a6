"""Start-up benchmarks measure azlift as an installed copy runs: with its bytecode.

pip compiles every module of a wheel it installs, so a user's `azlift` never compiles its
own source. This checkout is an editable install, and a shell with PYTHONDONTWRITEBYTECODE
set (or a read-only tree) would make every start-up compile the project's modules again:
about 45 ms that no installed copy pays. compile_project writes the bytecode once, as pip
would, before the start-up figures are taken.
"""
from __future__ import annotations

import compileall
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("azlift", "vhd", "upload", "prep")


def compile_project() -> None:
    """Write __pycache__ bytecode for every module of the project's packages."""
    for package in PACKAGES:
        compileall.compile_dir(str(ROOT / package), quiet=1)

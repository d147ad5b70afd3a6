"""A command's own peak RSS, CPU and wall time, for the benchmark scripts.

Linux keeps a process's peak RSS across execve, so a command started straight from a
benchmark that holds hundreds of MiB (in-process SDK uploads, test data) reports the
benchmark's peak, not its own: `python -c pass` started from a 300 MiB process reported
346 MiB, and `azlift upload` 304 MiB where its own peak was 34 MiB. So the command runs
in a child forked from a small launcher interpreter, which reports the child's usage.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

LAUNCHER = """
import os, sys, time
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execv(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)  # as a shell says a command could not be run
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as report:
    report.write(f"{usage.ru_maxrss} {usage.ru_utime + usage.ru_stime} "
                 f"{time.perf_counter() - started} {os.waitstatus_to_exitcode(status)}")
"""


@dataclass(frozen=True)
class Usage:
    """What the command printed and cost; ``returncode`` as subprocess gives it (-N for a
    signal)."""

    returncode: int
    stdout: Any
    stderr: Any
    peak_rss: int  # bytes
    cpu_s: float
    wall_s: float  # from fork to exit: the launcher's own start-up left out


def run_with_usage(command: list[str], **options: Any) -> Usage:
    """``subprocess.run(command, **options)`` through the launcher (``command[0]`` must be
    a path: it is exec'd as is)."""
    with tempfile.NamedTemporaryFile("r") as report:
        done = subprocess.run([sys.executable, "-c", LAUNCHER, report.name, *command],
                              **options)
        fields = report.read().split()
    if len(fields) != 4 or fields[3] == "127":
        raise SystemExit(f"{command[0]} could not be run: {done.stderr!r}")
    return Usage(int(fields[3]), done.stdout, done.stderr, int(fields[0]) * 1024,
                 float(fields[1]), float(fields[2]))

"""A guest's disk file as the hypervisor writes it: the test makes the file (zeros, the size
of the disk), and once the guest has powered off its final bytes land in a few writes
spread over a moment, as a hypervisor flushes its cache after the VM stops. A restless
disk never stops changing (a VM that is still running)."""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.support import disk_layouts as layouts
from tests.vhd.images import scattered_chunks

MIB = 1024 * 1024
SIZE = 32 * MIB


def final_os_disk(path: Path, os_name: str, seed: int) -> Path:
    """The disk the guest leaves behind: a GPT OS layout of ``os_name`` plus scattered
    data (so every guest's blob is its own)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    (layouts.linux_gpt_disk if os_name == "linux" else layouts.windows_gpt_disk)(path, SIZE)
    with open(path, "r+b") as out:
        for offset, data in scattered_chunks(8 * MIB, 10, seed=seed, align=512):
            out.seek(16 * MIB + offset)
            out.write(data)
    return path


def placeholder(path: Path, size: int = SIZE) -> Path:
    """The disk file while the guest runs: allocated size, nothing final in it yet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        out.truncate(size)
    return path


class PowerOffWriter:
    """Waits for ``powered_off()``, then copies ``final`` over ``path`` in ``pieces`` writes
    ``spread`` seconds apart in all."""

    def __init__(self, path: Path, final: Path, powered_off: Callable[[], bool], *,
                 pieces: int = 4, spread: float = 0.8, wait: float = 120.0) -> None:
        self.path, self.final, self.powered_off = path, final, powered_off
        self.pieces, self.spread, self.wait = pieces, spread, wait
        self.written = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "PowerOffWriter":
        self.thread.start()
        return self

    def _run(self) -> None:
        deadline = time.monotonic() + self.wait
        while not self.powered_off():
            if time.monotonic() > deadline:
                return
            time.sleep(0.02)
        data = self.final.read_bytes()
        step = -(-len(data) // self.pieces)
        fd = os.open(self.path, os.O_WRONLY)
        try:
            for start in range(0, len(data), step):
                os.pwrite(fd, data[start:start + step], start)
                os.fsync(fd)
                time.sleep(self.spread / self.pieces)
        finally:
            os.close(fd)
        self.written.set()


class RestlessDisk:
    """Rewrites one sector of ``path`` every ``interval`` seconds until ``stop()``."""

    def __init__(self, path: Path, interval: float = 0.2) -> None:
        self.path, self.interval = path, interval
        self._stop = threading.Event()
        self.writes = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "RestlessDisk":
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            fd = os.open(self.path, os.O_WRONLY)
            try:
                os.pwrite(fd, self.writes.to_bytes(8, "little") * 64, 20 * MIB)
            finally:
                os.close(fd)
            self.writes += 1

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=10)

"""Fixtures for the vhd tests: a small sparse raw disk with known scattered data."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.vhd.images import MIB, Chunk, make_dynamic_vhd, scattered_chunks, write_raw


@pytest.fixture
def disk_chunks() -> list[Chunk]:
    """Known data scattered over a 12 MiB disk, including the first and last bytes."""
    size = 12 * MIB
    chunks = scattered_chunks(size - 2 * 4096, 24, seed=7)
    chunks = [(offset + 4096, data) for offset, data in chunks]
    return [(0, b"\x01first-sector"), *chunks, (size - 7, b"LASTBYT")]


@pytest.fixture
def raw_disk(tmp_path: Path, disk_chunks: list[Chunk]) -> Path:
    """A sparse 12 MiB raw file holding ``disk_chunks``."""
    return write_raw(tmp_path / "disk.raw", 12 * MIB, disk_chunks)


@pytest.fixture
def dynamic_vhd(tmp_path: Path, raw_disk: Path) -> Path:
    """qemu-img's dynamic VHD of ``raw_disk``."""
    return make_dynamic_vhd(raw_disk, tmp_path / "src.vhd")

"""mapped_source: stored bytes written from a read-only mapping of the source, and where
that is (not) used."""
from __future__ import annotations

import os
import random
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from azlift.vhd import mapped_source
from azlift.vhd.conversion import convert
from azlift.vhd.mapped_source import MappedSource
from tests.support.reflink_fs import reflink_filesystem
from tests.support.stored_ways import StoredWays, on_block_device
from tests.vhd.images import Chunk, make_dynamic_vhd, qemu_img, write_raw

MIB = 1024 * 1024


@pytest.fixture
def files(tmp_path: Path) -> Iterator[tuple[int, int, bytes]]:
    """(source fd, dest fd, the source's bytes): 3 MiB of random data, an empty DEST."""
    data = random.Random(11).randbytes(3 * MIB)
    (tmp_path / "source").write_bytes(data)
    source = os.open(tmp_path / "source", os.O_RDWR)
    dest = os.open(tmp_path / "dest", os.O_RDWR | os.O_CREAT, 0o644)
    yield source, dest, data
    os.close(source)
    os.close(dest)


def test_copies_exactly_the_range_asked_at_any_offset(files) -> None:
    source_fd, dest_fd, data = files
    mapped = MappedSource(source_fd)
    assert mapped.copy(dest_fd, 512, 4096, 2 * MIB + 1000) == 2 * MIB + 1000
    assert mapped.copy(dest_fd, 3 * MIB - 7, 0, 7) == 7
    mapped.close()
    written = os.pread(dest_fd, 3 * MIB, 0)
    assert written[:7] == data[-7:]
    assert written[7:4096] == bytes(4089)
    assert written[4096:] == data[512:512 + 2 * MIB + 1000]


def test_only_the_thread_that_made_it_uses_the_mapping(files) -> None:
    source_fd, dest_fd, _ = files
    mapped = MappedSource(source_fd)
    counts: list[int] = []
    other = threading.Thread(target=lambda: counts.append(mapped.copy(dest_fd, 0, 0, MIB)))
    other.start()
    other.join()
    assert counts == [0] and os.fstat(dest_fd).st_size == 0
    assert mapped.usable  # still the owner's to use
    assert mapped.copy(dest_fd, 0, 0, MIB) == MIB


def test_a_source_cut_short_fails_the_copy_not_the_process(files) -> None:
    """Mapped while whole, cut to 1 MiB: the write of bytes past the new end faults in the
    kernel (EFAULT, no SIGBUS); the mapping is given up and the caller told 0."""
    source_fd, dest_fd, data = files
    mapped = MappedSource(source_fd)
    assert mapped.copy(dest_fd, 0, 0, 4096) == 4096  # mapped the whole 3 MiB
    os.ftruncate(source_fd, MIB)
    assert mapped.copy(dest_fd, 2 * MIB, 0, MIB) == 0
    assert not mapped.usable
    assert mapped.copy(dest_fd, 0, 0, 4096) == 0  # given up for good
    # a range past the end of a fresh mapping is not even tried
    assert MappedSource(source_fd).copy(dest_fd, MIB - 10, 0, 11) == 0


def test_a_cut_inside_the_last_page_is_caught_too(files) -> None:
    """Bytes past the end in the page that holds it read as zeros without a fault: the
    size is checked after the write."""
    source_fd, dest_fd, _ = files
    mapped = MappedSource(source_fd)
    assert mapped.copy(dest_fd, 0, 0, 4096) == 4096
    os.ftruncate(source_fd, 3 * MIB - 100)
    assert mapped.copy(dest_fd, 3 * MIB - 4096, 0, 4096) == 0
    assert not mapped.usable


def test_page_tables_are_let_go_every_remap_bytes(files, monkeypatch) -> None:
    source_fd, dest_fd, data = files
    monkeypatch.setattr(mapped_source, "REMAP_BYTES", 2 * MIB)
    mapped = MappedSource(source_fd)
    mapped.copy(dest_fd, 0, 0, MIB)
    first = mapped._mapping
    assert first is not None
    mapped.copy(dest_fd, MIB, MIB, MIB)  # 2 MiB since the mapping was made: unmapped
    assert mapped._mapping is None and first.closed
    assert mapped.copy(dest_fd, 2 * MIB, 2 * MIB, MIB) == MIB  # mapped again
    assert os.pread(dest_fd, 3 * MIB, 0) == data


def test_a_kernel_without_populate_still_copies(files, monkeypatch) -> None:
    source_fd, dest_fd, data = files
    monkeypatch.setattr(mapped_source, "POPULATE_READ", 0x7fff)  # EINVAL: unknown advice
    mapped = MappedSource(source_fd)
    assert mapped.copy(dest_fd, 100, 0, MIB) == MIB
    assert not mapped._populate and mapped.usable
    assert os.pread(dest_fd, MIB, 0) == data[100:100 + MIB]


def dynamic_source(folder: Path) -> tuple[Path, Path]:
    """A qemu-made dynamic VHD (its data 512 bytes off the 4 KiB grid) in ``folder``."""
    chunks: list[Chunk] = [(offset, random.Random(offset).randbytes(length))
              for offset, length in ((0, 64 * 1024), (3 * MIB + 4096, 300 * 1024),
                                     (7 * MIB, MIB))]
    raw = folder / "disk.raw"
    write_raw(raw, 8 * MIB, chunks)
    return raw, make_dynamic_vhd(raw, folder / "disk.vhd")


def test_a_block_device_filesystem_gets_the_mapping(tmp_path: Path, monkeypatch) -> None:
    with reflink_filesystem(tmp_path) as mounted:
        assert on_block_device(mounted)
        raw, source = dynamic_source(mounted)
        ways = StoredWays(monkeypatch)
        out = mounted / "out.vhd"
        convert(str(source), str(out), cache="buffered")
        qemu_img("compare", "-f", "raw", "-F", "vpc", raw, out)
        # the VHD's data is off the block grid: nothing to clone, all written from the map
        assert ways.bytes("mapped") > 0
        assert ways.bytes("copy_file_range") == 0 and ways.bytes("clone") == 0


def test_a_filesystem_without_a_device_keeps_copy_file_range(monkeypatch) -> None:
    """tmpfs, as NFS, SMB and FUSE, has no block device (major 0): there copy_file_range
    may be a server-side copy, so it stays."""
    shm = Path("/dev/shm")
    assert shm.is_dir() and not on_block_device(shm)
    with tempfile.TemporaryDirectory(dir=shm) as folder:
        raw, source = dynamic_source(Path(folder))
        with open(source, "rb") as one, open(raw, "rb") as other:
            assert MappedSource.for_files(one.fileno(), other.fileno()) is None
        ways = StoredWays(monkeypatch)
        out = Path(folder) / "out.vhd"
        convert(str(source), str(out), cache="buffered")
        qemu_img("compare", "-f", "raw", "-F", "vpc", raw, out)
        assert ways.bytes("copy_file_range") > 0 and ways.bytes("mapped") == 0

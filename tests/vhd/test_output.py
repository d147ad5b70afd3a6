"""output: whole blocks written with O_DIRECT, the rest buffered; the same bytes either way."""
from __future__ import annotations

import ctypes
import errno
import mmap
import os
import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from azlift.vhd import cache_policy  # patched there: convert looks its names up at each call
from azlift.vhd.cache_policy import AdaptiveCache
from azlift.vhd.conversion import convert
from azlift.vhd.detect import open_image
from azlift.vhd.errors import InvalidOptionError, TruncatedImageError
from azlift.vhd.output import BLOCK, BUFFER, Output
from tests.support.reflink_fs import reflink_filesystem, shared_bytes
from tests.support.stored_ways import StoredWays
from tests.vhd.images import Chunk, make_dynamic_vhd, qemu_img

MIB = 1024 * 1024
convert_module = sys.modules["azlift.vhd.conversion"]
_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.mmap.restype = ctypes.c_void_p
_LIBC.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_LIBC.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
_LIBC.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]


def cached_bytes(path: Path) -> int:
    """Bytes of ``path`` in the page cache (mincore of a shared read-only mapping)."""
    size = path.stat().st_size
    pages = -(-size // mmap.PAGESIZE)
    fd = os.open(path, os.O_RDONLY)
    try:
        address = _LIBC.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert address not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
        try:
            vector = (ctypes.c_ubyte * pages)()
            assert _LIBC.mincore(address, size, vector) == 0, os.strerror(ctypes.get_errno())
            return sum(page & 1 for page in vector) * mmap.PAGESIZE
        finally:
            _LIBC.munmap(address, size)
    finally:
        os.close(fd)


def fresh_output(path: Path, size: int, cache: str) -> Output:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    os.ftruncate(fd, size)
    return Output(fd, str(path), cache)


def close(out: Output) -> None:
    out.close()
    os.close(out.fd)


HONOURS_O_DIRECT = ("ext2/ext3", "ext4", "xfs", "btrfs")  # `stat -f -c %T` names


@pytest.fixture(scope="module")
def xfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A filesystem that honours O_DIRECT for certain (tmpfs, a common /tmp, takes the flag
    since Linux 6.6 but still caches and accepts any alignment): a loop-mounted XFS, or
    the temporary folder itself where no loop device can be had and it is such a one."""
    folder = tmp_path_factory.mktemp("xfs")
    try:
        with reflink_filesystem(folder) as mounted:
            yield mounted
            return
    except pytest.skip.Exception:
        kind = subprocess.run(["stat", "-f", "-c", "%T", str(folder)], capture_output=True,
                              text=True, check=True).stdout.strip()
        if kind not in HONOURS_O_DIRECT:
            raise
    yield folder


def test_direct_convert_leaves_the_page_cache_alone(tmp_path: Path, dynamic_vhd: Path,
                                                    xfs: Path) -> None:
    direct, buffered = xfs / "direct.vhd", xfs / "buffered.vhd"
    result = convert(str(dynamic_vhd), str(direct), cache="direct")
    reference = convert(str(dynamic_vhd), str(buffered), cache="buffered")
    # what went direct never entered the page cache (the footer did); the buffered copy did
    assert cached_bytes(direct) <= result.written_bytes - result.direct_bytes + 2 * BLOCK
    assert cached_bytes(buffered) >= reference.written_bytes
    qemu_img("compare", "-f", "vpc", "-F", "vpc", dynamic_vhd, direct)
    assert direct.read_bytes() == buffered.read_bytes()
    assert reference.direct_bytes == 0
    assert 0 < result.direct_bytes <= result.written_bytes
    assert result.direct_bytes % BLOCK == 0
    direct.unlink()
    buffered.unlink()


def test_an_unknown_cache_mode_is_refused_before_any_output(tmp_path: Path,
                                                            dynamic_vhd: Path) -> None:
    with pytest.raises(InvalidOptionError, match="--cache must be one of auto, direct, buffered, "
                                                 "not 'fast'"):
        convert(str(dynamic_vhd), str(tmp_path / "out.vhd"), cache="fast")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disk.raw", "src.vhd"]


def test_a_filesystem_refusing_o_direct_gets_a_buffered_copy(tmp_path: Path,
                                                             dynamic_vhd: Path,
                                                             monkeypatch) -> None:
    real_open = os.open

    def refusing_open(path, flags, *args, **kwargs):  # as tmpfs before Linux 6.6 answers
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)
    out = tmp_path / "out.vhd"
    result = convert(str(dynamic_vhd), str(out), cache="direct")
    qemu_img("compare", "-f", "vpc", "-F", "vpc", dynamic_vhd, out)
    assert result.direct_bytes == 0 and result.written_bytes > 0
    # auto has nothing to measure there: it says the copy went buffered, with no phases
    auto = convert(str(dynamic_vhd), str(tmp_path / "auto.vhd"))
    qemu_img("compare", "-f", "vpc", "-F", "vpc", dynamic_vhd, tmp_path / "auto.vhd")
    assert (auto.cache, auto.cache_phases, auto.direct_bytes) == ("buffered", (), 0)


def test_a_direct_write_the_kernel_refuses_is_written_buffered(xfs: Path) -> None:
    """A buffer off the memory alignment O_DIRECT needs gets EINVAL from the kernel: that
    write and every later one go through the page cache, and nothing is lost."""
    path = xfs / "out.bin"
    out = fresh_output(path, 4 * MIB, "direct")
    try:
        assert out.direct
        staging = memoryview(mmap.mmap(-1, 2 * BLOCK + 1))
        staging[1:1 + 2 * BLOCK] = b"\x5a" * 2 * BLOCK
        out._write_buffer(staging[1:], 2 * BLOCK, MIB)  # one byte off a page boundary
        assert not out.direct and out.direct_bytes == 0
        out.set_direct(True)  # --cache auto's switch does not undo the refusal
        assert not out.direct
        out.write(b"\xa5" * BLOCK, 2 * MIB)
    finally:
        close(out)
    data = path.read_bytes()
    assert data[MIB:MIB + 2 * BLOCK] == b"\x5a" * 2 * BLOCK
    assert data[2 * MIB:2 * MIB + BLOCK] == b"\xa5" * BLOCK
    assert data.count(0) == len(data) - 3 * BLOCK
    path.unlink()


def test_set_direct_switches_the_writes_that_follow(xfs: Path) -> None:
    path = xfs / "switched.bin"
    out = fresh_output(path, 4 * MIB, "auto")
    pieces = [bytes([n]) * 4 * BLOCK for n in (1, 2, 3)]
    try:
        assert out.direct  # auto starts direct: the probe
        out.write(pieces[0], 0)
        assert out.direct_bytes == 4 * BLOCK
        out.set_direct(False)
        out.write(pieces[1], MIB)
        assert out.direct_bytes == 4 * BLOCK
        out.set_direct(True)
        out.write(pieces[2], 2 * MIB)
        assert out.direct_bytes == 8 * BLOCK
    finally:
        close(out)
    # the buffered piece is in the page cache, the direct ones are not
    assert 4 * BLOCK <= cached_bytes(path) <= 4 * BLOCK + 2 * BLOCK
    data = path.read_bytes()
    assert data[:4 * BLOCK] + data[MIB:MIB + 4 * BLOCK] + data[2 * MIB:2 * MIB + 4 * BLOCK] \
        == b"".join(pieces)
    assert data.count(0) == len(data) - 12 * BLOCK
    path.unlink()


def script_four_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    """auto's clock scripted: direct, buffered at 4 MiB, direct at 24, buffered at 36."""
    # start 0; probe ends at 4 MiB (1 s: 4 MiB/s); settled at 8 MiB; the window to 16 MiB
    # takes 0.5 s (16 MiB/s, faster), the one to 24 MiB 98.4 s (slower): direct again;
    # settled at 28 MiB; the direct window to 36 MiB takes 199.9 s (slower still): buffered
    seconds = iter([0.0, 1.0, 1.1, 1.6, 100.0, 100.1, 300.0])
    monkeypatch.setattr(cache_policy, "AdaptiveCache", lambda **_: AdaptiveCache(
        lambda: next(seconds, 300.0), probe=4 * MIB, window=8 * MIB, settle=4 * MIB))
    monkeypatch.setattr(cache_policy, "machine_room", lambda: 1 << 40)
    # one worker, two chunks in flight: which chunk begins after which switch is certain
    monkeypatch.setattr(convert_module, "COPY_WORKERS", 1)
    monkeypatch.setattr(convert_module, "COPY_WINDOW", 2)


def assert_buffered_moves(ways: StoredWays, expected: int, in_flight: int) -> None:
    """``expected`` bytes moved as stored through the page cache from the calling thread;
    at most ``in_flight`` more (chunks a worker had begun under direct writes that ran
    after the switch) from workers."""
    main = threading.main_thread()
    buffered = ways.selected(direct=False)
    from_main = sum(move.length for move in buffered if move.thread is main)
    from_workers = sum(move.length for move in buffered if move.thread is not main)
    assert from_main == expected
    assert from_workers <= in_flight


def holey_source(folder: Path, seed: int) -> Path:
    """A raw file of twelve 4 MiB chunks of data and a 4 MiB hole after them."""
    source = folder / f"holey-{seed}.raw"
    with open(source, "wb") as file:
        file.truncate(52 * MIB)
        file.write(random.Random(seed).randbytes(48 * MIB))
    return source


def test_auto_convert_switching_mid_copy_writes_every_byte(xfs: Path, monkeypatch) -> None:
    """A probe, a fast page-cache window, a slow one, a slower direct one: the copy goes
    direct, buffered, direct and buffered again with writes under way at each switch, and
    the output is the source."""
    rng = random.Random(5)
    source = xfs / "dense.raw"
    source.write_bytes(rng.randbytes(48 * MIB))  # twelve 4 MiB chunks, all data
    script_four_switches(monkeypatch)
    out = xfs / "dense.vhd"
    result = convert(str(source), str(out))
    assert result.cache_phases == (("direct", 0), ("buffered", 4 * MIB),
                                   ("direct", 24 * MIB), ("buffered", 36 * MIB))
    qemu_img("compare", "-f", "raw", "-F", "vpc", source, out)
    # chunks 1 and 8-9 go direct, 3-6 and 11-12 buffered (2, 7 and 10 either way)
    assert 12 * MIB <= result.direct_bytes <= 24 * MIB
    assert result.written_bytes == 48 * MIB
    source.unlink()
    out.unlink()


def test_auto_convert_of_stored_runs_copies_buffered_chunks_in_the_calling_thread(
        xfs: Path, monkeypatch) -> None:
    """A source with holes, switching as above: the chunks that go through the page cache
    are moved as stored (cloned, written from the source's mapping or by copy_file_range)
    from the calling thread, each one after the switch that made it buffered; the rest go
    direct from the workers; the output is the source."""
    source = holey_source(xfs, 6)
    script_four_switches(monkeypatch)
    ways = StoredWays(monkeypatch)
    out = xfs / "holey.vhd"
    result = convert(str(source), str(out))
    assert result.cache_phases == (("direct", 0), ("buffered", 4 * MIB),
                                   ("direct", 24 * MIB), ("buffered", 36 * MIB))
    qemu_img("compare", "-f", "raw", "-F", "vpc", source, out)
    # chunks 3-6 and 11-12 from the calling thread, each begun after the switch to
    # buffered; chunks 2 and 10, in flight at those switches, either way
    assert_buffered_moves(ways, 24 * MIB, in_flight=8 * MIB)
    assert result.written_bytes == 48 * MIB
    source.unlink()
    out.unlink()


def convert_buffered_first(monkeypatch: pytest.MonkeyPatch, source: Path, out: Path,
                           *seconds: float) -> tuple[object, StoredWays]:
    """Convert with auto's clock scripted (``seconds``, the last repeating) and the room
    wide enough for the page cache to go first; (the result, how its stored bytes moved)."""
    clock = iter(seconds)
    monkeypatch.setattr(cache_policy, "AdaptiveCache", lambda **options: AdaptiveCache(
        lambda: next(clock, seconds[-1]), probe=4 * MIB, window=8 * MIB, settle=4 * MIB,
        **options))
    monkeypatch.setattr(cache_policy, "machine_room", lambda: 1 << 40)
    monkeypatch.setattr(convert_module, "COPY_WORKERS", 1)
    monkeypatch.setattr(convert_module, "COPY_WINDOW", 2)
    ways = StoredWays(monkeypatch)
    result = convert(str(source), str(out))
    qemu_img("compare", "-f", "raw", "-F", "vpc", source, out)
    return result, ways


def test_auto_stays_in_a_fast_page_cache_when_the_source_fits_its_room(
        xfs: Path, monkeypatch) -> None:
    """The first 4 MiB went through the page cache at 4 GiB/s: no direct probe, every
    chunk moved as stored from the calling thread."""
    source = holey_source(xfs, 7)
    out = xfs / "fast.vhd"
    result, ways = convert_buffered_first(monkeypatch, source, out, 0.0, 1 / 1024)
    assert result.cache == "auto" and result.cache_phases == (("buffered", 0),)
    assert result.direct_bytes == 0 and result.written_bytes == 48 * MIB
    assert ways.threads() == {threading.main_thread()}
    assert ways.bytes(direct=False) == 48 * MIB
    source.unlink()
    out.unlink()


def test_auto_probes_direct_after_a_slow_page_cache_trial(xfs: Path, monkeypatch) -> None:
    """After the first chunk, 4 MiB through the page cache took 10 s: direct from there;
    4 MiB settle, a 4 MiB probe at 4 MiB/s, then the page cache again, whose window at
    16 MiB/s keeps it for the rest."""
    source = holey_source(xfs, 8)
    out = xfs / "slow.vhd"
    result, ways = convert_buffered_first(monkeypatch, source, out,
                                          0.0, 0.5, 10.5, 10.6, 11.6, 11.7, 12.2)
    assert result.cache_phases == (("buffered", 0), ("direct", 8 * MIB),
                                   ("buffered", 16 * MIB))
    # chunks 3 and 4 direct; chunk 5 either way, and from a worker if it went buffered
    # (begun before the switch back); the rest moved as stored from the calling thread
    assert_buffered_moves(ways, 36 * MIB, in_flight=4 * MIB)
    source.unlink()
    out.unlink()


@settings(max_examples=40, deadline=None)
@given(pieces=st.lists(st.tuples(st.integers(0, 3 * MIB), st.integers(1, BUFFER + 3 * BLOCK),
                                 st.booleans()), min_size=1, max_size=6),
       seed=st.integers(0, 2**32 - 1))
def test_writes_and_copies_land_byte_for_byte(tmp_path_factory, pieces, seed: int) -> None:
    """Any offset and length, by write() or copy_from(): the file holds exactly what a
    plain buffered writer would have put there."""
    folder = tmp_path_factory.mktemp("output")
    rng = random.Random(seed)
    size = 3 * MIB + BUFFER + 4 * BLOCK
    source = folder / "source.bin"
    source.write_bytes(rng.randbytes(size))
    source_bytes = source.read_bytes()
    expected = bytearray(size)
    out = fresh_output(folder / "out.bin", size, "direct")
    reader = open_image(str(source), "raw")
    try:
        for offset, length, by_copy in pieces:
            length = min(length, size - offset)
            if by_copy:
                start = rng.randrange(size - length + 1)
                out.copy_from(reader.pread_into, start, offset, length)
                expected[offset:offset + length] = source_bytes[start:start + length]
            else:
                data = rng.randbytes(length)
                out.write(data, offset)
                expected[offset:offset + length] = data
        assert out.direct_bytes % BLOCK == 0
    finally:
        reader.close()
        close(out)
    assert (folder / "out.bin").read_bytes() == expected
    for path in folder.iterdir():  # 40 examples of 7 MiB each: not kept for later runs
        path.unlink()


def test_a_copy_past_the_source_end_raises_the_readers_error(tmp_path: Path) -> None:
    source = tmp_path / "short.bin"
    source.write_bytes(b"\x01" * (3 * BLOCK))
    out = fresh_output(tmp_path / "out.bin", MIB, "direct")
    reader = open_image(str(source), "raw")
    try:
        with pytest.raises(TruncatedImageError, match="ends after 12288 of them"):
            out.copy_from(reader.pread_into, 0, 0, 4 * BLOCK)
    finally:
        reader.close()
        close(out)


def test_on_a_reflink_filesystem_stored_blocks_are_shared_not_copied(
        tmp_path: Path, raw_disk: Path, disk_chunks: list[Chunk]) -> None:
    with reflink_filesystem(tmp_path) as mounted:
        source = mounted / "disk.raw"
        subprocess.run(["cp", "--sparse=always", str(raw_disk), str(source)], check=True)
        out = mounted / "out.vhd"
        result = convert(str(source), str(out), cache="direct")
        qemu_img("compare", "-f", "raw", "-F", "vpc", source, out)
        data = sum(len(chunk) for _, chunk in disk_chunks)
        assert shared_bytes(out) >= data - 2 * BLOCK * len(disk_chunks)  # bar partial blocks
        assert result.direct_bytes <= 2 * BLOCK * len(disk_chunks)
        # a dynamic VHD stores its sectors off the 4 KiB grid: copied, none shared
        dynamic = make_dynamic_vhd(source, mounted / "src.vhd")
        copied = convert(str(dynamic), str(mounted / "copied.vhd"), cache="direct")
        qemu_img("compare", "-f", "vpc", "-F", "vpc", dynamic, mounted / "copied.vhd")
        assert copied.direct_bytes > data // 2

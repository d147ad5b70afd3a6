"""convert: every source kind → fixed VHD, checked against qemu-img as the reference peer."""
from __future__ import annotations

import json
import os
import subprocess
import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from azlift import vhd
from tests.support.stored_ways import StoredWays, on_block_device
from tests.vhd.images import (
    MIB,
    VHDX_BAT_AT,
    Chunk,
    build_differencing_vhd,
    build_dynamic_vhd,
    build_vhdx,
    expected_bytes,
    make_dynamic_vhd,
    make_fixed_vhd,
    make_vhdx,
    qemu_img,
    read_footer,
    scattered_chunks,
    write_raw,
)
from azlift.vhd import sparse_write
from azlift.vhd.mapped_source import MappedSource
from azlift.vhd.check import check_path
from azlift.vhd.conversion import ZERO_BLOCK, convert, footer_for, nonzero_runs, target_size
from azlift.vhd.errors import (
    InvalidSizeError,
    OutputExistsError,
    SameFileError,
    TruncatedImageError,
)


def assert_same_guest_bytes(source: Path | str, source_format: str, out: Path | str) -> None:
    """qemu-img compare: exit 0 only when every guest byte matches (extra tail is zero)."""
    qemu_img("compare", "-f", source_format, "-F", "vpc", source, out)


def qemu_virtual_size(path: Path | str) -> int:
    return json.loads(qemu_img("info", "-f", "vpc", "--output=json", path).stdout)["virtual-size"]


def touched_blocks(chunks: list[Chunk]) -> int:
    """Bytes of the 4 KiB blocks the chunks touch: what a sparse output should allocate."""
    blocks = {index for offset, data in chunks
              for index in range(offset // ZERO_BLOCK, (offset + len(data) - 1) // ZERO_BLOCK + 1)}
    return len(blocks) * ZERO_BLOCK


def assert_azure_ready(out: Path, virtual_size: int) -> None:
    assert out.stat().st_size == virtual_size + 512
    assert virtual_size % MIB == 0
    assert qemu_virtual_size(out) == virtual_size
    report = check_path(str(out))
    assert report.format == "vhd-fixed"
    assert not [f for f in report.findings if f.severity == "error"
                and f.code != "size_too_small"], report.findings


@pytest.mark.parametrize("size", [12 * MIB, 12 * MIB + 1000, 5 * MIB + 512, 3 * MIB - 1])
def test_raw_of_any_length(tmp_path: Path, size: int) -> None:
    chunks = scattered_chunks(size, 20, seed=size) + [(size - 3, b"END")]
    raw = write_raw(tmp_path / "disk.raw", size, chunks)
    out = tmp_path / "out.vhd"
    result = convert(str(raw), str(out))
    assert result.virtual_size == -(-size // MIB) * MIB
    assert_azure_ready(out, result.virtual_size)
    assert_same_guest_bytes(raw, "raw", out)
    allocated = out.stat().st_blocks * 512
    assert allocated <= touched_blocks(chunks) + 2 * ZERO_BLOCK, (allocated, result)
    assert result.written_bytes <= touched_blocks(chunks)


@pytest.mark.parametrize("force_size", [True, False])
def test_qemu_fixed_vhd(tmp_path: Path, raw_disk: Path, force_size: bool) -> None:
    src = make_fixed_vhd(raw_disk, tmp_path / "src.vhd", force_size=force_size)
    out = tmp_path / "out.vhd"
    result = convert(str(src), str(out))
    assert_azure_ready(out, result.virtual_size)
    assert_same_guest_bytes(src, "vpc", out)
    assert_same_guest_bytes(raw_disk, "raw", out)
    assert read_footer(out)[2] == read_footer(src)[2]  # the disk keeps its unique id


def test_qemu_dynamic_vhd(tmp_path: Path, raw_disk: Path, disk_chunks: list[Chunk]) -> None:
    src = make_dynamic_vhd(raw_disk, tmp_path / "src.vhd")
    out = tmp_path / "out.vhd"
    result = convert(str(src), str(out))
    assert result.source_format == "vhd-dynamic"
    assert_azure_ready(out, result.virtual_size)
    assert_same_guest_bytes(src, "vpc", out)
    assert out.stat().st_blocks * 512 <= touched_blocks(disk_chunks) + 2 * ZERO_BLOCK
    # only the data qemu stored is read, not the holes of its 2 MiB blocks
    assert result.data_bytes <= touched_blocks(disk_chunks) + 4 * ZERO_BLOCK * len(disk_chunks)


@pytest.mark.parametrize("kind", ["raw", "vpc", "vhdx"])
def test_stored_data_moves_without_python_buffers(tmp_path: Path, raw_disk: Path,
                                                  disk_chunks: list[Chunk], monkeypatch,
                                                  kind) -> None:
    src = {"raw": lambda: raw_disk,
           "vpc": lambda: make_dynamic_vhd(raw_disk, tmp_path / "src.vhd"),
           "vhdx": lambda: make_vhdx(raw_disk, tmp_path / "src.vhdx")}[kind]()
    ways = StoredWays(monkeypatch)
    out = tmp_path / "out.vhd"
    convert(str(src), str(out), cache="buffered")
    assert_same_guest_bytes(src, kind, out)
    assert ways.bytes() > 0  # the source marks zeros as holes: its data was moved as stored
    # on a block-device filesystem from a mapping of the source, else kernel-side
    if on_block_device(tmp_path):
        assert ways.bytes("mapped", "clone") > 0 and ways.bytes("copy_file_range") == 0
    else:
        assert ways.bytes("copy_file_range", "clone") > 0 and ways.bytes("mapped") == 0
    # from the calling thread: writers to one file take its lock in turn
    assert ways.threads() == {threading.main_thread()}
    assert out.stat().st_blocks * 512 <= touched_blocks(disk_chunks) + 2 * ZERO_BLOCK


def test_refused_kernel_copy_falls_back_to_user_space(tmp_path: Path, raw_disk: Path,
                                                      disk_chunks: list[Chunk],
                                                      monkeypatch) -> None:
    src = make_dynamic_vhd(raw_disk, tmp_path / "src.vhd")
    # as on a network filesystem (no mapping) whose pair refuses copy_file_range
    monkeypatch.setattr(MappedSource, "for_files", classmethod(lambda cls, *fds: None))
    ways = StoredWays(monkeypatch, refuse_kernel_copy=True)
    out = tmp_path / "out.vhd"
    convert(str(src), str(out), cache="buffered")
    assert_same_guest_bytes(src, "vpc", out)
    assert ways.bytes() == 0
    assert out.stat().st_blocks * 512 <= touched_blocks(disk_chunks) + 2 * ZERO_BLOCK


def test_a_source_cut_short_while_mapped_is_reported_not_copied_as_zeros(
        tmp_path: Path, monkeypatch) -> None:
    """The source loses its tail once the copy has begun: the mapped write gives up, the
    kernel-side copy finds the end, and convert says where the source ends; no DEST."""
    src = tmp_path / "holey.raw"
    with open(src, "wb") as file:
        file.truncate(12 * MIB)  # a hole at the end: runs are copied as stored
        file.write(bytes(range(256)) * (8 * MIB // 256))
    real_copy = MappedSource.copy

    def cut_first(self: MappedSource, dest_fd: int, source: int, dest: int,
                  length: int) -> int:
        os.truncate(src, MIB + 100)  # mid-page: the mapping alone would read zeros
        return real_copy(self, dest_fd, source, dest, length)

    monkeypatch.setattr(MappedSource, "copy", cut_first)
    monkeypatch.setattr(MappedSource, "for_files", classmethod(lambda cls, fd, _: cls(fd)))
    out = tmp_path / "out.vhd"
    with pytest.raises(TruncatedImageError) as caught:
        convert(str(src), str(out), cache="buffered")
    message = str(caught.value)
    assert message.startswith(f"{src}: expected ") and f"at offset {MIB + 100}," in message
    assert "the file ends after 0 of them" in message
    assert not out.exists()
    assert not list(tmp_path.glob(".out.vhd.azlift-tmp-*"))


@pytest.mark.parametrize("cache", ["buffered", "direct"])
def test_a_dense_raw_source_cut_short_mid_read_is_reported_not_padded_with_zeros(
        tmp_path: Path, monkeypatch, cache: str) -> None:
    """A raw file without holes is read and scanned for zeros: bytes lost to a truncation
    after it was opened must not pass for the zeros past its end."""
    from azlift.vhd.raw import RawImage

    src = tmp_path / "dense.raw"
    src.write_bytes(bytes(range(1, 256)) * (12 * MIB // 255))
    real_read = RawImage.read

    def cut_first(self: RawImage, offset: int, length: int) -> bytes:
        if os.path.getsize(src) > MIB + 100:
            os.truncate(src, MIB + 100)
        return real_read(self, offset, length)

    monkeypatch.setattr(RawImage, "read", cut_first)
    out = tmp_path / "out.vhd"
    with pytest.raises(TruncatedImageError) as caught:
        convert(str(src), str(out), cache=cache)
    message = str(caught.value)
    assert message.startswith(f"{src}: expected ") and "the file ends after" in message
    assert not out.exists()
    assert not list(tmp_path.glob(".out.vhd.azlift-tmp-*"))


def test_the_tail_past_a_raw_files_end_still_reads_as_zeros(tmp_path: Path) -> None:
    """The padding to a whole sector is the only zeros a raw read makes up."""
    src = tmp_path / "odd.raw"
    src.write_bytes(b"\x07" * (MIB + 100))
    with vhd.open_image(str(src), "raw") as image:
        assert image.virtual_size == MIB + 512
        tail = image.read(MIB, 512)
    assert tail == b"\x07" * 100 + bytes(412)


def test_a_source_without_holes_is_scanned_for_zeros(tmp_path: Path, raw_disk: Path,
                                                     disk_chunks: list[Chunk],
                                                     monkeypatch) -> None:
    dense = tmp_path / "dense.raw"
    dense.write_bytes(raw_disk.read_bytes())  # every zero written out: no hole to trust
    ways = StoredWays(monkeypatch)
    out = tmp_path / "out.vhd"
    convert(str(dense), str(out))
    assert_same_guest_bytes(dense, "raw", out)
    assert ways.bytes() == 0
    assert out.stat().st_blocks * 512 <= touched_blocks(disk_chunks) + 2 * ZERO_BLOCK


@pytest.mark.parametrize("block_size", [MIB, 8 * MIB, 32 * MIB])
def test_qemu_vhdx_block_sizes(tmp_path: Path, raw_disk: Path, disk_chunks: list[Chunk],
                               block_size: int) -> None:
    src = make_vhdx(raw_disk, tmp_path / "src.vhdx", block_size=block_size)
    out = tmp_path / "out.vhd"
    result = convert(str(src), str(out))
    assert result.source_format == "vhdx"
    assert_azure_ready(out, result.virtual_size)
    assert_same_guest_bytes(src, "vhdx", out)
    assert_same_guest_bytes(raw_disk, "raw", out)
    assert out.stat().st_blocks * 512 <= touched_blocks(disk_chunks) + 2 * ZERO_BLOCK
    assert result.data_bytes <= touched_blocks(disk_chunks) + 4 * ZERO_BLOCK * len(disk_chunks)
    with vhd.open_image(str(src)) as image:  # the VHDX's virtual disk id becomes the VHD's
        assert footer_for(image, result.virtual_size).unique_id_str == result.unique_id
        assert result.unique_id == image.virtual_disk_id


@pytest.mark.parametrize("block_size", [512 * 1024, 2 * MIB, 8 * MIB])
def test_dynamic_vhd_block_sizes(tmp_path: Path, block_size: int) -> None:
    size = 24 * MIB
    chunks = scattered_chunks(size, 30, seed=block_size)
    src = build_dynamic_vhd(tmp_path / "src.vhd", size, chunks, block_size=block_size)
    out = tmp_path / "out.vhd"
    convert(str(src), str(out))
    with vhd.open_image(str(out)) as image:
        assert image.read(0, size) == expected_bytes(size, chunks)
    assert_same_guest_bytes(src, "vpc", out)


def test_differencing_chain(tmp_path: Path) -> None:
    size = 16 * MIB
    base_chunks = scattered_chunks(size, 10, seed=3, align=512)
    child_chunks = scattered_chunks(size, 10, seed=4, align=512)
    parent = build_dynamic_vhd(tmp_path / "parent.vhd", size, base_chunks)
    child = build_differencing_vhd(tmp_path / "child.vhd", parent, child_chunks)
    out = tmp_path / "out.vhd"
    convert(str(child), str(out))
    expected = bytearray(expected_bytes(size, base_chunks))
    for offset, data in child_chunks:
        expected[offset:offset + len(data)] = data
    with vhd.open_image(str(out)) as image:
        assert image.read(0, size) == bytes(expected)
    with pytest.raises(SameFileError):
        convert(str(child), str(parent), force=True)


def test_a_sparse_differencing_vhd_judges_its_parents_sectors_in_the_workers(
        tmp_path: Path, monkeypatch) -> None:
    """Its own runs go kernel-side, but the parent's sectors are read and scanned for
    zeros in user space: that work stays on the pool, where it overlaps."""
    size = 16 * MIB
    base_chunks = scattered_chunks(size, 10, seed=3, align=512)
    child_chunks = scattered_chunks(size, 10, seed=4, align=512)
    parent = build_dynamic_vhd(tmp_path / "parent.vhd", size, base_chunks)
    dense = build_differencing_vhd(tmp_path / "dense.vhd", parent, child_chunks)
    child = tmp_path / "child.vhd"  # the same bytes, its zero blocks left as holes
    subprocess.run(["cp", "--sparse=always", str(dense), str(child)], check=True)
    judged: list[threading.Thread] = []
    real_write_nonzero = sparse_write.write_nonzero

    def spy(out, position: int, data: bytes) -> int:
        judged.append(threading.current_thread())
        return real_write_nonzero(out, position, data)

    monkeypatch.setattr(sparse_write, "write_nonzero", spy)
    ways = StoredWays(monkeypatch)
    out = tmp_path / "out.vhd"
    convert(str(child), str(out), cache="buffered")
    expected = bytearray(expected_bytes(size, base_chunks))
    for offset, data in child_chunks:
        expected[offset:offset + len(data)] = data
    with vhd.open_image(str(out)) as image:
        assert image.read(0, size) == bytes(expected)
    assert ways.bytes() > 0  # the child's own runs, as stored
    assert judged and threading.main_thread() not in judged


def test_size_option_grows_and_rounds(tmp_path: Path, raw_disk: Path) -> None:
    out = tmp_path / "big.vhd"
    result = convert(str(raw_disk), str(out), size=30 * MIB + 1)
    assert result.virtual_size == 31 * MIB
    assert qemu_virtual_size(out) == 31 * MIB
    assert_same_guest_bytes(raw_disk, "raw", out)


def test_size_below_the_data_is_a_usage_error(tmp_path: Path, raw_disk: Path) -> None:
    out = tmp_path / "small.vhd"
    with pytest.raises(InvalidSizeError) as caught:
        convert(str(raw_disk), str(out), size=MIB)
    assert caught.value.exit_code == 2
    assert not out.exists()


@given(st.integers(min_value=0, max_value=2 ** 44), st.integers(min_value=0, max_value=2 ** 44))
def test_target_size_is_whole_mib_and_never_cuts(source: int, wanted: int) -> None:
    if wanted < source:
        with pytest.raises(InvalidSizeError):
            target_size(source, wanted)
        return
    target = target_size(source, wanted)
    assert target % MIB == 0 and target >= max(source, wanted, MIB)
    assert target - max(source, wanted, MIB) < MIB


def test_existing_dest_is_refused_then_replaced_with_force(tmp_path: Path,
                                                           raw_disk: Path) -> None:
    out = tmp_path / "out.vhd"
    out.write_bytes(b"keep me")
    with pytest.raises(OutputExistsError) as caught:
        convert(str(raw_disk), str(out))
    assert caught.value.exit_code == 5
    assert out.read_bytes() == b"keep me"
    convert(str(raw_disk), str(out), force=True)
    assert_same_guest_bytes(raw_disk, "raw", out)


def test_dest_appearing_during_the_copy_is_not_replaced(tmp_path: Path,
                                                        raw_disk: Path) -> None:
    out = tmp_path / "out.vhd"

    def someone_else_writes_dest(done: int, total: int) -> None:
        if done == total and not out.exists():
            out.write_bytes(b"theirs")

    with pytest.raises(OutputExistsError):
        convert(str(raw_disk), str(out), progress=someone_else_writes_dest)
    assert out.read_bytes() == b"theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disk.raw", "out.vhd"]


def test_dest_equal_to_source_is_refused_even_with_force(tmp_path: Path,
                                                         raw_disk: Path) -> None:
    before = raw_disk.read_bytes()
    link = tmp_path / "hardlink.raw"
    os.link(raw_disk, link)
    for dest in (raw_disk, link, tmp_path / "." / raw_disk.name):
        with pytest.raises(SameFileError):
            convert(str(raw_disk), str(dest), force=True)
    assert raw_disk.read_bytes() == before


@pytest.mark.parametrize("subformat", ["twoGbMaxExtentSparse", "monolithicFlat"])
def test_a_file_the_source_reads_is_refused_as_dest_even_with_force(
        tmp_path: Path, raw_disk: Path, subformat: str) -> None:
    """A VMDK's extent files are the source's data as much as its descriptor is."""
    from tests.vhd.vmdk_images import make_vmdk

    descriptor = make_vmdk(raw_disk, tmp_path / "disk.vmdk", subformat)
    extents = sorted(path for path in tmp_path.glob("disk-*.vmdk"))
    assert extents, list(tmp_path.iterdir())
    before = {path: path.read_bytes() for path in [descriptor, *extents]}
    for dest in extents:
        with pytest.raises(SameFileError) as caught:
            convert(str(descriptor), str(dest), force=True)
        assert str(caught.value) == (f"{dest} is a file the source image {descriptor} "
                                     f"reads; expected a destination outside the source")
    assert {path: path.read_bytes() for path in before} == before
    qemu_img("compare", "-f", "vmdk", "-F", "raw", descriptor, raw_disk)


def test_the_ova_holding_the_source_is_refused_as_dest_even_with_force(
        tmp_path: Path, raw_disk: Path) -> None:
    from tests.vhd.vmdk_images import make_ova, make_vmdk

    stream = make_vmdk(raw_disk, tmp_path / "disk.vmdk", "streamOptimized")
    package = make_ova(tmp_path / "vm.ova", [(stream, raw_disk.stat().st_size)])
    before = package.read_bytes()
    with pytest.raises(SameFileError):
        convert(str(package), str(package), force=True)
    assert package.read_bytes() == before


def test_source_is_never_modified(tmp_path: Path, raw_disk: Path) -> None:
    src = make_dynamic_vhd(raw_disk, tmp_path / "src.vhd")
    before = (src.read_bytes(), src.stat().st_mtime_ns)
    convert(str(src), str(tmp_path / "out.vhd"))
    assert (src.read_bytes(), src.stat().st_mtime_ns) == before


def test_interruption_leaves_neither_dest_nor_temp(tmp_path: Path, raw_disk: Path) -> None:
    calls = []

    def interrupt(done: int, total: int) -> None:
        calls.append(done)
        if done > 0:
            raise KeyboardInterrupt

    out = tmp_path / "out.vhd"
    with pytest.raises(KeyboardInterrupt):
        convert(str(raw_disk), str(out), progress=interrupt)
    assert calls and not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disk.raw"]


def test_interruption_keeps_an_existing_dest(tmp_path: Path, raw_disk: Path) -> None:
    out = tmp_path / "out.vhd"
    out.write_bytes(b"old")

    def interrupt(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        convert(str(raw_disk), str(out), force=True, progress=interrupt)
    assert out.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disk.raw", "out.vhd"]


def test_progress_is_monotonic_and_reaches_the_data_size(tmp_path: Path,
                                                         raw_disk: Path) -> None:
    seen: list[tuple[int, int]] = []
    result = convert(str(raw_disk), str(tmp_path / "out.vhd"),
                     progress=lambda done, total: seen.append((done, total)))
    dones = [done for done, _ in seen]
    assert dones == sorted(dones)
    assert seen[-1] == (result.data_bytes, result.data_bytes)
    assert result.data_bytes < 12 * MIB  # only the extents were read


def test_output_permissions_follow_the_umask(tmp_path: Path, raw_disk: Path) -> None:
    out = tmp_path / "out.vhd"
    convert(str(raw_disk), str(out))
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask


def test_footer_for_is_deterministic(tmp_path: Path, raw_disk: Path) -> None:
    with vhd.open_image(str(raw_disk)) as image:
        first = footer_for(image, 12 * MIB)
        assert footer_for(image, 12 * MIB) == first
    os.utime(raw_disk, ns=(0, 10 ** 18))
    with vhd.open_image(str(raw_disk)) as image:
        assert footer_for(image, 12 * MIB).unique_id != first.unique_id
    out = tmp_path / "out.vhd"
    convert(str(raw_disk), str(out))
    with vhd.open_image(str(raw_disk)) as image:
        assert footer_for(image, 12 * MIB).pack() == out.read_bytes()[-512:]


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=3 * ZERO_BLOCK), offset=st.integers(0, 4 * ZERO_BLOCK),
       zeros=st.lists(st.tuples(st.integers(0, 3 * ZERO_BLOCK), st.integers(0, 2 * ZERO_BLOCK)),
                      max_size=4))
def test_nonzero_runs_cover_every_nonzero_byte(data: bytes, offset: int,
                                               zeros: list[tuple[int, int]]) -> None:
    buffer = bytearray(data)
    for start, length in zeros:
        buffer[start:start + length] = bytes(len(buffer[start:start + length]))
    runs = nonzero_runs(bytes(buffer), offset)
    rebuilt = bytearray(len(buffer))
    for start, stop in runs:
        assert 0 <= start < stop <= len(buffer)
        assert start == 0 or (offset + start) % ZERO_BLOCK == 0
        assert stop == len(buffer) or (offset + stop) % ZERO_BLOCK == 0
        rebuilt[start:stop] = buffer[start:stop]
    assert rebuilt == buffer
    assert sum(stop - start for start, stop in runs) <= len(buffer)
    _no_zero_block_written(buffer, offset, runs)


def _no_zero_block_written(buffer: bytearray, offset: int, runs) -> None:
    """Every aligned block a run covers holds a non-zero byte: no zero block is written."""
    for start, stop in runs:
        edge = start
        while edge < stop:
            block_end = min(stop, edge + ZERO_BLOCK - (offset + edge) % ZERO_BLOCK)
            assert any(buffer[edge:block_end]), (start, stop, edge)
            edge = block_end


@pytest.mark.parametrize("offset, data, expected", [
    (4000, bytes(96) + b"\x5a" * 8192, [(96, 8288)]),  # zero partial block in front
    (0, b"\x5a" * 8192 + bytes(100), [(0, 8192)]),  # zero partial block at the end
    (4000, bytes(96) + b"\x5a" * 8192 + bytes(10), [(96, 8288)]),  # both
    (100, bytes(50), []),  # one partial block, all zero
    (100, b"\x00" * 49 + b"\x01", [(0, 50)]),
])
def test_nonzero_runs_drop_zero_partial_blocks_at_the_ends(offset: int, data: bytes,
                                                            expected) -> None:
    assert nonzero_runs(data, offset) == expected


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 80 * ZERO_BLOCK), offset=st.integers(0, 4 * ZERO_BLOCK),
       zeros=st.lists(st.tuples(st.integers(0, 80 * ZERO_BLOCK), st.integers(1, 3 * ZERO_BLOCK)),
                      max_size=5),
       numpy_from=st.sampled_from([1, 256 * 1024]))
def test_nonzero_runs_of_dense_data_with_zero_stretches(size: int, offset: int, zeros,
                                                         numpy_from: int) -> None:
    """Mostly non-zero buffers (the substring fast path, the block loop and numpy): the runs
    are exactly the non-zero aligned blocks."""
    from azlift.vhd import sparse_write

    buffer = bytearray(b"\x5a" * size)
    for start, length in zeros:
        buffer[start:start + length] = bytes(len(buffer[start:start + length]))
    saved, sparse_write.NUMPY_FROM = sparse_write.NUMPY_FROM, numpy_from
    try:
        runs = nonzero_runs(bytes(buffer), offset)
    finally:
        sparse_write.NUMPY_FROM = saved
    rebuilt = bytearray(len(buffer))
    for start, stop in runs:
        rebuilt[start:stop] = buffer[start:stop]
    assert rebuilt == buffer
    _no_zero_block_written(buffer, offset, runs)


def test_job_list_does_not_grow_with_the_disk(tmp_path: Path) -> None:
    """An 8 TiB VHDX whose BAT maps every block to the same stored block: converting it
    starts with memory bounded by the copy window, not by 2 million 4 MiB chunks."""
    size, block = 8 * 1024 ** 4, 32 * MIB
    # the stored block is written whole: a file without holes, every block is an extent
    src = build_vhdx(tmp_path / "huge.vhdx", size, [(0, b"\xeb" * block)], block_size=block)
    ratio = (1 << 23) * 512 // block
    blocks = np.arange(size // block)
    with open(src, "r+b") as handle:
        handle.seek(VHDX_BAT_AT)
        count = int(blocks[-1] + blocks[-1] // ratio) + 1
        bat = np.frombuffer(handle.read(8 * count), dtype="<u8").copy()
        bat[blocks + blocks // ratio] = bat[0]
        handle.seek(VHDX_BAT_AT)
        handle.write(bat.tobytes())

    def stop_soon(done: int, total: int) -> None:
        assert total == size
        if done >= 4 * 4 * MIB:
            raise KeyboardInterrupt

    tracemalloc.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            convert(str(src), str(tmp_path / "out.vhd"), progress=stop_soon)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100 * MIB, peak
    assert sorted(p.name for p in tmp_path.iterdir()) == ["huge.vhdx"]

"""Every reader against images made by qemu-img (and by hand where qemu cannot write them)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import vhd
from tests.vhd.images import (
    MIB,
    Chunk,
    build_fixed_vhd,
    covered,
    expected_bytes,
    make_fixed_vhd,
    write_raw,
)


def assert_reads_like(image: vhd.DiskImage, expected: bytes) -> None:
    """Whole-disk and unaligned partial reads return the reference bytes."""
    assert image.virtual_size == len(expected)
    assert image.read(0, len(expected)) == expected
    step = 1_000_003
    for offset in range(0, len(expected) - 1, step):
        length = min(77_777, len(expected) - offset)
        assert image.read(offset, length) == expected[offset:offset + length]
    assert image.read(len(expected), 0) == b""


def assert_extents_sane(image: vhd.DiskImage, chunks: list[Chunk], slack: int) -> None:
    """Extents are ascending, disjoint, inside the disk, cover the data, and are not much more."""
    extents = list(image.extents())
    previous_end = -1
    for offset, length in extents:
        assert length > 0 and offset > previous_end, extents
        previous_end = offset + length
    assert previous_end <= image.virtual_size
    assert covered(extents, chunks)
    data = sum(len(data) for _, data in chunks)
    assert sum(length for _, length in extents) <= data + slack


# --- raw ------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [1, 511, 512, 513, 4095, 1_000_001])
def test_raw_of_odd_length_reads_zero_padded(tmp_path: Path, size: int) -> None:
    chunks = [(0, os.urandom(min(size, 300))), (size - 1, b"\xee")]
    path = write_raw(tmp_path / "odd.img", size, chunks)
    with vhd.open_image(path) as image:
        assert image.format == "raw"
        padded = -(-size // 512) * 512
        assert_reads_like(image, expected_bytes(size, chunks) + bytes(padded - size))
        assert covered(image.extents(), chunks)
        assert all(o % 512 == 0 and n % 512 == 0 for o, n in image.extents())


def test_raw_extents_follow_holes(raw_disk: Path, disk_chunks: list[Chunk]) -> None:
    with vhd.open_image(raw_disk) as image:
        assert_reads_like(image, expected_bytes(12 * MIB, disk_chunks))
        # file-system blocks are at most 4 KiB here: two per chunk of slack at worst
        assert_extents_sane(image, disk_chunks, slack=2 * 4096 * len(disk_chunks))
        info = image.describe()
        assert info["format"] == "raw" and info["virtual_size"] == 12 * MIB
        assert info["allocated_bytes"] < 12 * MIB // 2


def test_read_past_the_end_is_an_error(raw_disk: Path) -> None:
    with vhd.open_image(raw_disk) as image:
        with pytest.raises(vhd.ReadRangeError):
            image.read(12 * MIB - 10, 11)
        with pytest.raises(vhd.ReadRangeError):
            image.read(-1, 2)


# --- fixed VHD ------------------------------------------------------------------------
@pytest.mark.parametrize("force_size", [True, False])
def test_fixed_vhd_from_qemu(tmp_path: Path, raw_disk: Path, disk_chunks: list[Chunk],
                             force_size: bool) -> None:
    path = make_fixed_vhd(raw_disk, tmp_path / "fixed.vhd", force_size=force_size)
    with vhd.open_image(path) as image:
        assert image.format == "vhd-fixed"
        assert isinstance(image, vhd.DiskImage)
        size = image.virtual_size
        if force_size:
            assert size == 12 * MIB
        else:  # rounded up to a CHS geometry
            assert size >= 12 * MIB
        assert image.data_size == os.path.getsize(path) - 512
        assert_reads_like(image, expected_bytes(size, disk_chunks))
        assert_extents_sane(image, disk_chunks, slack=2 * 4096 * len(disk_chunks))
        info = image.describe()
        assert info["footer"]["checksum"] == "ok"
        assert info["footer"]["disk_type"] == "fixed"
        assert info["footer"]["creator_app"] in ("qem2", "qemu")
        assert info["footer"]["current_size"] == size
        assert image.footer.current_size == size


def test_fixed_vhd_with_short_footer(tmp_path: Path, disk_chunks: list[Chunk]) -> None:
    path = build_fixed_vhd(tmp_path / "short.vhd", 12 * MIB, disk_chunks, short_footer=True)
    with vhd.open_image(path) as image:
        assert image.format == "vhd-fixed"
        assert image.data_size == 12 * MIB
        assert_reads_like(image, expected_bytes(12 * MIB, disk_chunks))


# --- detection ------------------------------------------------------------------------
def test_vhd_name_without_footer_is_refused_unless_named_raw(raw_disk: Path) -> None:
    named = raw_disk.rename(raw_disk.with_suffix(".vhd"))
    with pytest.raises(vhd.FormatMismatchError, match="--format raw"):
        vhd.open_image(named)
    with vhd.open_image(named, format="raw") as image:
        assert image.format == "raw"


def test_content_wins_over_extension(tmp_path: Path, raw_disk: Path) -> None:
    path = make_fixed_vhd(raw_disk, tmp_path / "disk.img")
    with vhd.open_image(path) as image:
        assert image.format == "vhd-fixed"


@pytest.mark.parametrize("kind", ["missing", "directory", "unreadable"])
def test_io_errors_name_the_path(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"{kind}.vhd"
    if kind == "directory":
        path.mkdir()
    elif kind == "unreadable":
        path.write_bytes(b"x" * 1024)
        path.chmod(0)
        if os.access(path, os.R_OK):  # root reads anything: use a path that cannot open
            path = tmp_path / "no" / "such" / "dir" / "x.vhd"
    with pytest.raises(vhd.ImageIOError, match=str(path.name)):
        vhd.open_image(path)


def test_unknown_forced_format(raw_disk: Path) -> None:
    with pytest.raises(vhd.UnknownFormatError, match="raw, vhd, vhdx"):
        vhd.open_image(raw_disk, format="qcow2")

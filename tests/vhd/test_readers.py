"""Every reader against images made by qemu-img (and by hand where qemu cannot write them)."""
from __future__ import annotations

import json
import os
import struct
import uuid
from pathlib import Path

import pytest

from azlift import vhd
from tests.vhd.corpus import dynamic as corpus_dynamic, valid_images
from tests.vhd.images import (
    MIB,
    Chunk,
    build_differencing_vhd,
    build_dynamic_vhd,
    build_fixed_vhd,
    build_vhdx,
    covered,
    expected_bytes,
    make_dynamic_vhd,
    make_fixed_vhd,
    make_vhdx,
    qemu_convert,
    qemu_img,
    scattered_chunks,
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
    with pytest.raises(vhd.UnknownFormatError, match="raw, vhd, vhdx, qcow2"):
        vhd.open_image(raw_disk, format="qed")


# --- dynamic VHD ----------------------------------------------------------------------
# qemu-img writes a chunk in 4 KiB units of the guest, which straddle the file's 4 KiB
# pages (blocks start one bitmap sector after a sector boundary): up to two pages more on
# each side of a chunk. The first block also shares the file's first page with headers.
PAGE_SLACK = 4 * 4096
FIRST_PAGE = 4096

@pytest.mark.parametrize("force_size", [True, False])
def test_dynamic_vhd_from_qemu(tmp_path: Path, force_size: bool) -> None:
    size = 64 * MIB
    chunks = scattered_chunks(size, 6, seed=11)
    raw = write_raw(tmp_path / "src.raw", size, chunks)
    path = make_dynamic_vhd(raw, tmp_path / "dyn.vhd", force_size=force_size)
    with vhd.open_image(path) as image:
        assert image.format == "vhd-dynamic"
        if not force_size:  # qemu rounds up to a CHS geometry; compare the guest bytes
            assert image.virtual_size >= size
            size = image.virtual_size
        assert_reads_like(image, expected_bytes(size, chunks))
        # qemu allocates 2 MiB blocks but leaves their unwritten part a hole in the file:
        # the extents hold the data and the file pages around it, not whole blocks
        assert_extents_sane(image, chunks, slack=PAGE_SLACK * len(chunks) + FIRST_PAGE)
        info = image.describe()
        assert info["dynamic_header"]["block_size"] == 2 * MIB
        assert info["bat"]["total_blocks"] == -(-size // (2 * MIB))
        assert 0 < info["bat"]["allocated_blocks"] <= 12
        assert info["allocated_bytes"] == sum(length for _, length in image.extents())
        assert info["allocated_bytes"] < info["bat"]["allocated_blocks"] * 2 * MIB
        assert info["footer_state"] == {"end": "ok", "copy": "ok"}


@pytest.mark.parametrize("block_size", [512 * 1024, 2 * MIB, 4 * MIB])
def test_dynamic_vhd_by_hand(tmp_path: Path, block_size: int) -> None:
    size = 10 * MIB + 3 * 512  # the last block is partial
    chunks = scattered_chunks(size, 12, seed=block_size)
    chunks.append((size - 100, b"z" * 100))
    path = build_dynamic_vhd(tmp_path / "hand.vhd", size, chunks, block_size=block_size)
    with vhd.open_image(path) as image:
        assert_reads_like(image, expected_bytes(size, chunks))
        assert_extents_sane(image, chunks, slack=2 * block_size * len(chunks))
        assert image.describe()["dynamic_header"]["block_size"] == block_size


def test_dynamic_vhd_with_damaged_end_footer_uses_the_copy(tmp_path: Path) -> None:
    size = 4 * MIB
    chunks = [(5000, b"data" * 300)]
    path = build_dynamic_vhd(tmp_path / "d.vhd", size, chunks)
    with open(path, "r+b") as handle:
        handle.seek(-512 + 70, os.SEEK_END)
        flipped = handle.read(1)[0] ^ 0xFF
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([flipped]))  # inside the unique id: the checksum no longer matches
    with vhd.open_image(path) as image:
        assert image.describe()["footer_state"] == {"end": "bad", "copy": "ok"}
        assert image.read(0, size) == expected_bytes(size, chunks)


def test_extents_of_a_2040_gib_dynamic_vhd_come_from_the_bat(tmp_path: Path) -> None:
    path = tmp_path / "huge.vhd"
    qemu_img("create", "-f", "vpc", "-o", "force_size=on", path, "2040G")
    blocks = 1044480
    with open(path, "r+b") as handle:
        handle.seek(-512, os.SEEK_END)
        footer = handle.read(512)
        block_sector = (1536 + 4 * blocks) // 512
        # every 64th block, and blocks 1000..1999, share one stored block (the reader
        # need not mind): thousands of extents, the worst a real disk is likely to have
        bat = [0xFFFFFFFF] * blocks
        for index in [*range(0, blocks, 64), *range(1000, 2000)]:
            bat[index] = block_sector
        handle.seek(1536)
        handle.write(struct.pack(f">{blocks}I", *bat))
        handle.seek(block_sector * 512)
        handle.write(b"\xff" * 512 + b"B" * 2 * MIB)
        handle.write(footer)
        handle.truncate()
    with vhd.open_image(path) as image:
        extents = list(image.extents())
        info = image.describe()
    with vhd.open_image(path) as image:
        assert image.virtual_size == 2040 * 1024 * MIB
        assert image.read(64 * 2 * MIB, 4) == b"BBBB"
        assert image.read(65 * 2 * MIB, 4) == bytes(4)
    expected_blocks = len({*range(0, blocks, 64), *range(1000, 2000)})
    assert info["bat"] == {"allocated_blocks": expected_blocks, "total_blocks": blocks}
    assert sum(length for _, length in extents) == expected_blocks * 2 * MIB
    assert (1000 * 2 * MIB, 1000 * 2 * MIB) in extents  # 1000..1999 merged into one


# --- differencing VHD -----------------------------------------------------------------
def apply(base: bytes, chunks: list[Chunk]) -> bytes:
    out = bytearray(base)
    for offset, data in chunks:
        out[offset:offset + len(data)] = data
    return bytes(out)


@pytest.fixture
def dynamic_parent(tmp_path: Path) -> tuple[Path, bytes, list[Chunk]]:
    size = 16 * MIB
    chunks = scattered_chunks(size, 8, seed=21)
    raw = write_raw(tmp_path / "base.raw", size, chunks)
    return make_dynamic_vhd(raw, tmp_path / "base.vhd"), expected_bytes(size, chunks), chunks


def test_differencing_reads_through_the_chain(tmp_path: Path, dynamic_parent) -> None:
    parent, base, base_chunks = dynamic_parent
    first = scattered_chunks(len(base), 6, seed=22, align=512)
    child = build_differencing_vhd(tmp_path / "child.vhd", parent, first)
    second = scattered_chunks(len(base), 6, seed=23, align=512, max_length=9000)
    grandchild = build_differencing_vhd(tmp_path / "grand.vhd", child, second,
                                        block_size=512 * 1024)
    with vhd.open_image(grandchild) as image:
        assert image.format == "vhd-differencing"
        assert_reads_like(image, apply(apply(base, first), second))
        extents = list(image.extents())
        assert covered(extents, base_chunks + first + second)
        info = image.describe()
        assert [p["path"] for p in info["parents"]] == [str(child), str(parent)]
        assert [p["format"] for p in info["parents"]] == ["vhd-differencing", "vhd-dynamic"]
        assert info["parent"]["name"] == "child.vhd"


def test_differencing_over_a_fixed_parent(tmp_path: Path, raw_disk: Path,
                                         disk_chunks: list[Chunk]) -> None:
    parent = make_fixed_vhd(raw_disk, tmp_path / "fixed.vhd")
    mine = scattered_chunks(12 * MIB, 5, seed=31, align=512)
    child = build_differencing_vhd(tmp_path / "c.vhd", parent, mine)
    with vhd.open_image(child) as image:
        assert_reads_like(image, apply(expected_bytes(12 * MIB, disk_chunks), mine))


@pytest.mark.parametrize("locators", [("W2ru",), ("W2ku",), ("MacX",), ()])
def test_parent_found_by_each_locator(tmp_path: Path, dynamic_parent, locators) -> None:
    parent, base, _ = dynamic_parent
    mine = [(4096, b"c" * 4096)]
    child = build_differencing_vhd(tmp_path / "c.vhd", parent, mine, locators=locators)
    with vhd.open_image(child) as image:
        assert image.read(0, len(base)) == apply(base, mine)


def test_windows_absolute_locator_falls_back_to_the_name_beside_the_child(
        tmp_path: Path, dynamic_parent) -> None:
    parent, base, _ = dynamic_parent
    windows = "C:\\VMs\\base.vhd"
    child = build_differencing_vhd(tmp_path / "c.vhd", parent, [(0, b"w" * 512)],
                                   locators=("W2ku",), locator_paths={"W2ku": windows},
                                   parent_name=windows)
    with vhd.open_image(child) as image:
        assert image.parent is not None and Path(image.parent.path) == parent
        assert image.describe()["parent"]["locators"] == [
            {"platform_code": "W2ku", "path": windows}]
    parent.rename(tmp_path / "elsewhere.vhd")
    with pytest.raises(vhd.ParentNotFoundError, match="VMs"):
        vhd.open_image(child)


def test_relative_locator_survives_moving_the_pair(tmp_path: Path, dynamic_parent) -> None:
    parent, base, _ = dynamic_parent
    (tmp_path / "a" / "sub").mkdir(parents=True)
    moved_parent = parent.rename(tmp_path / "a" / "base.vhd")
    child = build_differencing_vhd(tmp_path / "a" / "sub" / "c.vhd", moved_parent,
                                   [(0, b"x" * 512)], locators=("W2ru", "W2ku"),
                                   parent_name="C:\\elsewhere\\nothere.vhd")
    target = tmp_path / "b"
    (tmp_path / "a").rename(target)
    with vhd.open_image(target / "sub" / "c.vhd") as image:
        assert image.parent is not None and Path(image.parent.path) == target / "base.vhd"
        assert image.read(0, len(base))[512:] == base[512:]


def test_missing_parent_names_the_paths_tried(tmp_path: Path, dynamic_parent) -> None:
    parent, _, _ = dynamic_parent
    child = build_differencing_vhd(tmp_path / "c.vhd", parent, [(0, b"x" * 512)])
    parent.rename(tmp_path / "gone.bin")
    with pytest.raises(vhd.ParentNotFoundError) as caught:
        vhd.open_image(child)
    assert str(parent) in str(caught.value) and "base.vhd" in str(caught.value)


def test_parent_with_another_unique_id_is_refused(tmp_path: Path, dynamic_parent) -> None:
    parent, _, _ = dynamic_parent
    child = build_differencing_vhd(tmp_path / "c.vhd", parent, [(0, b"x" * 512)],
                                   parent_uuid=uuid.uuid4().bytes)
    with pytest.raises(vhd.ParentMismatchError, match="unique id"):
        vhd.open_image(child)


def test_parent_loop_is_refused(tmp_path: Path, dynamic_parent) -> None:
    parent, _, _ = dynamic_parent
    looped = build_differencing_vhd(tmp_path / "loop.vhd", parent, [])
    build_differencing_vhd(looped, looped, [])  # now its own parent
    with pytest.raises(vhd.ParentChainError, match="loops"):
        vhd.open_image(looped)


def test_chain_depth_is_bounded(tmp_path: Path) -> None:
    current = build_dynamic_vhd(tmp_path / "d0.vhd", MIB, [])
    for depth in range(1, 35):
        current = build_differencing_vhd(tmp_path / f"d{depth}.vhd", current, [])
    with pytest.raises(vhd.ParentChainError, match="deeper"):
        vhd.open_image(current)
    with vhd.open_image(tmp_path / "d20.vhd") as image:
        assert len(image.describe()["parents"]) == 20


def test_a_dynamic_vhd_of_size_zero_has_no_blocks(tmp_path: Path) -> None:
    path = tmp_path / "zero.vhd"
    qemu_img("create", "-f", "vpc", "-o", "subformat=dynamic", path, "0")
    with vhd.open_image(path) as image:
        assert image.virtual_size == 0 and list(image.extents()) == []
        assert image.describe()["bat"] == {"allocated_blocks": 0, "total_blocks": 0}


@pytest.mark.parametrize(("past_end", "named"), [((1, 2), 1), ((2, 1), 1), ((3,), 3),
                                                  ((0, 3), 0)])
def test_a_bat_entry_past_the_data_names_the_lowest_block_ending_furthest(
        tmp_path: Path, past_end: tuple[int, ...], named: int) -> None:
    """Blocks 0-3 of 1 MiB (the last one too is whole): entries set to the same offset
    past the file end the same, and the lowest of them is named."""
    path = corpus_dynamic(tmp_path)
    data = bytearray(path.read_bytes())
    for block in past_end:
        struct.pack_into(">I", data, 1536 + 4 * block, 0x7FFFFFF0)
    path.write_bytes(data)
    end = 0x7FFFFFF0 * 512 + 512 + MIB  # the entry's sector, its bitmap, its data
    with pytest.raises(vhd.TruncatedImageError,
                       match=f"BAT entry {named} points to a block ending at offset {end},"):
        vhd.open_image(path)


# --- VHDX -----------------------------------------------------------------------------
@pytest.mark.parametrize("block_size", [MIB, 8 * MIB, 32 * MIB])
def test_vhdx_from_qemu(tmp_path: Path, block_size: int) -> None:
    size = 40 * MIB + 4096
    chunks = scattered_chunks(size, 14, seed=block_size // MIB)
    raw = write_raw(tmp_path / "src.raw", size, chunks)
    path = make_vhdx(raw, tmp_path / "disk.vhdx", block_size=block_size)
    with vhd.open_image(path) as image:
        assert image.format == "vhdx"
        assert_reads_like(image, expected_bytes(size, chunks))
        assert_extents_sane(image, chunks, slack=2 * block_size * len(chunks))
        info = image.describe()
        meta = info["metadata"]
        assert (meta["block_size"], meta["virtual_size"], meta["logical_sector_size"],
                meta["has_parent"]) == (block_size, size, 512, False)
        assert info["bat"]["total_blocks"] == -(-size // block_size)
        sequences = [h["sequence_number"] for h in info["headers"]]
        assert info["current_header"] == 1 + sequences.index(max(sequences))
        assert info["log"]["state"] == "empty"


def test_fixed_vhdx_from_qemu(tmp_path: Path, raw_disk: Path, disk_chunks: list[Chunk]) -> None:
    path = qemu_convert(raw_disk, tmp_path / "fixed.vhdx", "vhdx", {"subformat": "fixed"})
    with vhd.open_image(path) as image:
        assert_reads_like(image, expected_bytes(12 * MIB, disk_chunks))
        info = image.describe()
        assert info["bat"]["states"] == {"fully_present": info["bat"]["total_blocks"]}


@pytest.mark.parametrize("logical_sector", [512, 4096])
@pytest.mark.parametrize("zero_state", [0, 2, 3])
def test_vhdx_by_hand(tmp_path: Path, logical_sector: int, zero_state: int) -> None:
    size = 6 * MIB + 8192
    chunks = scattered_chunks(size, 5, seed=logical_sector + zero_state)
    path = build_vhdx(tmp_path / "hand.vhdx", size, chunks, logical_sector=logical_sector,
                      zero_state=zero_state)
    with vhd.open_image(path) as image:
        assert_reads_like(image, expected_bytes(size, chunks))
        assert_extents_sane(image, chunks, slack=2 * MIB * len(chunks))
        info = image.describe()
        assert info["metadata"]["logical_sector_size"] == logical_sector
        assert info["bat"]["states"] == bat_states(size, chunks, MIB, zero_state)


def bat_states(size: int, chunks: list[Chunk], block_size: int, zero_state: int) -> dict:
    """What describe() counts: the blocks build_vhdx stores, the others in ``zero_state``."""
    stored = {block for offset, data in chunks
              for block in range(offset // block_size, (offset + len(data) - 1) // block_size + 1)}
    rest = -(-size // block_size) - len(stored)
    names = {0: "not_present", 2: "zero", 3: "unmapped"}
    return {"fully_present": len(stored), **({names[zero_state]: rest} if rest else {})}


@pytest.mark.parametrize("zero_state", [0, 2])
def test_vhdx_blocks_on_both_sides_of_a_sector_bitmap_entry(tmp_path: Path,
                                                              zero_state: int) -> None:
    """With 1 MiB blocks and 512-byte sectors a bitmap entry follows every 4096 payload
    entries: blocks 4095 and 4096 sit either side of it in the BAT."""
    size = 4 * 1024 * MIB + 3 * MIB
    chunks = [(4095 * MIB + 4096, b"a" * 8192), (4096 * MIB, b"b" * MIB),
              (4098 * MIB + 512, b"c" * 512), (5 * MIB, b"d" * 4096)]
    path = build_vhdx(tmp_path / "wide.vhdx", size, chunks, zero_state=zero_state)
    with vhd.open_image(path) as image:
        assert image.describe()["bat"]["chunk_ratio"] == 4096
        for offset, data in chunks:
            assert image.read(offset, len(data)) == data
        assert image.read(4094 * MIB, 4096) == bytes(4096)
        assert_extents_sane(image, chunks, slack=2 * MIB * len(chunks))
        assert image.describe()["bat"]["states"] == bat_states(size, chunks, MIB, zero_state)
    out = tmp_path / "wide.vhd"
    vhd.convert(str(path), str(out))
    qemu_img("compare", "-f", "vhdx", "-F", "vpc", path, out)  # qemu reads the same disk


def test_vhdx_uses_the_header_with_the_higher_sequence(tmp_path: Path) -> None:
    path = build_vhdx(tmp_path / "h.vhdx", 2 * MIB, [(0, b"a")], sequence_numbers=(9, 3))
    with vhd.open_image(path) as image:
        assert image.describe()["current_header"] == 1
    with open(path, "r+b") as handle:  # damage header 1: header 2 takes over
        handle.seek(64 * 1024 + 100)
        handle.write(b"\x55")
    with vhd.open_image(path) as image:
        info = image.describe()
        assert info["current_header"] == 2
        assert info["headers"][0]["valid"] is False and "CRC" in info["headers"][0]["problem"]
        assert image.read(0, 1) == b"a"


def test_vhdx_with_a_pending_log_is_refused(tmp_path: Path) -> None:
    path = build_vhdx(tmp_path / "log.vhdx", 2 * MIB, [], log_guid=uuid.uuid4().bytes)
    with pytest.raises(vhd.UnsupportedImageError, match="qemu-img check -r all"):
        vhd.open_image(path)


def test_differencing_vhdx_is_refused(tmp_path: Path) -> None:
    path = build_vhdx(tmp_path / "child.vhdx", 2 * MIB, [], has_parent=True)
    with pytest.raises(vhd.UnsupportedImageError, match="differencing VHDX"):
        vhd.open_image(path)


def test_vhdx_name_without_identifier_is_refused(tmp_path: Path, raw_disk: Path) -> None:
    named = raw_disk.rename(tmp_path / "disk.VHDX")
    with pytest.raises(vhd.FormatMismatchError, match="VHDX"):
        vhd.open_image(named)


# --- read efficiency ------------------------------------------------------------------
def count_file_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the positional reads every reader issues (both the copying and the
    in-place path), without changing what they do."""
    calls: list[int] = []
    real_preadv = os.preadv

    def counting_preadv(fd: int, buffers, offset: int) -> int:
        calls.append(offset)
        return real_preadv(fd, buffers, offset)

    real_pread = os.pread

    def counting_pread(fd: int, length: int, offset: int) -> bytes:
        calls.append(offset)
        return real_pread(fd, length, offset)

    monkeypatch.setattr(os, "preadv", counting_preadv)
    monkeypatch.setattr(os, "pread", counting_pread)
    return calls


def test_dynamic_read_is_one_pread_per_block(tmp_path: Path, monkeypatch) -> None:
    size = 8 * MIB
    chunks = [(offset, bytes([offset // MIB + 1]) * 1000) for offset in range(0, 4 * MIB, MIB)]
    path = build_dynamic_vhd(tmp_path / "d.vhd", size, chunks, block_size=MIB)
    with vhd.open_image(path) as image:
        calls = count_file_reads(monkeypatch)
        data = image.read(0, size)  # four stored blocks, then four holes
        assert data == expected_bytes(size, chunks)
        assert len(calls) == 4


def test_vhdx_read_of_blocks_contiguous_in_the_file_is_one_pread(tmp_path: Path,
                                                                  monkeypatch) -> None:
    size = 8 * MIB
    chunks = [(offset, b"v" * 700) for offset in range(0, 3 * MIB, MIB)]
    path = build_vhdx(tmp_path / "x.vhdx", size, chunks)  # blocks stored back to back
    with vhd.open_image(path) as image:
        calls = count_file_reads(monkeypatch)
        assert image.read(0, size) == expected_bytes(size, chunks)
        assert len(calls) == 1


# --- describe() -----------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["vhd-fixed", "vhd-dynamic", "vhd-differencing", "vhdx"])
def test_describe_is_json_ready(tmp_path: Path, kind: str) -> None:
    path = valid_images(tmp_path)[kind]
    with vhd.open_image(path) as image:
        info = json.loads(json.dumps(image.describe()))
        assert info["format"] == kind == image.format
        assert info["virtual_size"] == image.virtual_size
        assert info["file_size"] == os.path.getsize(path)
        assert 0 < info["allocated_bytes"] <= image.virtual_size
        assert isinstance(info["parents"], list)
        assert len(info["parents"]) == (1 if kind == "vhd-differencing" else 0)
        if kind.startswith("vhd-"):
            assert info["footer"]["checksum"] == "ok"
            assert uuid.UUID(info["footer"]["unique_id"])
            assert info["footer"]["timestamp"].endswith("Z")
        else:
            assert uuid.UUID(info["metadata"]["virtual_disk_id"])

"""Partition tables and filesystem signatures on disks built byte by byte."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from azlift import vhd
from tests.support import disk_layouts as dl
from azlift.vhd.partitions import analyze

MIB = dl.MIB


def layout_of(path: str):
    with vhd.open_image(path, "raw") as image:
        return analyze(image)


def test_windows_gpt_disk_is_windows_generation_2(tmp_path: Path) -> None:
    layout = layout_of(dl.windows_gpt_disk(tmp_path / "win.img"))
    assert layout.scheme == "gpt"
    assert [p.type_name for p in layout.partitions] == [
        "EFI system partition", "Microsoft reserved", "Microsoft basic data"]
    assert [p.filesystem for p in layout.partitions] == ["fat32", "unknown", "ntfs"]
    assert layout.partitions[0].start == 2048 * 512
    assert layout.partitions[0].size == 20480 * 512
    assert layout.partitions[2].name == "Basic data partition"
    assert layout.generation_hint == "V2"
    assert layout.os_type_hint == "windows"
    assert any("EFI system partition" in r for r in layout.reasons)


def test_linux_gpt_disk_is_linux_generation_2(tmp_path: Path) -> None:
    layout = layout_of(dl.linux_gpt_disk(tmp_path / "linux.img"))
    assert [p.filesystem for p in layout.partitions] == ["fat32", "ext4"]
    assert layout.partitions[1].type == dl.LINUX_FS
    assert (layout.os_type_hint, layout.generation_hint) == ("linux", "V2")


def test_mbr_ntfs_with_boot_code_is_windows_generation_1(tmp_path: Path) -> None:
    layout = layout_of(dl.windows_mbr_disk(tmp_path / "win1.img"))
    assert layout.scheme == "mbr"
    (part,) = layout.partitions
    assert (part.index, part.type, part.bootable, part.filesystem) == (1, "0x07", True, "ntfs")
    assert (layout.os_type_hint, layout.generation_hint) == ("windows", "V1")


def test_mbr_boot_code_without_active_partition_still_means_generation_1(
        tmp_path: Path) -> None:
    size = 32 * MIB
    path = dl.write_disk(tmp_path / "d.img", size, {
        0: dl.mbr([dl.MbrEntry(0x83, 2048, size // 512 - 2048)], boot_code=True),
        2048 * 512: dl.ext_superblock("ext3")})
    layout = layout_of(path)
    assert layout.partitions[0].filesystem == "ext3"
    assert layout.generation_hint == "V1"
    assert any("boot code" in r for r in layout.reasons)


def test_mbr_without_boot_code_gives_no_generation(tmp_path: Path) -> None:
    size = 32 * MIB
    path = dl.write_disk(tmp_path / "d.img", size, {
        0: dl.mbr([dl.MbrEntry(0x83, 2048, size // 512 - 2048)]),
        2048 * 512: dl.ext_superblock("ext2")})
    layout = layout_of(path)
    assert layout.partitions[0].filesystem == "ext2"
    assert layout.generation_hint is None
    assert layout.os_type_hint == "linux"


@pytest.mark.parametrize("kind, piece, expected", [
    (0x8E, dl.lvm_label(), "lvm"),
    (0x82, dl.swap_header(), "swap"),
    (0x83, dl.xfs_superblock(), "xfs"),
    (0x0C, dl.fat_boot_sector(32), "fat32"),
    (0x06, dl.fat_boot_sector(16), "fat16"),
    (0x01, dl.fat_boot_sector(12), "fat12"),
    (0x83, dl.ext_superblock("ext4"), "ext4"),
    (0x83, b"", "unknown"),
])
def test_filesystem_signatures(tmp_path: Path, kind: int, piece: bytes,
                               expected: str) -> None:
    size = 16 * MIB
    pieces = {0: dl.mbr([dl.MbrEntry(kind, 2048, size // 512 - 2048, bootable=True)])}
    if piece:
        pieces[2048 * 512] = piece
    layout = layout_of(dl.write_disk(tmp_path / "d.img", size, pieces))
    assert layout.partitions[0].filesystem == expected


def test_btrfs_superblock_at_64_kib(tmp_path: Path) -> None:
    size = 16 * MIB
    offset, block = dl.btrfs_superblock()
    pieces = dl.gpt([dl.GptEntry(dl.BIOS_BOOT, 34, 2047),
                     dl.GptEntry(dl.LINUX_FS, 2048, size // 512 - 34)], size)
    pieces[2048 * 512 + offset] = block
    path = dl.write_disk(tmp_path / "d.img", size, pieces)
    layout = layout_of(path)
    assert [p.filesystem for p in layout.partitions][1] == "btrfs"
    assert layout.generation_hint == "V1"  # BIOS boot partition: GRUB on a GPT disk
    assert layout.os_type_hint == "linux"


def test_gpt_lvm_and_swap_partitions(tmp_path: Path) -> None:
    size = 64 * MIB
    pieces = dl.gpt([dl.GptEntry(dl.ESP, 2048, 4095), dl.GptEntry(dl.LINUX_SWAP, 4096, 8191),
                     dl.GptEntry(dl.LINUX_LVM, 8192, size // 512 - 34)], size)
    pieces[4096 * 512] = dl.swap_header()
    pieces[8192 * 512] = dl.lvm_label()
    layout = layout_of(dl.write_disk(tmp_path / "d.img", size, pieces))
    assert [p.type_name for p in layout.partitions] == [
        "EFI system partition", "Linux swap", "Linux LVM"]
    assert [p.filesystem for p in layout.partitions] == ["unknown", "swap", "lvm"]
    assert (layout.os_type_hint, layout.generation_hint) == ("linux", "V2")


def test_gpt_with_bad_header_crc_is_still_read_and_flagged(tmp_path: Path) -> None:
    size = 32 * MIB
    pieces = dl.gpt([dl.GptEntry(dl.ESP, 2048, 4095)], size, corrupt_header_crc=True)
    layout = layout_of(dl.write_disk(tmp_path / "d.img", size, pieces))
    assert layout.generation_hint == "V2"
    assert any("CRC32" in r for r in layout.reasons)


def test_logical_partitions_in_an_extended_partition(tmp_path: Path) -> None:
    size = 64 * MIB
    ext_start = 4096
    pieces = {
        0: dl.mbr([dl.MbrEntry(0x83, 2048, 2048, bootable=True),
                   dl.MbrEntry(0x05, ext_start, size // 512 - ext_start)]),
        # first EBR: a logical partition 2048 sectors after it, and a link to the next EBR
        ext_start * 512: dl.mbr([dl.MbrEntry(0x82, 2048, 4096), dl.MbrEntry(0x05, 8192, 8192)]),
        (ext_start + 2048) * 512: dl.swap_header(),
        (ext_start + 8192) * 512: dl.mbr([dl.MbrEntry(0x83, 2048, 4096)]),
        (ext_start + 8192 + 2048) * 512: dl.xfs_superblock(),
    }
    layout = layout_of(dl.write_disk(tmp_path / "d.img", size, pieces))
    assert [(p.index, p.filesystem) for p in layout.partitions] == [
        (1, "unknown"), (5, "swap"), (6, "xfs")]
    assert layout.partitions[2].start == (ext_start + 8192 + 2048) * 512


def test_looping_extended_chain_stops(tmp_path: Path) -> None:
    size = 16 * MIB
    pieces = {0: dl.mbr([dl.MbrEntry(0x05, 2048, 8192)]),
              2048 * 512: dl.mbr([dl.MbrEntry(0x83, 100, 10), dl.MbrEntry(0x05, 0, 8192)])}
    layout = layout_of(dl.write_disk(tmp_path / "d.img", size, pieces))
    assert len(layout.partitions) == 1


def test_empty_disk_has_no_scheme_and_no_hints(tmp_path: Path) -> None:
    layout = layout_of(dl.write_disk(tmp_path / "empty.img", 8 * MIB, {}))
    assert (layout.scheme, layout.partitions) == ("none", ())
    assert layout.os_type_hint is None and layout.generation_hint is None
    assert layout.reasons


def test_whole_disk_filesystem_without_table(tmp_path: Path) -> None:
    layout = layout_of(dl.write_disk(tmp_path / "xfs.img", 8 * MIB, {0: dl.xfs_superblock()}))
    assert (layout.scheme, layout.whole_disk_filesystem) == ("none", "xfs")
    assert layout.os_type_hint == "linux" and layout.generation_hint is None


def test_to_dict_is_json_ready(tmp_path: Path) -> None:
    layout = layout_of(dl.windows_gpt_disk(tmp_path / "win.img"))
    document = json.loads(json.dumps(layout.to_dict()))
    assert document["scheme"] == "gpt"
    assert document["generation_hint"] == "V2"
    assert document["partitions"][2]["filesystem"] == "ntfs"
    assert set(document["partitions"][0]) == {
        "index", "start", "size", "type", "type_name", "bootable", "filesystem", "name"}


def test_disk_smaller_than_its_table_reads_as_padded(tmp_path: Path) -> None:
    pieces = dl.gpt([dl.GptEntry(dl.ESP, 2048, 4095)], 32 * MIB)
    path = dl.write_disk(tmp_path / "cut.img", 1024, {0: pieces[0], 512: pieces[512]})
    layout = layout_of(path)
    assert (layout.scheme, layout.partitions) == ("gpt", ())
    assert any("no partitions" in r for r in layout.reasons)


@settings(max_examples=150, deadline=None)
@given(sector0=st.binary(min_size=512, max_size=512), sector1=st.binary(min_size=512,
                                                                        max_size=512),
       with_signature=st.booleans(), protective=st.booleans())
def test_arbitrary_first_sectors_never_crash(tmp_path_factory: pytest.TempPathFactory,
                                             sector0: bytes, sector1: bytes,
                                             with_signature: bool, protective: bool) -> None:
    head = bytearray(sector0)
    if with_signature:
        head[510:512] = b"\x55\xaa"
    if protective:
        head[446 + 4] = 0xEE
        head[446 + 12] = 1
    body = bytearray(sector1)
    if protective:
        body[:8] = b"EFI PART"
    path = tmp_path_factory.mktemp("fuzz") / "d.img"
    dl.write_disk(path, 4 * MIB, {0: bytes(head), 512: bytes(body)})
    layout = layout_of(str(path))
    assert layout.scheme in ("mbr", "gpt", "none")
    json.dumps(layout.to_dict())

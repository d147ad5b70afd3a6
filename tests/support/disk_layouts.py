"""Build partition tables and filesystem signatures byte by byte (no fdisk needed).

Each builder returns the bytes a real tool would write at the start of a disk or a
partition; ``write_disk`` lays them into a sparse raw file. The layouts follow the UEFI
spec (protective MBR, GPT header and entries with their CRC32s) and the superblock
layouts libblkid probes.
"""
from __future__ import annotations

import os
import struct
import uuid
import zlib
from dataclasses import dataclass

SECTOR = 512
MIB = 1024 * 1024

ESP = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
MS_RESERVED = "e3c9e316-0b5c-4db8-817d-f92df00215ae"
MS_BASIC_DATA = "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7"
LINUX_FS = "0fc63daf-8483-4772-8e79-3d69d8477de4"
LINUX_SWAP = "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f"
LINUX_LVM = "e6d6d379-f507-44c2-a23c-238f2a3df928"
BIOS_BOOT = "21686148-6449-6e6f-744e-656564454649"


@dataclass(frozen=True)
class MbrEntry:
    kind: int
    first_lba: int
    sectors: int
    bootable: bool = False


@dataclass(frozen=True)
class GptEntry:
    type_guid: str
    first_lba: int
    last_lba: int
    name: str = ""


def mbr(entries: list[MbrEntry], *, boot_code: bool = False) -> bytes:
    """Sector 0 with up to four primary entries (LBA fields only; CHS left zero)."""
    sector = bytearray(SECTOR)
    if boot_code:
        sector[0:3] = b"\xeb\x63\x90"  # jmp short, as GRUB's boot.img starts
        sector[0x60:0x70] = b"\xfa\x90\x90\xf6\xc2\x80\x74\x05\xf6\xc2\x70\x74\x02\xb2\x80\xea"
    for slot, entry in enumerate(entries):
        base = 446 + 16 * slot
        sector[base] = 0x80 if entry.bootable else 0
        sector[base + 4] = entry.kind
        struct.pack_into("<II", sector, base + 8, entry.first_lba, entry.sectors)
    sector[510:512] = b"\x55\xaa"
    return bytes(sector)


def gpt(entries: list[GptEntry], disk_bytes: int, *, entry_count: int = 128,
        corrupt_header_crc: bool = False) -> dict[int, bytes]:
    """Protective MBR + primary GPT header and table, as {offset: bytes}."""
    last_lba = disk_bytes // SECTOR - 1
    table = bytearray(entry_count * 128)
    for slot, entry in enumerate(entries):
        struct.pack_into("<16s16sQQQ72s", table, slot * 128,
                         uuid.UUID(entry.type_guid).bytes_le, uuid.uuid4().bytes_le,
                         entry.first_lba, entry.last_lba, 0,
                         entry.name.encode("utf-16-le"))
    header = bytearray(SECTOR)
    struct.pack_into("<8sIII4xQQQQ16sQIII", header, 0, b"EFI PART", 0x00010000, 92, 0,
                     1, last_lba, 34, last_lba - 33, uuid.uuid4().bytes_le, 2,
                     entry_count, 128, zlib.crc32(bytes(table)))
    crc = zlib.crc32(bytes(header[:92]))
    struct.pack_into("<I", header, 16, crc ^ (1 if corrupt_header_crc else 0))
    protective = mbr([MbrEntry(0xEE, 1, min(last_lba, 0xFFFFFFFF))])
    return {0: protective, SECTOR: bytes(header), 2 * SECTOR: bytes(table)}


def ntfs_boot_sector() -> bytes:
    sector = bytearray(SECTOR)
    sector[0:3] = b"\xeb\x52\x90"
    sector[3:11] = b"NTFS    "
    struct.pack_into("<HB", sector, 11, 512, 8)
    sector[510:512] = b"\x55\xaa"
    return bytes(sector)


def fat_boot_sector(bits: int) -> bytes:
    sector = bytearray(SECTOR)
    sector[0:3] = b"\xeb\x58\x90"
    sector[3:11] = b"mkfs.fat"
    struct.pack_into("<HB", sector, 11, 512, 1)
    if bits == 32:
        sector[82:90] = b"FAT32   "
    else:
        sector[54:62] = f"FAT{bits}   ".encode()
    sector[510:512] = b"\x55\xaa"
    return bytes(sector)


EXT_FEATURES = {  # (compat, incompat, ro_compat) as mke2fs sets them
    "ext2": (0x0038, 0x0002, 0x0003),
    "ext3": (0x003C, 0x0002, 0x0003),
    "ext4": (0x003C, 0x02C2, 0x046B),
}


def ext_superblock(kind: str) -> bytes:
    """The first 2 KiB of an ext2/3/4 filesystem (superblock at 1024)."""
    block = bytearray(2048)
    compat, incompat, ro_compat = EXT_FEATURES[kind]
    struct.pack_into("<H", block, 1024 + 56, 0xEF53)
    struct.pack_into("<III", block, 1024 + 92, compat, incompat, ro_compat)
    return bytes(block)


def xfs_superblock() -> bytes:
    return b"XFSB" + struct.pack(">I", 4096) + bytes(SECTOR - 8)


def btrfs_superblock() -> tuple[int, bytes]:
    """(offset inside the partition, bytes): Btrfs keeps its superblock at 64 KiB."""
    block = bytearray(4096)
    block[0x40:0x48] = b"_BHRfS_M"
    return 0x10000, bytes(block)


def lvm_label() -> bytes:
    """LVM2 physical volume label in the second sector, as pvcreate writes it."""
    block = bytearray(2 * SECTOR)
    block[SECTOR:SECTOR + 8] = b"LABELONE"
    struct.pack_into("<Q", block, SECTOR + 8, 1)
    block[SECTOR + 24:SECTOR + 32] = b"LVM2 001"
    return bytes(block)


def swap_header() -> bytes:
    page = bytearray(4096)
    struct.pack_into("<II", page, 1024, 1, 1000)
    page[4086:4096] = b"SWAPSPACE2"
    return bytes(page)


def write_disk(path: str | os.PathLike[str], size: int, pieces: dict[int, bytes]) -> str:
    """A sparse raw disk of ``size`` bytes holding ``pieces`` at their offsets."""
    with open(path, "wb") as handle:
        handle.truncate(size)
        for offset, data in sorted(pieces.items()):
            handle.seek(offset)
            handle.write(data)
    return os.fspath(path)


def windows_gpt_disk(path: str | os.PathLike[str], size: int = 64 * MIB) -> str:
    """GPT: ESP (FAT32) + Microsoft reserved + Microsoft basic data (NTFS), like Setup."""
    esp, msr, data = 2048, 2048 + 20480, 2048 + 20480 + 32768
    pieces = gpt([GptEntry(ESP, esp, msr - 1, "EFI system partition"),
                  GptEntry(MS_RESERVED, msr, data - 1, "Microsoft reserved partition"),
                  GptEntry(MS_BASIC_DATA, data, size // SECTOR - 34, "Basic data partition")],
                 size)
    pieces[esp * SECTOR] = fat_boot_sector(32)
    pieces[data * SECTOR] = ntfs_boot_sector()
    return write_disk(path, size, pieces)


def linux_gpt_disk(path: str | os.PathLike[str], size: int = 64 * MIB) -> str:
    """GPT: ESP (FAT32) + Linux filesystem (ext4), like a cloud image."""
    esp, root = 2048, 2048 + 20480
    pieces = gpt([GptEntry(ESP, esp, root - 1, "EFI"),
                  GptEntry(LINUX_FS, root, size // SECTOR - 34, "root")], size)
    pieces[esp * SECTOR] = fat_boot_sector(32)
    pieces[root * SECTOR] = ext_superblock("ext4")
    return write_disk(path, size, pieces)


def windows_mbr_disk(path: str | os.PathLike[str], size: int = 64 * MIB) -> str:
    """MBR with boot code and an active NTFS partition (a Generation 1 Windows disk)."""
    first = 2048
    pieces = {0: mbr([MbrEntry(0x07, first, size // SECTOR - first, bootable=True)],
                     boot_code=True),
              first * SECTOR: ntfs_boot_sector()}
    return write_disk(path, size, pieces)


def append_footer(path: str | os.PathLike[str], **changes: object) -> str:
    """Turn a raw file into a fixed VHD by appending a footer; ``changes`` break fields.

    The checksum is computed after the changes unless ``checksum`` is among them.
    """
    from azlift.vhd import fixed_footer

    size = os.path.getsize(path)
    footer = fixed_footer(size, unique_id=uuid.uuid4().bytes, timestamp=0)
    if changes:
        footer = footer._replace(**{k: v for k, v in changes.items() if k != "checksum"})
        footer = footer.with_checksum()
        if "checksum" in changes:
            footer = footer._replace(checksum=changes["checksum"])
    with open(path, "ab") as handle:
        handle.write(footer.pack())
    return os.fspath(path)


"""Partition tables and filesystem signatures → OS-type and Hyper-V generation hints.

A wrong generation gives a VM that does not boot in Azure, so the hints are worth a few
sector reads. Only ``image.read`` is used (a handful of small reads), so the same code
works on a local file and on a blob read through ranged requests.

Sources: UEFI 2.x spec chapter 5 (GPT header and entries, protective MBR); the classic
MBR layout; the superblock layouts of ext2/3/4, XFS, Btrfs, FAT, NTFS, LVM2 and Linux swap
as libblkid probes them.
"""
from __future__ import annotations

import struct
import zlib
from typing import Any, NamedTuple

from . import guids
from ._vhd_structs import SECTOR
from .image import DiskImage

MBR_SIGNATURE = b"\x55\xaa"
GPT_SIGNATURE = b"EFI PART"
PROBE_BYTES = 8192  # enough for every signature below except Btrfs's
BTRFS_SUPERBLOCK = 0x10000
MAX_GPT_TABLE_BYTES = 1024 * 1024  # a real table is 16 KiB; never read a claimed giant one
MAX_LOGICAL_PARTITIONS = 128

MBR_TYPE_NAMES = {
    0x01: "FAT12", 0x04: "FAT16 <32M", 0x05: "Extended", 0x06: "FAT16",
    0x07: "HPFS/NTFS/exFAT", 0x0B: "W95 FAT32", 0x0C: "W95 FAT32 (LBA)",
    0x0E: "W95 FAT16 (LBA)", 0x0F: "W95 Extended (LBA)", 0x12: "Compaq diagnostics",
    0x17: "Hidden HPFS/NTFS", 0x27: "Windows recovery environment", 0x42: "Windows dynamic disk",
    0x82: "Linux swap", 0x83: "Linux", 0x85: "Linux extended", 0x8E: "Linux LVM",
    0xA5: "FreeBSD", 0xEE: "GPT protective", 0xEF: "EFI system partition",
    0xFD: "Linux RAID autodetect",
}
EXTENDED_MBR_TYPES = {0x05, 0x0F, 0x85}

ESP_GUID = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
BIOS_BOOT_GUID = "21686148-6449-6e6f-744e-656564454649"
MS_RESERVED_GUID = "e3c9e316-0b5c-4db8-817d-f92df00215ae"
MS_BASIC_DATA_GUID = "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7"
GPT_TYPE_NAMES = {
    ESP_GUID: "EFI system partition",
    BIOS_BOOT_GUID: "BIOS boot partition",
    MS_RESERVED_GUID: "Microsoft reserved",
    MS_BASIC_DATA_GUID: "Microsoft basic data",
    "de94bba4-06d1-4d40-a16a-bfd50179d6ac": "Windows recovery environment",
    "5808c8aa-7e8f-42e0-85d2-e1e90434cfb3": "Windows LDM metadata",
    "af9b60a0-1431-4f62-bc68-3311714a69ad": "Windows LDM data",
    "0fc63daf-8483-4772-8e79-3d69d8477de4": "Linux filesystem",
    "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f": "Linux swap",
    "e6d6d379-f507-44c2-a23c-238f2a3df928": "Linux LVM",
    "a19d880f-05fc-4d3b-a006-743f0f84911e": "Linux RAID",
    "4f68bce3-e8cd-4db1-96e7-fbcaf984b709": "Linux root (x86-64)",
    "44479540-f297-41b2-9af7-d131d5f0458a": "Linux root (x86)",
    "b921b045-1df0-41c3-af44-4c6f280d3fae": "Linux root (ARM64)",
    "933ac7e1-2eb4-4f13-b844-0e14e2aef915": "Linux home",
    "bc13c2ff-59e6-4262-a352-b275fd6f7172": "Linux extended boot",
    "ca7d7ccb-63ed-4c53-861c-1742536059cc": "Linux LUKS",
}

WINDOWS_FILESYSTEMS = {"ntfs"}
LINUX_FILESYSTEMS = {"ext2", "ext3", "ext4", "xfs", "btrfs", "lvm", "swap", "luks"}
WINDOWS_TYPES = {"Microsoft reserved", "Windows recovery environment", "Windows LDM metadata",
                 "Windows LDM data"}
LINUX_TYPES = {name for name in GPT_TYPE_NAMES.values() if name.startswith("Linux")} | {
    "Linux", "Linux LVM", "Linux swap", "Linux RAID autodetect"}

# ext4 feature bits (libblkid's EXT4_FEATURE_*): any of these means ext4, not ext2/3.
EXT3_COMPAT_HAS_JOURNAL = 0x0004
EXT4_INCOMPAT_FEATURES = 0x0040 | 0x0080 | 0x0200 | 0x0100 | 0x0400  # extents 64bit flex mmp
EXT4_RO_COMPAT_FEATURES = 0x0008 | 0x0010 | 0x0020 | 0x0040 | 0x0400  # huge_file gdt_csum ...


class Partition(NamedTuple):
    """One partition: where it is, what its table says it is, what its first bytes say."""

    index: int
    start: int
    size: int
    type: str  # "0x83" for MBR, a lowercase GUID for GPT
    type_name: str
    bootable: bool
    filesystem: str  # ntfs ext2 ext3 ext4 xfs btrfs fat12 fat16 fat32 exfat lvm swap luks unknown
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "start": self.start, "size": self.size,
                "type": self.type, "type_name": self.type_name, "bootable": self.bootable,
                "filesystem": self.filesystem, "name": self.name}


class DiskLayout(NamedTuple):
    """What the first sectors of a disk say about the guest inside it."""

    scheme: str  # "mbr", "gpt" or "none"
    partitions: tuple[Partition, ...] = ()
    os_type_hint: str | None = None  # "windows" | "linux" | None
    generation_hint: str | None = None  # "V1" | "V2" | None
    reasons: tuple[str, ...] = ()
    whole_disk_filesystem: str | None = None  # a filesystem written without a table

    def to_dict(self) -> dict[str, Any]:
        return {"scheme": self.scheme,
                "partitions": [p.to_dict() for p in self.partitions],
                "whole_disk_filesystem": self.whole_disk_filesystem,
                "os_type_hint": self.os_type_hint,
                "generation_hint": self.generation_hint,
                "reasons": list(self.reasons)}


def analyze(image: DiskImage) -> DiskLayout:
    """Read the partition table and filesystem signatures of ``image`` and derive hints."""
    reader = _Reader(image)
    mbr = reader.read(0, SECTOR)
    reasons: list[str] = []
    if mbr[510:512] != MBR_SIGNATURE:
        filesystem = detect_filesystem(reader, 0)
        if filesystem == "unknown":
            reasons.append("no partition table (no 0x55AA signature in sector 0) and no "
                           "known filesystem at the start of the disk")
            return DiskLayout("none", reasons=tuple(reasons))
        reasons.append(f"no partition table; one {filesystem} filesystem fills the disk "
                       "(a data disk, it cannot boot)")
        os_hint = _os_hint_from([filesystem], [], reasons)
        return DiskLayout("none", (), os_hint, None, tuple(reasons), filesystem)
    entries = _mbr_entries(mbr)
    if any(entry[1] == 0xEE for entry in entries):
        gpt = _gpt_partitions(reader, reasons)
        if gpt is not None:
            return _finish("gpt", gpt, reasons, boot_code=False)
    partitions = _mbr_partitions(reader, entries, reasons)
    return _finish("mbr", partitions, reasons, boot_code=any(mbr[:440]))


class _Reader:
    """Bounded reads that pad past the end with zeros instead of failing."""

    def __init__(self, image: DiskImage) -> None:
        self.image = image
        self.size = image.virtual_size

    def read(self, offset: int, length: int) -> bytes:
        if offset >= self.size or offset < 0:
            return bytes(length)
        data = self.image.read(offset, min(length, self.size - offset))
        return data.ljust(length, b"\0")


def _mbr_entries(sector: bytes) -> list[tuple[int, int, int, int]]:
    """(status, type, first LBA, sector count) of the four primary slots that are in use."""
    entries = []
    for slot in range(4):
        raw = sector[446 + 16 * slot: 446 + 16 * (slot + 1)]
        status, kind = raw[0], raw[4]
        first, count = struct.unpack_from("<II", raw, 8)
        if kind != 0 and count != 0:
            entries.append((status, kind, first, count))
    return entries


def _mbr_partitions(reader: _Reader, entries: list[tuple[int, int, int, int]],
                    reasons: list[str]) -> list[Partition]:
    partitions = []
    for index, (status, kind, first, count) in enumerate(entries, start=1):
        if kind in EXTENDED_MBR_TYPES:
            partitions.extend(_logical_partitions(reader, first, reasons))
            continue
        partitions.append(_mbr_partition(reader, index, 0, status, kind, first, count))
    return partitions


def _mbr_partition(reader: _Reader, index: int, base: int, status: int, kind: int,
                   first: int, count: int) -> Partition:
    start = (base + first) * SECTOR
    return Partition(index=index, start=start, size=count * SECTOR, type=f"0x{kind:02x}",
                     type_name=MBR_TYPE_NAMES.get(kind, "unknown"),
                     bootable=status == 0x80, filesystem=detect_filesystem(reader, start))


def _logical_partitions(reader: _Reader, extended_start: int,
                        reasons: list[str]) -> list[Partition]:
    """Walk the chain of extended boot records (bounded: loops and giants stop it)."""
    partitions: list[Partition] = []
    ebr_lba, seen = extended_start, set()
    while len(partitions) < MAX_LOGICAL_PARTITIONS and ebr_lba not in seen:
        seen.add(ebr_lba)
        sector = reader.read(ebr_lba * SECTOR, SECTOR)
        if sector[510:512] != MBR_SIGNATURE:
            reasons.append(f"extended boot record at sector {ebr_lba} has no signature")
            break
        entries = _mbr_entries(sector)
        data = [e for e in entries if e[1] not in EXTENDED_MBR_TYPES]
        if data:
            status, kind, first, count = data[0]
            partitions.append(_mbr_partition(reader, 5 + len(partitions), ebr_lba, status,
                                             kind, first, count))
        link = [e for e in entries if e[1] in EXTENDED_MBR_TYPES]
        if not link:
            break
        ebr_lba = extended_start + link[0][2]
    return partitions


GPT_HEADER = struct.Struct("<8sIII4xQQQQ16sQIII")
GPT_ENTRY = struct.Struct("<16s16sQQQ72s")


def _gpt_partitions(reader: _Reader, reasons: list[str]) -> list[Partition] | None:
    """Partitions of the GPT at LBA 1 (512-byte sectors, else 4096); None when absent."""
    for sector_size in (SECTOR, 4096):
        header = reader.read(sector_size, sector_size)
        if header[:8] == GPT_SIGNATURE:
            return _gpt_entries(reader, header, sector_size, reasons)
    reasons.append("protective MBR but no GPT header at LBA 1: reading the MBR entries")
    return None


def _gpt_entries(reader: _Reader, header: bytes, sector_size: int,
                 reasons: list[str]) -> list[Partition]:
    (_sig, _rev, header_size, header_crc, _cur, _backup, _first, _last, _disk_guid,
     table_lba, count, entry_size, _table_crc) = GPT_HEADER.unpack_from(header)
    if 92 <= header_size <= sector_size:
        body = bytearray(header[:header_size])
        body[16:20] = b"\0\0\0\0"
        if zlib.crc32(bytes(body)) != header_crc:
            reasons.append("GPT header CRC32 does not match (the table may be damaged)")
    if entry_size < GPT_ENTRY.size or entry_size % 8 or count == 0:
        reasons.append(f"GPT header has an unusable entry size {entry_size} or count {count}")
        return []
    count = min(count, MAX_GPT_TABLE_BYTES // entry_size)
    table = reader.read(table_lba * sector_size, count * entry_size)
    partitions = []
    for slot in range(count):
        type_raw, _uid, first, last, attributes, name_raw = GPT_ENTRY.unpack_from(
            table, slot * entry_size)
        if type_raw == bytes(16) or last < first:
            continue
        type_guid = guids.text_le(type_raw)
        start = first * sector_size
        partitions.append(Partition(
            index=slot + 1, start=start, size=(last - first + 1) * sector_size,
            type=type_guid, type_name=GPT_TYPE_NAMES.get(type_guid, "unknown"),
            bootable=bool(attributes & 0x4),  # legacy BIOS bootable attribute
            filesystem=detect_filesystem(reader, start),
            name=name_raw.decode("utf-16-le", "replace").split("\0", 1)[0]))
    return partitions


def detect_filesystem(reader: _Reader, start: int) -> str:
    """The filesystem whose signature sits at byte ``start``, or "unknown"."""
    head = reader.read(start, PROBE_BYTES)
    found = _probe(head)
    if found == "unknown" and reader.read(start + BTRFS_SUPERBLOCK + 0x40, 8) == b"_BHRfS_M":
        found = "btrfs"
    return found


def _probe(head: bytes) -> str:
    """Signatures that live in the first 8 KiB of a partition."""
    if head[3:11] == b"NTFS    ":
        return "ntfs"
    if head[3:11] == b"EXFAT   ":
        return "exfat"
    if head[:4] == b"XFSB":
        return "xfs"
    if head[:6] == b"LUKS\xba\xbe":
        return "luks"
    if struct.unpack_from("<H", head, 1024 + 56)[0] == 0xEF53:
        return _ext_version(head[1024:2048])
    for sector in range(4):  # LVM2 puts its label in one of the first four sectors
        label = head[sector * SECTOR: sector * SECTOR + 32]
        if label[:8] == b"LABELONE" and label[24:32] == b"LVM2 001":
            return "lvm"
    if head[4096 - 10:4096] in (b"SWAPSPACE2", b"SWAP-SPACE"):
        return "swap"
    if head[510:512] == MBR_SIGNATURE:
        if head[82:87] == b"FAT32":
            return "fat32"
        if head[54:59] == b"FAT12":
            return "fat12"
        if head[54:59] == b"FAT16" or head[54:62] == b"FAT     ":
            return "fat16"
    return "unknown"


def _ext_version(superblock: bytes) -> str:
    compat, incompat, ro_compat = struct.unpack_from("<III", superblock, 92)
    if incompat & EXT4_INCOMPAT_FEATURES or ro_compat & EXT4_RO_COMPAT_FEATURES:
        return "ext4"
    if compat & EXT3_COMPAT_HAS_JOURNAL:
        return "ext3"
    return "ext2"


def _finish(scheme: str, partitions: list[Partition], reasons: list[str],
            *, boot_code: bool) -> DiskLayout:
    if not partitions:
        reasons.append(f"{scheme.upper()} partition table with no partitions")
    generation = _generation_hint(scheme, partitions, boot_code, reasons)
    os_hint = _os_hint_from([p.filesystem for p in partitions],
                            [p.type_name for p in partitions], reasons)
    return DiskLayout(scheme, tuple(partitions), os_hint, generation, tuple(reasons))


def _generation_hint(scheme: str, partitions: list[Partition], boot_code: bool,
                     reasons: list[str]) -> str | None:
    if scheme == "gpt":
        esp = [p for p in partitions if p.type == ESP_GUID]
        if esp:
            reasons.append(f"GPT with an EFI system partition (partition {esp[0].index}, "
                           f"{esp[0].filesystem}): boots with UEFI, Hyper-V generation 2")
            return "V2"
        bios = [p for p in partitions if p.type == BIOS_BOOT_GUID]
        if bios:
            reasons.append(f"GPT with a BIOS boot partition (partition {bios[0].index}) and "
                           "no EFI system partition: boots with BIOS, Hyper-V generation 1")
            return "V1"
        reasons.append("GPT without an EFI system partition or BIOS boot partition: "
                       "nothing suggests how it boots")
        return None
    active = [p for p in partitions if p.bootable]
    if active:
        reasons.append(f"MBR with an active partition (partition {active[0].index}): "
                       "boots with BIOS, Hyper-V generation 1")
        return "V1"
    if boot_code:
        reasons.append("MBR with boot code in sector 0: boots with BIOS, "
                       "Hyper-V generation 1")
        return "V1"
    reasons.append("MBR without boot code or an active partition: nothing suggests "
                   "how it boots")
    return None


def _os_hint_from(filesystems: list[str], type_names: list[str],
                  reasons: list[str]) -> str | None:
    windows = sorted({f for f in filesystems if f in WINDOWS_FILESYSTEMS}
                     | {t for t in type_names if t in WINDOWS_TYPES})
    linux = sorted({f for f in filesystems if f in LINUX_FILESYSTEMS}
                   | {t for t in type_names if t in LINUX_TYPES})
    if windows and linux:
        reasons.append(f"both Windows ({', '.join(windows)}) and Linux "
                       f"({', '.join(linux)}) signatures: no OS type hint")
        return None
    if windows:
        reasons.append(f"Windows signatures: {', '.join(windows)}")
        return "windows"
    if linux:
        reasons.append(f"Linux signatures: {', '.join(linux)}")
        return "linux"
    return None

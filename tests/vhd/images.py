"""Build test images: with qemu-img (the reference peer) or by hand, straight from the specs.

Stable helpers shared by every vhd test module (readers, check, convert, fix):

- ``scattered_chunks`` / ``write_raw`` / ``expected_bytes``: a sparse raw disk holding
  known data at known places, and the bytes any reader of it must return.
- ``qemu_img`` / ``qemu_convert`` / ``make_fixed_vhd`` / ``make_dynamic_vhd`` / ``make_vhdx``:
  the same disk converted by qemu-img.
- ``build_fixed_vhd`` / ``build_dynamic_vhd`` / ``build_differencing_vhd``: VHD files
  written by hand with plain ``struct`` (not the package's own layouts), for what qemu-img
  cannot write (differencing disks, the 511-byte footer, chosen block sizes).
- ``build_vhdx``: a VHDX written by hand (4096-byte logical sectors, a pending log,
  chosen BAT states), which qemu-img cannot write.

Chunks are ``(offset, bytes)`` pairs in guest coordinates.
"""
from __future__ import annotations

import os
import random
import struct
import subprocess
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

import crc32c

from tests.support.tools import require_executable

SECTOR = 512
KIB = 1024
MIB = 1024 * 1024
Chunk = tuple[int, bytes]


# --- known data -----------------------------------------------------------------------
def scattered_chunks(size: int, count: int, *, seed: int = 1, max_length: int = 70_000,
                     align: int = 1) -> list[Chunk]:
    """``count`` random non-overlapping chunks of random bytes inside ``[0, size)``.

    ``align`` > 1 aligns every chunk's start and length to it (e.g. 512 for differencing
    disks, whose sector bitmaps work per sector). Deterministic for a given ``seed``.
    """
    rng = random.Random(seed)
    chunks: list[Chunk] = []
    taken: list[tuple[int, int]] = []
    attempts = 0
    while len(chunks) < count and attempts < count * 50:
        attempts += 1
        length = max(align, rng.randrange(1, max_length) // align * align)
        if length > size:
            continue
        offset = rng.randrange(0, size - length + 1) // align * align
        if any(offset < end and start < offset + length for start, end in taken):
            continue
        taken.append((offset, offset + length))
        chunks.append((offset, rng.randbytes(length)))
    return sorted(chunks)


def write_raw(path: str | os.PathLike[str], size: int, chunks: Iterable[Chunk]) -> Path:
    """A sparse raw file of exactly ``size`` bytes with ``chunks`` written into it."""
    path = Path(path)
    with open(path, "wb") as out:
        out.truncate(size)
        for offset, data in chunks:
            out.seek(offset)
            out.write(data)
    return path


def expected_bytes(size: int, chunks: Iterable[Chunk]) -> bytes:
    """The guest bytes of a disk of ``size`` bytes holding ``chunks`` (zeros elsewhere)."""
    out = bytearray(size)
    for offset, data in chunks:
        out[offset:offset + len(data)] = data
    return bytes(out)


def covered(extents: Iterable[tuple[int, int]], chunks: Iterable[Chunk]) -> bool:
    """True when every byte of every chunk lies inside one of ``extents``."""
    spans = sorted(extents)
    for offset, data in chunks:
        position, end = offset, offset + len(data)
        for start, length in spans:
            if start <= position < start + length:
                position = start + length
            if position >= end:
                break
        if position < end:
            return False
    return True


# --- qemu-img -------------------------------------------------------------------------
def qemu_img(*args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    """Run qemu-img (skip, a failure in CI, when it is missing); raise on failure."""
    exe = require_executable("qemu-img")
    return subprocess.run([exe, *map(str, args)], check=True, capture_output=True, text=True)


def qemu_convert(source: str | os.PathLike[str], dest: str | os.PathLike[str],
                 out_format: str, options: dict[str, object] | None = None,
                 in_format: str = "raw") -> Path:
    """``qemu-img convert -f in_format -O out_format [-o options] source dest``."""
    args: list[str | os.PathLike[str]] = ["convert", "-f", in_format, "-O", out_format]
    if options:
        args += ["-o", ",".join(f"{key}={value}" for key, value in options.items())]
    qemu_img(*args, source, dest)
    return Path(dest)


def make_fixed_vhd(raw: str | os.PathLike[str], dest: str | os.PathLike[str], *,
                   force_size: bool = True) -> Path:
    """qemu-img's fixed VHD of ``raw`` (without force_size the size follows CHS geometry)."""
    return qemu_convert(raw, dest, "vpc",
                        {"subformat": "fixed", "force_size": "on" if force_size else "off"})


def make_dynamic_vhd(raw: str | os.PathLike[str], dest: str | os.PathLike[str], *,
                     force_size: bool = True) -> Path:
    """qemu-img's dynamic VHD of ``raw``."""
    return qemu_convert(raw, dest, "vpc",
                        {"subformat": "dynamic", "force_size": "on" if force_size else "off"})


def make_vhdx(raw: str | os.PathLike[str], dest: str | os.PathLike[str], *,
              block_size: int | None = None) -> Path:
    """qemu-img's dynamic VHDX of ``raw`` (block size in bytes, default chosen by qemu)."""
    options: dict[str, object] = {"subformat": "dynamic"}
    if block_size:
        options["block_size"] = block_size
    return qemu_convert(raw, dest, "vhdx", options)


# --- VHD by hand (Virtual Hard Disk Image Format Specification) -------------------------
VHD_EPOCH = 946684800
NO_BLOCK = 0xFFFFFFFF


def vhd_checksum(raw: bytes | bytearray, field: slice) -> int:
    """One's complement of the byte sum with the checksum field as zero."""
    return ~(sum(raw) - sum(raw[field])) & 0xFFFFFFFF


def vhd_footer(size: int, disk_type: int, *, data_offset: int = 0xFFFFFFFFFFFFFFFF,
               unique_id: bytes | None = None, timestamp: int = 0x2A000000,
               creator: bytes = b"test") -> bytes:
    """A checksummed 512-byte footer written field by field from the spec's table."""
    raw = bytearray(512)
    struct.pack_into(">8sIIQI4sI4sQQHBBII16sB", raw, 0, b"conectix", 2, 0x00010000,
                     data_offset, timestamp, creator, 0x00010000, b"Wi2k", size, size,
                     65535, 16, 255, disk_type, 0, unique_id or uuid.uuid4().bytes, 0)
    struct.pack_into(">I", raw, 64, vhd_checksum(raw, slice(64, 68)))
    return bytes(raw)


def build_fixed_vhd(dest: str | os.PathLike[str], size: int, chunks: Iterable[Chunk], *,
                    short_footer: bool = False) -> Path:
    """A fixed VHD by hand; ``short_footer`` writes the old 511-byte footer variant."""
    write_raw(dest, size, chunks)
    footer = vhd_footer(size, 2)
    with open(dest, "ab") as out:
        out.write(footer[:511] if short_footer else footer)
    return Path(dest)


def read_footer(path: str | os.PathLike[str]) -> tuple[int, int, bytes]:
    """(current size, timestamp, unique id) of a VHD, read field by field."""
    with open(path, "rb") as src:
        src.seek(-512, os.SEEK_END)
        raw = src.read(512)
    return (struct.unpack_from(">Q", raw, 48)[0], struct.unpack_from(">I", raw, 24)[0],
            raw[68:84])


def build_dynamic_vhd(dest: str | os.PathLike[str], size: int, chunks: Iterable[Chunk], *,
                      block_size: int = 2 * MIB, parent: str | os.PathLike[str] | None = None,
                      locators: Sequence[str] = ("W2ru", "W2ku"),
                      parent_name: str | None = None, extra_entries: int = 0,
                      parent_uuid: bytes | None = None,
                      locator_paths: dict[str, str] | None = None) -> Path:
    """A dynamic VHD by hand, or a differencing one when ``parent`` is given.

    Layout: footer copy, dynamic header, BAT, parent locator data, then for each block
    touched by ``chunks`` its sector bitmap and data, then the footer. For a differencing
    disk the bitmap marks exactly the sectors the chunks cover, which must be whole
    sectors (``scattered_chunks(..., align=512)``); ``locators`` picks which platform
    codes to write ("W2ru" relative, "W2ku" absolute, "MacX" file URL);
    ``locator_paths`` replaces the path written for a code (e.g. a Windows drive path).
    """
    chunks = sorted(chunks)
    dest = Path(dest)
    blocks_needed = -(-size // block_size)
    entries = blocks_needed + extra_entries
    bitmap_size = -(-(block_size // SECTOR // 8) // SECTOR) * SECTOR
    bat_offset = 512 + 1024
    bat_size = -(-(entries * 4) // SECTOR) * SECTOR
    position = bat_offset + bat_size

    locator_entries: list[bytes] = []
    locator_data: list[tuple[int, bytes]] = []
    parent_uuid_field = bytes(16)
    parent_timestamp = 0
    unicode_name = b""
    if parent is not None:
        parent_path = Path(parent).resolve()
        _, parent_timestamp, parent_unique = read_footer(parent_path)
        parent_uuid_field = parent_uuid if parent_uuid is not None else parent_unique
        relative = os.path.relpath(parent_path, dest.resolve().parent)
        for code in locators:
            if code == "W2ru":
                data = (".\\" + relative.replace("/", "\\")).encode("utf-16-le")
            elif code == "W2ku":
                data = str(parent_path).encode("utf-16-le")
            elif code == "MacX":
                data = parent_path.as_uri().encode("utf-8")
            else:
                raise ValueError(f"unknown platform code {code}")
            if locator_paths and code in locator_paths:
                data = locator_paths[code].encode("utf-8" if code == "MacX" else "utf-16-le")
            space = -(-len(data) // SECTOR) * SECTOR
            locator_entries.append(struct.pack(">4sIIIQ", code.encode(), space, len(data), 0,
                                               position))
            locator_data.append((position, data))
            position += space
        unicode_name = (parent_name if parent_name is not None else parent_path.name
                        ).encode("utf-16-be")[:512]

    bat = [NO_BLOCK] * entries
    block_data: dict[int, bytearray] = {}
    bitmaps: dict[int, bytearray] = {}
    for offset, data in chunks:
        if parent is not None and (offset % SECTOR or len(data) % SECTOR):
            raise ValueError("differencing chunks must be whole sectors")
        for index in range(offset // block_size, (offset + len(data) - 1) // block_size + 1):
            start = max(offset, index * block_size)
            end = min(offset + len(data), (index + 1) * block_size)
            block = block_data.setdefault(index, bytearray(block_size))
            block[start - index * block_size:end - index * block_size] = \
                data[start - offset:end - offset]
            bitmap = bitmaps.setdefault(index, bytearray(bitmap_size))
            for sector in range((start - index * block_size) // SECTOR,
                                (end - index * block_size - 1) // SECTOR + 1):
                bitmap[sector // 8] |= 0x80 >> (sector % 8)
    layout: list[tuple[int, bytes]] = []
    for index in sorted(block_data):
        bat[index] = position // SECTOR
        bitmap = bitmaps[index] if parent is not None else bytearray(b"\xff" * bitmap_size)
        layout.append((position, bytes(bitmap) + bytes(block_data[index])))
        position += bitmap_size + block_size

    disk_type = 3 if parent is None else 4
    footer = vhd_footer(size, disk_type, data_offset=512)
    header = bytearray(1024)
    struct.pack_into(">8sQQIIII16sII", header, 0, b"cxsparse", 0xFFFFFFFFFFFFFFFF,
                     bat_offset, 0x00010000, entries, block_size, 0, parent_uuid_field,
                     parent_timestamp, 0)
    header[64:64 + len(unicode_name)] = unicode_name
    for number, entry in enumerate(locator_entries):
        header[576 + 24 * number:600 + 24 * number] = entry
    struct.pack_into(">I", header, 36, vhd_checksum(header, slice(36, 40)))

    with open(dest, "wb") as out:
        out.write(footer)
        out.write(header)
        out.write(struct.pack(f">{entries}I", *bat).ljust(bat_size, b"\xff"))
        for offset, data in locator_data + layout:
            out.seek(offset)
            out.write(data)
        out.seek(position)
        out.write(footer)
    return dest


def build_differencing_vhd(dest: str | os.PathLike[str], parent: str | os.PathLike[str],
                           chunks: Iterable[Chunk], **options: object) -> Path:
    """A differencing VHD over ``parent`` holding ``chunks`` (whole sectors)."""
    size = read_footer(parent)[0]
    return build_dynamic_vhd(dest, size, chunks, parent=parent, **options)  # type: ignore[arg-type]


# --- VHDX by hand ([MS-VHDX]) --------------------------------------------------------------
def ms_guid(text: str) -> bytes:
    return uuid.UUID(text).bytes_le


VHDX_BAT_REGION = ms_guid("2DC27766-F623-4200-9D64-115E9BFD4A08")
VHDX_METADATA_REGION = ms_guid("8B7CA206-4790-4B9A-B8FE-575F050F886E")
VHDX_ITEMS = {
    "file_parameters": ms_guid("CAA16737-FA36-4D43-B3B6-33F0AA44E76B"),
    "virtual_disk_size": ms_guid("2FA54224-CD1B-4876-B211-5DBED83BF4B8"),
    "virtual_disk_id": ms_guid("BECA12AB-B2E6-4523-93EF-C309E000C746"),
    "logical_sector_size": ms_guid("8141BF1D-A96F-4709-BA47-F233A8FAAB5F"),
    "physical_sector_size": ms_guid("CDA348C7-445D-4471-9CC9-E9885251C556"),
}
VHDX_METADATA_AT = 2 * MIB
VHDX_BAT_AT = 3 * MIB


def with_crc32c(raw: bytes | bytearray) -> bytes:
    """``raw`` with its checksum field (bytes 4-8) set to the CRC-32C of the whole."""
    raw = bytearray(raw)
    raw[4:8] = bytes(4)
    struct.pack_into("<I", raw, 4, crc32c.crc32c(bytes(raw)))
    return bytes(raw)


def build_vhdx(dest: str | os.PathLike[str], size: int, chunks: Iterable[Chunk], *,
               block_size: int = MIB, logical_sector: int = 512,
               physical_sector: int = 4096, log_guid: bytes = bytes(16),
               sequence_numbers: tuple[int, int] = (5, 6), has_parent: bool = False,
               zero_state: int = 0) -> Path:
    """A dynamic VHDX by hand: headers at 64/128 KiB, region tables at 192/256 KiB, a
    1 MiB log at 1 MiB, metadata at 2 MiB, the BAT at 3 MiB, then one block per touched
    block (FULLY_PRESENT); untouched blocks get ``zero_state`` (0 NOT_PRESENT, 2 ZERO,
    3 UNMAPPED). ``log_guid`` non-zero marks a pending log.
    """
    chunks = sorted(chunks)
    blocks = -(-size // block_size)
    ratio = (1 << 23) * logical_sector // block_size
    entries = blocks + (blocks - 1) // ratio
    bat_length = -(-(entries * 8) // MIB) * MIB
    data_at = VHDX_BAT_AT + bat_length

    out = bytearray(data_at)
    out[0:8] = b"vhdxfile"
    creator = "azlift tests".encode("utf-16-le")
    out[8:8 + len(creator)] = creator
    for slot, offset in enumerate((64 * KIB, 128 * KIB)):
        header = bytearray(4 * KIB)
        struct.pack_into("<4sIQ16s16s16sHHIQ", header, 0, b"head", 0, sequence_numbers[slot],
                         uuid.uuid4().bytes, uuid.uuid4().bytes, log_guid, 0, 1, MIB, MIB)
        out[offset:offset + 4 * KIB] = with_crc32c(header)
    table = bytearray(64 * KIB)
    struct.pack_into("<4sIII", table, 0, b"regi", 0, 2, 0)
    struct.pack_into("<16sQII", table, 16, VHDX_BAT_REGION, VHDX_BAT_AT, bat_length, 1)
    struct.pack_into("<16sQII", table, 48, VHDX_METADATA_REGION, VHDX_METADATA_AT, MIB, 1)
    for offset in (192 * KIB, 256 * KIB):
        out[offset:offset + 64 * KIB] = with_crc32c(table)

    items = [
        ("file_parameters", struct.pack("<II", block_size, 2 if has_parent else 0)),
        ("virtual_disk_size", struct.pack("<Q", size)),
        ("virtual_disk_id", uuid.uuid4().bytes_le),
        ("logical_sector_size", struct.pack("<I", logical_sector)),
        ("physical_sector_size", struct.pack("<I", physical_sector)),
    ]
    meta = bytearray(MIB)
    struct.pack_into("<8sHH", meta, 0, b"metadata", 0, len(items))
    item_at = 64 * KIB
    for number, (name, value) in enumerate(items):
        flags = 0x4 | (0x2 if name != "file_parameters" else 0)
        struct.pack_into("<16sIII", meta, 32 + 32 * number, VHDX_ITEMS[name], item_at,
                         len(value), flags)
        meta[item_at:item_at + len(value)] = value
        item_at += 4 * KIB
    out[VHDX_METADATA_AT:VHDX_METADATA_AT + MIB] = meta

    touched = sorted({index for offset, data in chunks
                      for index in range(offset // block_size,
                                         (offset + len(data) - 1) // block_size + 1)})
    bat = [zero_state] * entries
    stored: dict[int, int] = {}
    position = data_at
    for index in touched:
        stored[index] = position
        bat[index + index // ratio] = (position // MIB) << 20 | 6
        position += block_size
    struct.pack_into(f"<{entries}Q", out, VHDX_BAT_AT, *bat)

    with open(dest, "wb") as handle:
        handle.write(out)
        handle.truncate(position)
        for offset, data in chunks:
            for index in range(offset // block_size, (offset + len(data) - 1) // block_size + 1):
                start = max(offset, index * block_size)
                end = min(offset + len(data), (index + 1) * block_size)
                handle.seek(stored[index] + start - index * block_size)
                handle.write(data[start - offset:end - offset])
    return Path(dest)

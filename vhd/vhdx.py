"""VHDX reader (MS-VHDX): headers, region table, metadata, BAT payload states.

Everything is validated on open: the file identifier, both headers (CRC-32C, the valid
one with the higher sequence number wins), the region table, the metadata items and the
BAT's size and offsets. The BAT is read once, bounded by its region (which lies inside
the file). A pending log and differencing disks are refused with a clear message.
"""
from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._vhdx_structs import (
    BAT_OFFSET_SHIFT,
    BAT_STATE_MASK,
    FILE_PARAM_HAS_PARENT,
    FILE_PARAM_LEAVE_BLOCKS_ALLOCATED,
    FILE_SIGNATURE,
    HEADER_AREA_END,
    HEADER_OFFSETS,
    HEADER_SIGNATURE,
    HEADER_SIZE,
    HEADER_STRUCT,
    KNOWN_REGIONS,
    LOG_VERSION,
    MAX_BLOCK_SIZE,
    MAX_METADATA_ENTRIES,
    MAX_REGION_ENTRIES,
    MAX_VIRTUAL_SIZE,
    META_FILE_PARAMETERS,
    META_LOGICAL_SECTOR_SIZE,
    META_PARENT_LOCATOR,
    META_PHYSICAL_SECTOR_SIZE,
    META_VIRTUAL_DISK_ID,
    META_VIRTUAL_DISK_SIZE,
    METADATA_ENTRY_STRUCT,
    METADATA_HEADER_STRUCT,
    METADATA_SIGNATURE,
    METADATA_TABLE_SIZE,
    MIB,
    MIN_BLOCK_SIZE,
    PAYLOAD_FULLY_PRESENT,
    PAYLOAD_PARTIALLY_PRESENT,
    PAYLOAD_STATE_NAMES,
    REGION_BAT,
    REGION_ENTRY_STRUCT,
    REGION_HEADER_STRUCT,
    REGION_METADATA,
    REGION_SIGNATURE,
    REGION_TABLE_OFFSETS,
    REGION_TABLE_SIZE,
    SECTOR_SIZES,
    VHDX_VERSION,
    bat_entry_count,
    bat_index,
    chunk_ratio,
    guid_str,
    structure_crc,
)
from .errors import ChecksumError, ImageFormatError, TruncatedImageError, UnsupportedImageError
from .raw import FROM_ZERO, FileImage, Run, block_spans, coalesce_runs, stored_block_extents

if TYPE_CHECKING:
    import numpy as np

NULL_GUID = bytes(16)
# Metadata items azlift needs, with the exact length MS-VHDX gives each.
REQUIRED_ITEMS = {
    META_FILE_PARAMETERS: ("file parameters", 8),
    META_VIRTUAL_DISK_SIZE: ("virtual disk size", 8),
    META_LOGICAL_SECTOR_SIZE: ("logical sector size", 4),
    META_PHYSICAL_SECTOR_SIZE: ("physical sector size", 4),
}
METADATA_IS_REQUIRED = 0x4


@dataclass(frozen=True)
class VhdxHeader:
    """One of the two headers, with whether it passed validation."""

    slot: int
    sequence_number: int
    file_write_guid: bytes
    data_write_guid: bytes
    log_guid: bytes
    log_version: int
    version: int
    log_length: int
    log_offset: int
    problem: str | None

    @property
    def valid(self) -> bool:
        return self.problem is None


def parse_header(slot: int, raw: bytes) -> VhdxHeader:
    """Parse and validate the header in ``slot`` (1 or 2)."""
    if len(raw) < HEADER_SIZE:
        return VhdxHeader(slot, 0, NULL_GUID, NULL_GUID, NULL_GUID, 0, 0, 0, 0,
                          "the file ends inside it")
    (signature, checksum, sequence, file_write, data_write, log_guid, log_version, version,
     log_length, log_offset) = HEADER_STRUCT.unpack_from(raw, 0)
    problem = None
    if signature != HEADER_SIGNATURE:
        problem = f"signature is {signature!r}, expected b'head'"
    elif checksum != structure_crc(raw):
        problem = "CRC-32C does not match its contents"
    elif version != VHDX_VERSION:
        problem = f"version is {version}, expected {VHDX_VERSION}"
    elif log_version != LOG_VERSION:
        problem = f"log version is {log_version}, expected {LOG_VERSION}"
    return VhdxHeader(slot, sequence, file_write, data_write, log_guid, log_version,
                      version, log_length, log_offset, problem)


@dataclass(frozen=True)
class Region:
    guid: bytes
    offset: int
    length: int
    required: bool


class VhdxImage(FileImage):
    """A dynamic or fixed VHDX; payload blocks map guest bytes to the file."""

    format = "vhdx"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(path)
        try:
            self._load()
        except BaseException:
            self.close()
            raise

    # -- opening ------------------------------------------------------------------------
    def _fail(self, error: type[Exception], message: str) -> Exception:
        return error(f"{self.path}: {message}")

    def _load(self) -> None:
        if self.pread_upto(0, 8) != FILE_SIGNATURE:
            raise self._fail(ImageFormatError, "expected the VHDX file identifier 'vhdxfile' "
                             "at offset 0, found something else")
        if self.file_size < HEADER_AREA_END:
            raise self._fail(TruncatedImageError, f"a VHDX starts with a 1 MiB header "
                             f"section, the file has only {self.file_size} bytes")
        self.creator = self.pread(8, 512).decode("utf-16-le", errors="replace").split("\0")[0]
        self.headers = [parse_header(slot + 1, self.pread_upto(offset, HEADER_SIZE))
                        for slot, offset in enumerate(HEADER_OFFSETS)]
        self.header = self._current_header()
        if self.header.log_guid != NULL_GUID:
            raise self._fail(UnsupportedImageError,
                             "the VHDX log is not empty (the disk was not closed cleanly); "
                             "replay it first: attach and detach the disk once on Hyper-V "
                             "(Mount-VHD, then Dismount-VHD), or run "
                             "`qemu-img check -r all -f vhdx` on it")
        self.regions = self._region_table()
        self._read_metadata(self.regions[REGION_METADATA])
        self._read_bat(self.regions[REGION_BAT])

    def _current_header(self) -> VhdxHeader:
        valid = [header for header in self.headers if header.valid]
        if not valid:
            details = "; ".join(f"header {h.slot}: {h.problem}" for h in self.headers)
            crc = all("CRC" in (h.problem or "") for h in self.headers)
            raise self._fail(ChecksumError if crc else ImageFormatError,
                             f"no valid VHDX header ({details})")
        return max(valid, key=lambda header: header.sequence_number)

    def _region_table(self) -> dict[bytes, Region]:
        problems = []
        for number, offset in enumerate(REGION_TABLE_OFFSETS, start=1):
            raw = self.pread_upto(offset, REGION_TABLE_SIZE)
            problem = self._region_table_problem(raw)
            if problem is None:
                return self._regions(raw)
            problems.append(f"region table {number}: {problem}")
        crc = all("CRC" in problem for problem in problems)
        raise self._fail(ChecksumError if crc else ImageFormatError, "; ".join(problems))

    @staticmethod
    def _region_table_problem(raw: bytes) -> str | None:
        if len(raw) < REGION_TABLE_SIZE:
            return "the file ends inside it"
        signature, checksum, count, _ = REGION_HEADER_STRUCT.unpack_from(raw, 0)
        if signature != REGION_SIGNATURE:
            return f"signature is {signature!r}, expected b'regi'"
        if checksum != structure_crc(raw):
            return "CRC-32C does not match its contents"
        if count > MAX_REGION_ENTRIES:
            return f"{count} entries, at most {MAX_REGION_ENTRIES} allowed"
        return None

    def _regions(self, raw: bytes) -> dict[bytes, Region]:
        count = REGION_HEADER_STRUCT.unpack_from(raw, 0)[2]
        start = REGION_HEADER_STRUCT.size
        regions: dict[bytes, Region] = {}
        for guid, offset, length, required in REGION_ENTRY_STRUCT.iter_unpack(
                raw[start:start + count * REGION_ENTRY_STRUCT.size]):
            region = Region(guid, offset, length, bool(required & 1))
            if guid not in KNOWN_REGIONS:
                if region.required:
                    raise self._fail(UnsupportedImageError,
                                     f"required region {guid_str(guid)} is not one azlift knows")
                continue
            if guid in regions:
                raise self._fail(ImageFormatError, f"region {guid_str(guid)} appears twice")
            if offset < HEADER_AREA_END or offset % MIB or length == 0 or length % MIB:
                raise self._fail(ImageFormatError,
                                 f"region {guid_str(guid)} at offset {offset} length {length}: "
                                 f"expected 1 MiB-aligned, non-empty and after the headers")
            if offset + length > self.file_size:
                raise self._fail(TruncatedImageError,
                                 f"region {guid_str(guid)} ends at {offset + length}, past "
                                 f"the end of the file ({self.file_size} bytes)")
            regions[guid] = region
        for guid, name in ((REGION_BAT, "BAT"), (REGION_METADATA, "metadata")):
            if guid not in regions:
                raise self._fail(ImageFormatError, f"the region table has no {name} region")
        return regions

    def _read_metadata(self, region: Region) -> None:
        table_size = min(METADATA_TABLE_SIZE, region.length)
        raw = self.pread(region.offset, table_size)
        signature, _, count = METADATA_HEADER_STRUCT.unpack_from(raw, 0)
        if signature != METADATA_SIGNATURE:
            raise self._fail(ImageFormatError,
                             f"metadata table signature is {signature!r}, expected b'metadata'")
        if count > MAX_METADATA_ENTRIES or 32 + 32 * count > table_size:
            raise self._fail(ImageFormatError, f"metadata table claims {count} entries, "
                             f"at most {MAX_METADATA_ENTRIES} fit")
        items: dict[bytes, bytes] = {}
        for item_id, offset, length, flags in METADATA_ENTRY_STRUCT.iter_unpack(
                raw[32:32 + 32 * count]):
            if length and (offset < METADATA_TABLE_SIZE or offset + length > region.length):
                raise self._fail(ImageFormatError,
                                 f"metadata item {guid_str(item_id)} at {offset} (+{length}) "
                                 f"lies outside the metadata region")
            known = item_id in REQUIRED_ITEMS or item_id == META_VIRTUAL_DISK_ID
            if not known and flags & METADATA_IS_REQUIRED:
                if item_id == META_PARENT_LOCATOR:
                    continue  # reported below through has_parent
                raise self._fail(UnsupportedImageError,
                                 f"required metadata item {guid_str(item_id)} is unknown")
            if known and length <= 64:
                items[item_id] = self.pread(region.offset + offset, length)
        for item_id, (name, length) in REQUIRED_ITEMS.items():
            if len(items.get(item_id, b"")) != length:
                raise self._fail(ImageFormatError, f"metadata item '{name}' is missing or "
                                 f"not {length} bytes long")
        self.block_size, flags = struct.unpack("<II", items[META_FILE_PARAMETERS])
        self.has_parent = bool(flags & FILE_PARAM_HAS_PARENT)
        self.leave_blocks_allocated = bool(flags & FILE_PARAM_LEAVE_BLOCKS_ALLOCATED)
        (self._virtual_size,) = struct.unpack("<Q", items[META_VIRTUAL_DISK_SIZE])
        (self.logical_sector_size,) = struct.unpack("<I", items[META_LOGICAL_SECTOR_SIZE])
        (self.physical_sector_size,) = struct.unpack("<I", items[META_PHYSICAL_SECTOR_SIZE])
        disk_id = items.get(META_VIRTUAL_DISK_ID, b"")
        self.virtual_disk_id = guid_str(disk_id) if len(disk_id) == 16 else None
        self._validate_metadata()

    def _validate_metadata(self) -> None:
        block = self.block_size
        if block & (block - 1) or not MIN_BLOCK_SIZE <= block <= MAX_BLOCK_SIZE:
            raise self._fail(ImageFormatError, f"block size {block} is not a power of two "
                             f"between 1 MiB and 256 MiB")
        for name, value in (("logical", self.logical_sector_size),
                            ("physical", self.physical_sector_size)):
            if value not in SECTOR_SIZES:
                raise self._fail(ImageFormatError,
                                 f"{name} sector size is {value}, expected 512 or 4096")
        size = self._virtual_size
        if not 0 < size <= MAX_VIRTUAL_SIZE or size % self.logical_sector_size:
            raise self._fail(ImageFormatError,
                             f"virtual size {size} is not a multiple of the "
                             f"{self.logical_sector_size}-byte sector between one sector and "
                             f"64 TiB")
        if self.has_parent:
            raise self._fail(UnsupportedImageError,
                             "differencing VHDX disks are not supported; merge the chain "
                             "first (Hyper-V Merge-VHD, or `qemu-img convert -O vhdx`)")

    def _read_bat(self, region: Region) -> None:
        import numpy as np
        ratio = chunk_ratio(self.logical_sector_size, self.block_size)
        self.chunk_ratio = ratio
        self.block_count = -(-self._virtual_size // self.block_size)
        needed = bat_entry_count(self.block_count, ratio, has_parent=False)
        if needed * 8 > region.length:
            raise self._fail(ImageFormatError,
                             f"the BAT region holds {region.length // 8} entries, a disk of "
                             f"{self._virtual_size} bytes with {self.block_size}-byte blocks "
                             f"needs {needed}")
        entries = np.frombuffer(self.pread(region.offset, needed * 8), dtype="<u8")
        blocks = np.arange(self.block_count, dtype=np.int64)
        payload = entries[bat_index(blocks, ratio)]  # type: ignore[arg-type]  # vectorised
        self.states = (payload & BAT_STATE_MASK).astype(np.uint8)
        self.offsets = (payload >> BAT_OFFSET_SHIFT).astype(np.int64) * MIB
        unknown = ~np.isin(self.states, list(PAYLOAD_STATE_NAMES))
        partial = self.states == PAYLOAD_PARTIALLY_PRESENT
        bad = np.flatnonzero(unknown | partial)
        if bad.size:
            block = int(bad[0])
            raise self._fail(ImageFormatError,
                             f"BAT entry of block {block} has state {int(self.states[block])}, "
                             f"not a valid payload state for a disk without a parent")
        present = np.flatnonzero(self.states == PAYLOAD_FULLY_PRESENT)
        if present.size:
            starts = self.offsets[present]
            lengths = np.minimum(self.block_size,
                                 self._virtual_size - present * self.block_size)
            ends = starts + lengths
            if int(starts.min()) < HEADER_AREA_END or int(ends.max()) > self.file_size:
                worst = int(np.argmax(ends)) if int(ends.max()) > self.file_size \
                    else int(np.argmin(starts))
                raise self._fail(TruncatedImageError,
                                 f"block {int(present[worst])} is stored at "
                                 f"{int(starts[worst])}..{int(ends[worst])}, outside the data "
                                 f"area of the file ({HEADER_AREA_END}..{self.file_size})")

    # -- the DiskImage protocol ---------------------------------------------------------
    @property
    def virtual_size(self) -> int:
        return self._virtual_size

    def runs(self, offset: int, length: int) -> Iterator[Run]:
        """Where each part of a guest range lives, merged when contiguous in the file."""
        return coalesce_runs(self._block_runs(offset, offset + length))

    def _block_runs(self, offset: int, end: int) -> Iterator[Run]:
        for block, block_start, start, stop in block_spans(offset, end, self.block_size):
            source = FROM_ZERO
            if self.states[block] == PAYLOAD_FULLY_PRESENT:
                source = int(self.offsets[block]) + start - block_start
            yield Run(start, stop - start, source)

    def read(self, offset: int, length: int) -> bytes:
        """Guest bytes, one pread per run of blocks that are contiguous in the file."""
        self.check_range(offset, length)
        return self.read_runs(offset, length, self.runs(offset, length))

    def extents(self) -> Iterator[tuple[int, int]]:
        import numpy as np
        blocks = np.flatnonzero(self.states == PAYLOAD_FULLY_PRESENT)
        return stored_block_extents(self.fd, self.file_size, blocks, self.offsets[blocks],
                                    self.block_size, self._virtual_size)

    def describe(self) -> dict[str, Any]:
        import numpy as np
        counts = np.bincount(self.states, minlength=8)
        present = int(counts[PAYLOAD_FULLY_PRESENT])
        return {
            **self.describe_file(),
            "creator": self.creator,
            "metadata": {
                "block_size": self.block_size,
                "logical_sector_size": self.logical_sector_size,
                "physical_sector_size": self.physical_sector_size,
                "virtual_size": self._virtual_size,
                "has_parent": self.has_parent,
                "leave_blocks_allocated": self.leave_blocks_allocated,
                "virtual_disk_id": self.virtual_disk_id,
            },
            "headers": [{"slot": h.slot, "sequence_number": h.sequence_number,
                         "valid": h.valid, "problem": h.problem} for h in self.headers],
            "current_header": self.header.slot,
            "log": {"state": "empty", "length": self.header.log_length},
            "bat": {
                "allocated_blocks": present,
                "total_blocks": self.block_count,
                "chunk_ratio": self.chunk_ratio,
                "states": {name: int(counts[state])
                           for state, name in PAYLOAD_STATE_NAMES.items() if counts[state]},
            },
            "parents": [],
        }


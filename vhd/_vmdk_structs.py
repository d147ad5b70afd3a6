"""VMDK on-disk layouts, descriptor grammar and the pure arithmetic around them (no I/O).

Source: VMware "Virtual Disk Format 5.0" (hosted sparse extent header, grain directory
and tables, stream-optimized markers and footer) and qemu's ``block/vmdk.c`` (what real
tools write). All integers little-endian; a sector is 512 bytes.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

SECTOR = 512

SPARSE_MAGIC = b"KDMV"
COWD_MAGIC = b"COWD"  # ESX 2.x "vmfsSparse" redo logs
SESPARSE_MAGIC = struct.pack("<Q", 0x00000000CAFEBABE)
DESCRIPTOR_SIGNATURE = b"# Disk DescriptorFile"

# magic, version, flags, capacity, grain size, descriptor offset, descriptor size,
# GTEs per GT, redundant GD offset, GD offset, overhead, unclean shutdown,
# four newline-check characters, compression algorithm, padding
HEADER_STRUCT = struct.Struct("<4sIIQQQQIQQQB4sH433s")
HEADER_SIZE = 512
assert HEADER_STRUCT.size == HEADER_SIZE

FLAG_NEWLINE_TEST = 1 << 0
FLAG_REDUNDANT_GD = 1 << 1
FLAG_ZEROED_GTE = 1 << 2
FLAG_COMPRESSED = 1 << 16
FLAG_MARKERS = 1 << 17

COMPRESSION_NONE = 0
COMPRESSION_DEFLATE = 1

GD_AT_END = 0xFFFFFFFFFFFFFFFF  # stream-optimized: the real GD offset is in the footer
GTE_UNALLOCATED = 0
GTE_ZEROED = 1  # a grain that reads as zeros (with FLAG_ZEROED_GTE)

# Markers of a stream-optimized file: u64 value, u32 size, u32 type. size > 0 means a
# grain marker (value = guest sector, then ``size`` bytes of compressed data).
MARKER_STRUCT = struct.Struct("<QII")
GRAIN_MARKER_SIZE = 12  # value + size: the compressed bytes follow directly
MARKER_EOS = 0
MARKER_GT = 1
MARKER_GD = 2
MARKER_FOOTER = 3
MARKER_NAMES = {MARKER_EOS: "end-of-stream", MARKER_GT: "grain table",
                MARKER_GD: "grain directory", MARKER_FOOTER: "footer"}

SUPPORTED_VERSIONS = (1, 2, 3)
MAX_GRAIN_SECTORS = 128 * 2048  # 128 MiB: far above any tool's grain (VMware: 64 KiB)
MAX_GTES_PER_GT = 1 << 16
MAX_CAPACITY_SECTORS = 64 * (1 << 40) // SECTOR  # 64 TiB: VMDK's own limit is 62 TiB
MAX_DESCRIPTOR_BYTES = 1 << 20
NO_PARENT = "ffffffff"

# Extent types azlift reads, and those it refuses with the reason.
READABLE_EXTENTS = ("SPARSE", "FLAT", "VMFS", "ZERO")
SNAPSHOT_EXTENTS = ("VMFSSPARSE", "SESPARSE")
DEVICE_EXTENTS = ("VMFSRDM", "VMFSRAW")
DEVICE_CREATE_TYPES = ("fulldevice", "partitioneddevice", "vmfsrdm", "vmfsrawdevicemap",
                       "vmfspassthroughrawdevicemap", "vmfsraw")
SNAPSHOT_CREATE_TYPES = ("vmfssparse", "sesparse")

EXTENT_LINE = re.compile(
    r'^(?P<access>RW|RDONLY|NOACCESS)\s+(?P<sectors>\d+)\s+(?P<type>[A-Za-z]+)'
    r'(?:\s+"(?P<file>[^"]*)"(?:\s+(?P<offset>\d+))?)?\s*$')
KEY_LINE = re.compile(r'^(?P<key>[A-Za-z0-9_.]+)\s*=\s*(?P<value>.*?)\s*$')


@dataclass(frozen=True)
class SparseHeader:
    """The 512-byte header of a hosted sparse extent (also the stream footer)."""

    magic: bytes
    version: int
    flags: int
    capacity: int  # sectors
    grain_size: int  # sectors
    descriptor_offset: int  # sectors
    descriptor_size: int  # sectors
    gtes_per_gt: int
    rgd_offset: int  # sectors
    gd_offset: int  # sectors, or GD_AT_END
    overhead: int  # sectors
    unclean_shutdown: int
    newline_chars: bytes
    compression: int

    @classmethod
    def unpack(cls, data: bytes) -> "SparseHeader":
        fields = HEADER_STRUCT.unpack(data[:HEADER_SIZE])
        return cls(*fields[:-1])

    @property
    def compressed(self) -> bool:
        return bool(self.flags & FLAG_COMPRESSED)

    @property
    def markers(self) -> bool:
        return bool(self.flags & FLAG_MARKERS)

    @property
    def zeroed_gte(self) -> bool:
        return bool(self.flags & FLAG_ZEROED_GTE)

    @property
    def grain_bytes(self) -> int:
        return self.grain_size * SECTOR

    @property
    def gt_coverage(self) -> int:
        """Sectors one grain table maps."""
        return self.grain_size * self.gtes_per_gt

    @property
    def gd_entries(self) -> int:
        return -(-self.capacity // self.gt_coverage) if self.gt_coverage else 0


def header_problem(header: SparseHeader) -> str | None:
    """What makes a sparse header unusable (None when it can be read)."""
    if header.magic != SPARSE_MAGIC:
        return f"expected the sparse extent magic 'KDMV', found {header.magic!r}"
    if header.version not in SUPPORTED_VERSIONS:
        return (f"sparse extent version {header.version} is not one azlift reads "
                f"(expected 1, 2 or 3)")
    grain = header.grain_size
    if grain < 1 or grain > MAX_GRAIN_SECTORS or grain & (grain - 1):
        return (f"grain size {grain} sectors is invalid (expected a power of two "
                f"from 1 to {MAX_GRAIN_SECTORS})")
    if not 1 <= header.gtes_per_gt <= MAX_GTES_PER_GT:
        return (f"{header.gtes_per_gt} entries per grain table is invalid "
                f"(expected 1 to {MAX_GTES_PER_GT}; VMware writes 512)")
    if header.capacity > MAX_CAPACITY_SECTORS:
        return (f"capacity of {header.capacity} sectors is beyond VMDK's limit "
                f"(expected at most {MAX_CAPACITY_SECTORS}, 64 TiB)")
    if header.compressed and header.compression != COMPRESSION_DEFLATE:
        return (f"compression algorithm {header.compression} is unknown "
                f"(expected 1, deflate)")
    return None


@dataclass(frozen=True)
class ExtentLine:
    """One extent line of a descriptor: ``ACCESS SECTORS TYPE "file" [OFFSET]``."""

    access: str
    sectors: int
    type: str  # upper case
    file: str | None
    offset: int  # sectors into the file (FLAT)


@dataclass
class Descriptor:
    """The parsed text descriptor: its keys (``ddb.*`` included) and extent lines."""

    keys: dict[str, str] = field(default_factory=dict)
    extents: list[ExtentLine] = field(default_factory=list)

    @property
    def create_type(self) -> str:
        return self.keys.get("createType", "")

    @property
    def parent_cid(self) -> str:
        return self.keys.get("parentCID", NO_PARENT).lower()

    @property
    def has_parent(self) -> bool:
        return self.parent_cid not in ("", NO_PARENT)


class DescriptorError(ValueError):
    """A descriptor line azlift cannot understand (the reader adds the file name)."""


def parse_descriptor(text: str) -> Descriptor:
    """Keys and extent lines of a VMDK descriptor; comments and blank lines skipped.

    Values lose their surrounding quotes. An extent line that does not parse is an error
    (reading past it would give a wrong disk); unknown keys are kept as they are.
    """
    descriptor = Descriptor()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip().strip("\x00")
        if not line or line.startswith("#"):
            continue
        match = EXTENT_LINE.match(line)
        if match:
            file = match["file"]
            descriptor.extents.append(ExtentLine(
                access=match["access"], sectors=int(match["sectors"]),
                type=match["type"].upper(), file=file,
                offset=int(match["offset"]) if match["offset"] else 0))
            continue
        if line.split(None, 1)[0] in ("RW", "RDONLY", "NOACCESS"):
            raise DescriptorError(
                f"descriptor line {number} is not an extent line "
                f"(expected ACCESS SECTORS TYPE \"file\" [OFFSET]): {line[:80]!r}")
        match = KEY_LINE.match(line)
        if match is None:
            raise DescriptorError(
                f"descriptor line {number} is neither key = value nor an extent: "
                f"{line[:80]!r}")
        value = match["value"]
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        descriptor.keys[match["key"]] = value
    return descriptor


def looks_like_descriptor(head: bytes) -> bool:
    """Whether the first bytes of a file are a text descriptor (not a sparse extent)."""
    if head.startswith(DESCRIPTOR_SIGNATURE):
        return True
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        return False
    return "createType" in text and ("RW " in text or "RDONLY " in text)


def grain_sectors_needed(compressed_size: int) -> int:
    """Sectors a stream grain occupies: its 12-byte marker plus the data, whole sectors."""
    return -(-(GRAIN_MARKER_SIZE + compressed_size) // SECTOR)

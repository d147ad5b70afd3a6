"""qcow2 on-disk layouts and the pure arithmetic around them (no I/O).

Source: qemu ``docs/interop/qcow2.txt`` (versions 2 and 3): header, header extensions,
L1/L2 tables (standard and extended entries), compressed cluster descriptors. All fields
big-endian.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

MAGIC = b"QFI\xfb"

# magic, version, backing file offset, backing file size, cluster bits, size, crypt method,
# L1 size, L1 table offset, refcount table offset, refcount table clusters, snapshot count,
# snapshots offset: the version 2 header.
HEADER_V2_STRUCT = struct.Struct(">4sIQIIQIIQQIIQ")
# Version 3 adds: incompatible, compatible and autoclear feature bits, refcount order,
# header length (then, when the header is longer than 104 bytes, the compression type).
HEADER_V3_STRUCT = struct.Struct(">QQQII")
V2_HEADER_LENGTH = HEADER_V2_STRUCT.size  # 72
V3_HEADER_LENGTH = V2_HEADER_LENGTH + HEADER_V3_STRUCT.size  # 104
COMPRESSION_TYPE_OFFSET = 104
assert (V2_HEADER_LENGTH, V3_HEADER_LENGTH) == (72, 104)

MIN_CLUSTER_BITS = 9
MAX_CLUSTER_BITS = 21  # 2 MiB, qemu's limit
MIN_EXTENDED_L2_CLUSTER_BITS = 14  # 32 subclusters of at least 512 bytes
MAX_L1_BYTES = 32 * 1024 * 1024  # qemu's QCOW_MAX_L1_SIZE
MAX_BACKING_NAME = 1023
SUBCLUSTERS = 32  # per cluster, with extended L2 entries

CRYPT_METHODS = {0: "none", 1: "AES", 2: "LUKS"}
COMPRESSION_ZLIB, COMPRESSION_ZSTD = 0, 1
COMPRESSION_TYPES = {COMPRESSION_ZLIB: "zlib", COMPRESSION_ZSTD: "zstd"}

# Incompatible feature bits: a reader must refuse an image with a bit it does not know.
INCOMPAT_DIRTY = 1 << 0
INCOMPAT_CORRUPT = 1 << 1
INCOMPAT_DATA_FILE = 1 << 2
INCOMPAT_COMPRESSION = 1 << 3
INCOMPAT_EXTENDED_L2 = 1 << 4
INCOMPAT_KNOWN = (INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE
                  | INCOMPAT_COMPRESSION | INCOMPAT_EXTENDED_L2)
INCOMPAT_NAMES = {0: "dirty", 1: "corrupt", 2: "external data file",
                  3: "compression type", 4: "extended L2 entries"}
COMPAT_NAMES = {0: "lazy refcounts"}
AUTOCLEAR_BITMAPS = 1 << 0
AUTOCLEAR_DATA_FILE_RAW = 1 << 1
AUTOCLEAR_NAMES = {0: "bitmaps", 1: "raw external data"}

# Header extensions: u32 type, u32 length, data padded to 8 bytes.
EXTENSION_STRUCT = struct.Struct(">II")
EXT_END = 0x00000000
EXT_BACKING_FORMAT = 0xE2792ACA
EXT_FEATURE_NAMES = 0x6803F857
EXT_BITMAPS = 0x23852875
EXT_FULL_DISK_ENCRYPTION = 0x0537BE77
EXT_DATA_FILE = 0x44415441
# A feature name table entry: type (0 incompatible, 1 compatible, 2 autoclear), bit, name.
FEATURE_NAME_STRUCT = struct.Struct(">BB46s")
FEATURE_KINDS = {0: "incompatible", 1: "compatible", 2: "autoclear"}

# L1 and L2 entries.
OFFSET_MASK = 0x00FFFFFFFFFFFE00  # bits 9-55: host offset (L2 table or data cluster)
OFLAG_COPIED = 1 << 63  # refcount exactly one; with a data file, offset 0 is allocated
OFLAG_COMPRESSED = 1 << 62
OFLAG_ZERO = 1 << 0  # reads as zero (standard entries only)
SUBCLUSTER_ALLOC_MASK = 0xFFFFFFFF  # extended L2 bitmap: low half allocated, high half zero


@dataclass(frozen=True)
class Header:
    """A parsed qcow2 header (version 2 fields take their version 3 defaults)."""

    magic: bytes
    version: int
    backing_file_offset: int
    backing_file_size: int
    cluster_bits: int
    size: int
    crypt_method: int
    l1_size: int
    l1_table_offset: int
    refcount_table_offset: int
    refcount_table_clusters: int
    nb_snapshots: int
    snapshots_offset: int
    incompatible_features: int = 0
    compatible_features: int = 0
    autoclear_features: int = 0
    refcount_order: int = 4
    header_length: int = V2_HEADER_LENGTH
    compression_type: int = COMPRESSION_ZLIB

    @classmethod
    def unpack(cls, raw: bytes) -> "Header":
        """Parse the header at the start of ``raw`` (at least 72 bytes; 104 for version 3)."""
        fields = HEADER_V2_STRUCT.unpack_from(raw, 0)
        if fields[1] < 3:
            return cls(*fields)
        extra = HEADER_V3_STRUCT.unpack_from(raw, V2_HEADER_LENGTH)
        header_length = extra[4]
        compression = COMPRESSION_ZLIB
        if header_length > COMPRESSION_TYPE_OFFSET and len(raw) > COMPRESSION_TYPE_OFFSET:
            compression = raw[COMPRESSION_TYPE_OFFSET]
        return cls(*fields, *extra, compression)

    @property
    def cluster_size(self) -> int:
        return 1 << self.cluster_bits

    @property
    def extended_l2(self) -> bool:
        return bool(self.incompatible_features & INCOMPAT_EXTENDED_L2)

    @property
    def compat(self) -> str:
        """qemu's name for the version: compat=0.10 (v2) or 1.1 (v3)."""
        return "0.10" if self.version == 2 else "1.1"


def header_length_needed(version: int) -> int:
    """Bytes of the fixed header a version needs before its length field can be trusted."""
    return V2_HEADER_LENGTH if version == 2 else V3_HEADER_LENGTH


def l2_entry_size(extended: bool) -> int:
    return 16 if extended else 8


def l2_entries(cluster_bits: int, extended: bool) -> int:
    """Entries in one L2 table (a table fills one cluster)."""
    return (1 << cluster_bits) // l2_entry_size(extended)


def l1_entries_needed(size: int, cluster_bits: int, extended: bool) -> int:
    """L1 entries that a disk of ``size`` bytes needs."""
    span = (1 << cluster_bits) * l2_entries(cluster_bits, extended)
    return -(-size // span)


def header_problem(header: Header) -> str | None:
    """Why the fixed header fields cannot describe a qcow2 image, or None.

    Feature checks (encryption, corrupt or unknown bits) are the reader's: they refuse a
    valid image, these describe a broken one.
    """
    bits = header.cluster_bits
    if not MIN_CLUSTER_BITS <= bits <= MAX_CLUSTER_BITS:
        return (f"cluster_bits is {bits}, expected {MIN_CLUSTER_BITS} to {MAX_CLUSTER_BITS} "
                f"(clusters of 512 bytes to 2 MiB)")
    if header.extended_l2 and bits < MIN_EXTENDED_L2_CLUSTER_BITS:
        return (f"cluster_bits is {bits} with extended L2 entries, which need at least "
                f"{MIN_EXTENDED_L2_CLUSTER_BITS} (16 KiB clusters)")
    if header.version >= 3:
        length = header.header_length
        if length < V3_HEADER_LENGTH or length % 8 or length > header.cluster_size:
            return (f"header length is {length}, expected a multiple of 8 between "
                    f"{V3_HEADER_LENGTH} and the cluster size {header.cluster_size}")
        if not 0 <= header.refcount_order <= 6:
            return f"refcount order is {header.refcount_order}, expected 0 to 6"
    if header.l1_size * 8 > MAX_L1_BYTES:
        return (f"L1 table of {header.l1_size} entries is larger than the "
                f"{MAX_L1_BYTES // (1024 * 1024)} MiB qemu allows")
    needed = l1_entries_needed(header.size, bits, header.extended_l2)
    if header.l1_size < needed:
        return (f"L1 table has {header.l1_size} entries, a disk of {header.size} bytes with "
                f"{header.cluster_size}-byte clusters needs {needed}")
    if header.l1_table_offset % header.cluster_size or (
            header.l1_size and header.l1_table_offset == 0):
        return (f"L1 table offset {header.l1_table_offset} is not a non-zero multiple of the "
                f"cluster size {header.cluster_size}")
    if header.backing_file_offset:
        end = header.backing_file_offset + header.backing_file_size
        if header.backing_file_size > MAX_BACKING_NAME or end > header.cluster_size:
            return (f"backing file name of {header.backing_file_size} bytes at offset "
                    f"{header.backing_file_offset}: expected at most {MAX_BACKING_NAME} "
                    f"bytes inside the first cluster ({header.cluster_size} bytes)")
    return None


def extensions_end(header: Header) -> int:
    """Where the header extension area ends: the backing file name, else cluster 0's end."""
    if header.backing_file_offset:
        return header.backing_file_offset
    return header.cluster_size


def parse_extensions(raw: bytes) -> list[tuple[int, bytes]]:
    """``(type, data)`` of each header extension in ``raw``, up to the end marker.

    Raises ValueError (with what was found) when an extension runs past ``raw``.
    """
    found = []
    position = 0
    while position + EXTENSION_STRUCT.size <= len(raw):
        kind, length = EXTENSION_STRUCT.unpack_from(raw, position)
        if kind == EXT_END:
            return found
        start = position + EXTENSION_STRUCT.size
        if start + length > len(raw):
            raise ValueError(f"header extension {kind:#010x} of {length} bytes at offset "
                             f"{position} runs past the extension area")
        found.append((kind, raw[start:start + length]))
        position = start + -(-length // 8) * 8
    return found


def feature_names(data: bytes) -> dict[tuple[int, int], str]:
    """The feature name table: ``(kind, bit) -> name``."""
    names = {}
    for kind, bit, name in FEATURE_NAME_STRUCT.iter_unpack(
            data[:len(data) // FEATURE_NAME_STRUCT.size * FEATURE_NAME_STRUCT.size]):
        names[(kind, bit)] = name.split(b"\0", 1)[0].decode("utf-8", errors="replace")
    return names


def bit_names(value: int, names: dict[int, str]) -> list[str]:
    """Names of the set bits of ``value`` (``bit N`` for bits without a name)."""
    return [names.get(bit, f"bit {bit}") for bit in range(64) if value >> bit & 1]


def compressed_location(entry: int, cluster_bits: int) -> tuple[int, int]:
    """(host byte offset, bytes to read) of a compressed cluster's descriptor.

    With x = 62 - (cluster_bits - 8), bits 0..x-1 are the byte offset and bits x..61 the
    number of 512-byte sectors after the first one; the data ends inside the last sector.
    """
    shift = 62 - (cluster_bits - 8)
    offset = entry & ((1 << shift) - 1)
    sectors = ((entry >> shift) & ((1 << (cluster_bits - 8)) - 1)) + 1
    return offset, sectors * 512 - (offset & 511)

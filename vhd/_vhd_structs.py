"""VHD on-disk layouts and the pure arithmetic around them (no I/O).

Source: Microsoft "Virtual Hard Disk Image Format Specification" (v1.0, 2006):
hard disk footer, dynamic disk header, BAT, parent locators. All fields big-endian.
"""
from __future__ import annotations

import struct
import time
from typing import NamedTuple

from . import guids

SECTOR = 512
MIB = 1024 * 1024

FOOTER_SIZE = 512
FOOTER_COOKIE = b"conectix"
FEATURES_RESERVED = 0x00000002
FORMAT_VERSION = 0x00010000
FIXED_DATA_OFFSET = 0xFFFFFFFFFFFFFFFF

DISK_TYPE_FIXED = 2
DISK_TYPE_DYNAMIC = 3
DISK_TYPE_DIFFERENCING = 4
DISK_TYPE_NAMES = {0: "none", 1: "reserved", 2: "fixed", 3: "dynamic", 4: "differencing",
                   5: "reserved", 6: "reserved"}

CHECKSUM_FIELD = slice(64, 68)

# VHD timestamps count seconds from 2000-01-01 00:00:00 UTC.
VHD_EPOCH = 946684800

AZLIFT_CREATOR_APP = b"azlf"
AZLIFT_CREATOR_VERSION = 0x00010000
CREATOR_HOST_WINDOWS = b"Wi2k"

# cookie, features, version, data offset, timestamp, creator app, creator version,
# creator host OS, original size, current size, cylinders, heads, sectors per track,
# disk type, checksum, unique id, saved state, reserved(427; kept: the checksum covers it)
FOOTER_STRUCT = struct.Struct(">8sIIQI4sI4sQQHBBII16sB427s")
assert FOOTER_STRUCT.size == FOOTER_SIZE

# Largest geometry the spec can express: 65535 cylinders x 16 heads x 255 sectors.
MAX_CHS_SECTORS = 65535 * 16 * 255


def vhd_checksum(structure: bytes, checksum_field: slice = CHECKSUM_FIELD) -> int:
    """One's complement of the byte sum of ``structure`` with its checksum field as zero."""
    total = sum(structure) - sum(structure[checksum_field])
    return (~total) & 0xFFFFFFFF


def chs_geometry(size: int) -> tuple[int, int, int]:
    """CHS geometry (cylinders, heads, sectors/track) for ``size`` bytes, per the VHD spec.

    Azure does not check geometry; it is written so other readers are content.
    """
    total = min(size // SECTOR, MAX_CHS_SECTORS)
    if total >= 65535 * 16 * 63:
        spt, heads = 255, 16
        cth = total // spt
    else:
        spt = 17
        cth = total // spt
        heads = max((cth + 1023) // 1024, 4)
        if cth >= heads * 1024 or heads > 16:
            spt, heads = 31, 16
            cth = total // spt
        if cth >= heads * 1024:
            spt, heads = 63, 16
            cth = total // spt
    return cth // heads, heads, spt


def round_up(value: int, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is >= ``value``."""
    return -(-value // multiple) * multiple


def azure_virtual_size(size: int) -> int:
    """The size Azure needs: ``size`` rounded up to a whole MiB (never zero)."""
    return max(round_up(size, MIB), MIB)


def vhd_timestamp(now: float | None = None) -> int:
    """Seconds since the VHD epoch (2000-01-01 UTC), clamped to the 32-bit field."""
    seconds = int(time.time() if now is None else now) - VHD_EPOCH
    return min(max(seconds, 0), 0xFFFFFFFF)


class Footer(NamedTuple):
    """A parsed VHD hard disk footer (also the copy at offset 0 of dynamic disks)."""

    cookie: bytes
    features: int
    format_version: int
    data_offset: int
    timestamp: int
    creator_app: bytes
    creator_version: int
    creator_host_os: bytes
    original_size: int
    current_size: int
    cylinders: int
    heads: int
    sectors_per_track: int
    disk_type: int
    checksum: int
    unique_id: bytes
    saved_state: int
    reserved: bytes = bytes(427)

    @classmethod
    def unpack(cls, raw: bytes) -> "Footer":
        """Parse 512 bytes without validating them (see ``problems``)."""
        return cls(*FOOTER_STRUCT.unpack(raw[:FOOTER_SIZE]))

    def pack(self) -> bytes:
        """The 512 bytes, with the checksum field as stored in this object."""
        return FOOTER_STRUCT.pack(
            self.cookie, self.features, self.format_version, self.data_offset,
            self.timestamp, self.creator_app, self.creator_version, self.creator_host_os,
            self.original_size, self.current_size, self.cylinders, self.heads,
            self.sectors_per_track, self.disk_type, self.checksum, self.unique_id,
            self.saved_state, self.reserved,
        )

    def with_checksum(self) -> "Footer":
        """A copy whose checksum field is the correct one."""
        return self._replace(checksum=vhd_checksum(self._replace(checksum=0).pack()))

    @property
    def checksum_ok(self) -> bool:
        return self.checksum == vhd_checksum(self.pack())

    @property
    def disk_type_name(self) -> str:
        return DISK_TYPE_NAMES.get(self.disk_type, f"unknown({self.disk_type})")

    @property
    def unique_id_str(self) -> str:
        return guids.text(self.unique_id)


def fixed_footer(virtual_size: int, *, unique_id: bytes | None = None,
                 timestamp: int | None = None) -> Footer:
    """The footer of an Azure-ready fixed VHD of ``virtual_size`` bytes (checksummed)."""
    cylinders, heads, spt = chs_geometry(virtual_size)
    return Footer(
        cookie=FOOTER_COOKIE,
        features=FEATURES_RESERVED,
        format_version=FORMAT_VERSION,
        data_offset=FIXED_DATA_OFFSET,
        timestamp=vhd_timestamp() if timestamp is None else timestamp,
        creator_app=AZLIFT_CREATOR_APP,
        creator_version=AZLIFT_CREATOR_VERSION,
        creator_host_os=CREATOR_HOST_WINDOWS,
        original_size=virtual_size,
        current_size=virtual_size,
        cylinders=cylinders,
        heads=heads,
        sectors_per_track=spt,
        disk_type=DISK_TYPE_FIXED,
        checksum=0,
        unique_id=guids.random_guid() if unique_id is None else unique_id,
        saved_state=0,
    ).with_checksum()


# --- reading footers ------------------------------------------------------------------
# Some old tools wrote a 511-byte footer (the last reserved byte missing).
SHORT_FOOTER_SIZE = 511
KNOWN_DISK_TYPES = (DISK_TYPE_FIXED, DISK_TYPE_DYNAMIC, DISK_TYPE_DIFFERENCING)


def parse_footer(raw: bytes) -> Footer | None:
    """The footer in ``raw`` (512 bytes, or 511 for the short variant) if its cookie matches."""
    if len(raw) == SHORT_FOOTER_SIZE:
        raw = raw + b"\0"
    if len(raw) < FOOTER_SIZE or raw[:8] != FOOTER_COOKIE:
        return None
    return Footer.unpack(raw)


def footer_problem(footer: Footer) -> str | None:
    """Why ``footer`` cannot describe a disk azlift reads, or None when it can."""
    if not footer.checksum_ok:
        return (f"footer checksum is {footer.checksum:#010x}, expected "
                f"{vhd_checksum(footer.pack()):#010x}")
    if footer.format_version >> 16 != FORMAT_VERSION >> 16:
        return f"footer format version is {footer.format_version:#010x}, expected 0x00010000"
    if footer.disk_type not in KNOWN_DISK_TYPES:
        return (f"disk type is {footer.disk_type} ({footer.disk_type_name}), expected "
                f"2 (fixed), 3 (dynamic) or 4 (differencing)")
    return None


def vhd_time_iso(timestamp: int) -> str:
    """A VHD timestamp as ISO 8601 UTC."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(VHD_EPOCH + timestamp))


def fourcc(value: bytes) -> str:
    """A four-character code as printable text (creator app, host OS, platform code)."""
    return value.decode("latin-1").replace("\0", " ").strip() or ""


def footer_fields(footer: Footer) -> dict[str, object]:
    """The footer as JSON-ready fields for ``describe()``."""
    return {
        "creator_app": fourcc(footer.creator_app),
        "creator_version": f"{footer.creator_version >> 16}.{footer.creator_version & 0xFFFF}",
        "creator_host_os": fourcc(footer.creator_host_os),
        "original_size": footer.original_size,
        "current_size": footer.current_size,
        "geometry": {"cylinders": footer.cylinders, "heads": footer.heads,
                     "sectors_per_track": footer.sectors_per_track},
        "disk_type": footer.disk_type_name,
        "checksum": "ok" if footer.checksum_ok else "bad",
        "unique_id": footer.unique_id_str,
        "timestamp": vhd_time_iso(footer.timestamp),
        "saved_state": bool(footer.saved_state),
        "format_version": f"{footer.format_version >> 16}.{footer.format_version & 0xFFFF}",
    }


# --- dynamic and differencing disks -----------------------------------------------------
GIB = 1024 * MIB
DYNAMIC_COOKIE = b"cxsparse"
DYNAMIC_HEADER_SIZE = 1024
DYNAMIC_HEADER_VERSION = 0x00010000
HEADER_CHECKSUM_FIELD = slice(36, 40)
# cookie, data offset, table offset, header version, max table entries, block size,
# checksum, parent unique id, parent timestamp, reserved, parent unicode name (UTF-16BE)
DYNAMIC_HEADER_STRUCT = struct.Struct(">8sQQIIII16sII512s")
# platform code, platform data space, platform data length, reserved, platform data offset
LOCATOR_STRUCT = struct.Struct(">4sIIIQ")
LOCATORS_OFFSET = 576
LOCATOR_COUNT = 8
UNALLOCATED = 0xFFFFFFFF
# The spec's limit for dynamic and differencing disks (Hyper-V and qemu agree).
MAX_DYNAMIC_SIZE = 2040 * GIB
MAX_BLOCK_SIZE = 256 * MIB
# Platform codes of parent locators, in the order a reader should try them.
LOCATOR_RELATIVE = (b"W2ru", b"Wi2r")
LOCATOR_ABSOLUTE = (b"W2ku", b"Wi2k", b"MacX")
MAX_LOCATOR_LENGTH = 64 * 1024


class ParentLocator(NamedTuple):
    """One parent locator entry: where (in the child file) a path to the parent is kept."""

    platform_code: bytes
    data_space: int
    data_length: int
    data_offset: int

    def decode(self, data: bytes) -> str | None:
        """The path stored in ``data`` for this platform code, or None if not a path."""
        code = self.platform_code
        if code in (b"W2ru", b"W2ku"):
            text = data.decode("utf-16-le", errors="replace")
        elif code in (b"Wi2r", b"Wi2k"):
            text = data.decode("latin-1")
        elif code == b"MacX":
            from urllib.parse import unquote, urlsplit
            text = unquote(urlsplit(data.decode("utf-8", errors="replace")).path)
        else:
            return None
        text = text.split("\0", 1)[0].strip()
        return text or None


class DynamicHeader(NamedTuple):
    """The dynamic disk header (dynamic and differencing disks)."""

    cookie: bytes
    data_offset: int
    table_offset: int
    header_version: int
    max_table_entries: int
    block_size: int
    checksum: int
    parent_unique_id: bytes
    parent_timestamp: int
    reserved: int
    parent_unicode_name: bytes
    locators: tuple[ParentLocator, ...]
    checksum_ok: bool

    @classmethod
    def unpack(cls, raw: bytes) -> "DynamicHeader":
        """Parse 1024 bytes without validating them (see ``dynamic_header_problem``)."""
        fields = DYNAMIC_HEADER_STRUCT.unpack_from(raw, 0)
        locators = tuple(
            ParentLocator(*entry[:3], entry[4])
            for entry in LOCATOR_STRUCT.iter_unpack(
                raw[LOCATORS_OFFSET:LOCATORS_OFFSET + LOCATOR_COUNT * LOCATOR_STRUCT.size])
            if entry[0] != b"\0\0\0\0")
        ok = fields[6] == vhd_checksum(raw[:DYNAMIC_HEADER_SIZE], HEADER_CHECKSUM_FIELD)
        return cls(*fields, locators, ok)

    @property
    def parent_name(self) -> str:
        return self.parent_unicode_name.decode("utf-16-be", errors="replace").split("\0", 1)[0]


def is_power_of_two(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


def bitmap_size(block_size: int) -> int:
    """Bytes of the sector bitmap before each block: one bit per sector, whole sectors."""
    return round_up(max(block_size // SECTOR // 8, 1), SECTOR)


def blocks_for(size: int, block_size: int) -> int:
    """Blocks needed to hold ``size`` bytes."""
    return -(-size // block_size)


def dynamic_header_problem(header: DynamicHeader, virtual_size: int) -> str | None:
    """Why ``header`` cannot describe a disk of ``virtual_size`` bytes, or None."""
    if header.cookie != DYNAMIC_COOKIE:
        return f"dynamic header cookie is {header.cookie!r}, expected b'cxsparse'"
    if not header.checksum_ok:
        return "dynamic header checksum does not match its contents"
    if header.header_version >> 16 != DYNAMIC_HEADER_VERSION >> 16:
        return f"dynamic header version is {header.header_version:#010x}, expected 0x00010000"
    if not is_power_of_two(header.block_size) or not SECTOR <= header.block_size <= MAX_BLOCK_SIZE:
        return (f"block size {header.block_size} is not a power of two between 512 and "
                f"{MAX_BLOCK_SIZE}")
    if virtual_size % SECTOR:
        return f"virtual size {virtual_size} is not a multiple of 512"
    if virtual_size > MAX_DYNAMIC_SIZE:
        return (f"virtual size {virtual_size} exceeds the {MAX_DYNAMIC_SIZE} bytes "
                f"(2040 GiB) a dynamic VHD can hold")
    needed = blocks_for(virtual_size, header.block_size)
    if header.max_table_entries < needed:
        return (f"BAT has {header.max_table_entries} entries, a disk of {virtual_size} bytes "
                f"with {header.block_size}-byte blocks needs {needed}")
    return None

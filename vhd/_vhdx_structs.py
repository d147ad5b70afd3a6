"""VHDX on-disk layouts, GUIDs and CRC-32C (no I/O).

Source: [MS-VHDX] "Virtual Hard Disk v2 (VHDX) File Format", sections 2.1-2.6.
All integers little-endian; GUIDs in Microsoft's mixed-endian byte order (``bytes_le``).
"""
from __future__ import annotations

import struct

from . import guids

KIB = 1024
MIB = 1024 * KIB
TIB = 1024 * 1024 * MIB

FILE_SIGNATURE = b"vhdxfile"
HEADER_SIGNATURE = b"head"
REGION_SIGNATURE = b"regi"
METADATA_SIGNATURE = b"metadata"

HEADER_OFFSETS = (64 * KIB, 128 * KIB)
HEADER_SIZE = 4 * KIB
REGION_TABLE_OFFSETS = (192 * KIB, 256 * KIB)
REGION_TABLE_SIZE = 64 * KIB
MAX_REGION_ENTRIES = 2047
MAX_METADATA_ENTRIES = 2047
METADATA_TABLE_SIZE = 64 * KIB
HEADER_AREA_END = 1 * MIB

# signature, checksum, sequence number, file write guid, data write guid, log guid,
# log version, version, log length, log offset
HEADER_STRUCT = struct.Struct("<4sIQ16s16s16sHHIQ")
# signature, checksum, entry count, reserved
REGION_HEADER_STRUCT = struct.Struct("<4sIII")
# guid, file offset, length, required
REGION_ENTRY_STRUCT = struct.Struct("<16sQII")
# signature, reserved, entry count, reserved(20)
METADATA_HEADER_STRUCT = struct.Struct("<8sHH20x")
# item id, offset, length, flags, reserved
METADATA_ENTRY_STRUCT = struct.Struct("<16sIII4x")
CHECKSUM_FIELD = slice(4, 8)

VHDX_VERSION = 1
LOG_VERSION = 0


# GUIDs as a VHDX file stores them (mixed-endian): from their text, and back to it.
guid = guids.parse_le
guid_str = guids.text_le


REGION_BAT = guid("2DC27766-F623-4200-9D64-115E9BFD4A08")
REGION_METADATA = guid("8B7CA206-4790-4B9A-B8FE-575F050F886E")
KNOWN_REGIONS = (REGION_BAT, REGION_METADATA)

META_FILE_PARAMETERS = guid("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
META_VIRTUAL_DISK_SIZE = guid("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
META_VIRTUAL_DISK_ID = guid("BECA12AB-B2E6-4523-93EF-C309E000C746")
META_LOGICAL_SECTOR_SIZE = guid("8141BF1D-A96F-4709-BA47-F233A8FAAB5F")
META_PHYSICAL_SECTOR_SIZE = guid("CDA348C7-445D-4471-9CC9-E9885251C556")
META_PARENT_LOCATOR = guid("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")

FILE_PARAM_LEAVE_BLOCKS_ALLOCATED = 0x1
FILE_PARAM_HAS_PARENT = 0x2

# BAT entry: state in bits 0-2, file offset in MiB in bits 20-63.
BAT_STATE_MASK = 0x7
BAT_OFFSET_SHIFT = 20
PAYLOAD_NOT_PRESENT = 0
PAYLOAD_UNDEFINED = 1
PAYLOAD_ZERO = 2
PAYLOAD_UNMAPPED = 3
PAYLOAD_FULLY_PRESENT = 6
PAYLOAD_PARTIALLY_PRESENT = 7
SB_NOT_PRESENT = 0
SB_PRESENT = 6
PAYLOAD_STATE_NAMES = {0: "not_present", 1: "undefined", 2: "zero", 3: "unmapped",
                       6: "fully_present", 7: "partially_present"}

MIN_BLOCK_SIZE = 1 * MIB
MAX_BLOCK_SIZE = 256 * MIB
SECTOR_SIZES = (512, 4096)
MAX_VIRTUAL_SIZE = 64 * TIB


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) as VHDX uses it; the module loads on first use, so commands on
    other formats do not pay for it at start-up."""
    import crc32c as _crc32c

    return _crc32c.crc32c(data)


def structure_crc(raw: bytes) -> int:
    """CRC-32C of a header or region table with its checksum field taken as zero."""
    return crc32c(bytes(raw[:4]) + b"\0\0\0\0" + bytes(raw[8:]))


def chunk_ratio(logical_sector_size: int, block_size: int) -> int:
    """Payload blocks described by one sector bitmap block: 2^23 sectors per bitmap block."""
    return (1 << 23) * logical_sector_size // block_size


def bat_index(block: int, ratio: int) -> int:
    """Index in the BAT of payload block ``block`` (a bitmap entry follows every ``ratio``)."""
    return block + block // ratio


def bat_entry_count(data_blocks: int, ratio: int, has_parent: bool) -> int:
    """Entries the BAT needs for ``data_blocks`` payload blocks, per MS-VHDX 2.5."""
    bitmap_blocks = -(-data_blocks // ratio)
    if has_parent:
        return bitmap_blocks * (ratio + 1)
    return data_blocks + max(data_blocks - 1, 0) // ratio

"""A corpus of malformed images, each built by a function from a small valid one.

``CASES`` maps a case name to ``Case(build, expected)``: ``build(folder)`` writes the file
and returns its path; ``expected`` is the VhdError subclass opening it must raise. The
check/convert CLI tests reuse the same builders (``build_all``). ``valid_images`` and
``refresh_checksums`` serve the fuzz test: mutate a valid image, then recompute its
checksums so the mutation reaches the parsers behind them.
"""
from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from azlift import vhd
from tests.vhd.images import (
    KIB,
    MIB,
    build_differencing_vhd,
    build_dynamic_vhd,
    build_fixed_vhd,
    build_vhdx,
    vhd_checksum,
    with_crc32c,
)

BASE_SIZE = 4 * MIB
BASE_CHUNKS = [(0, b"\xeb\x52\x90NTFS    " + bytes(500)), (MIB + 17, b"x" * 5000),
               (3 * MIB + 4096, b"y" * 512)]


@dataclass(frozen=True)
class Case:
    build: Callable[[Path], Path]
    expected: type[vhd.VhdError]


# --- valid bases ----------------------------------------------------------------------
def fixed(folder: Path, name: str = "fixed.vhd") -> Path:
    return build_fixed_vhd(folder / name, BASE_SIZE, BASE_CHUNKS)


def dynamic(folder: Path, name: str = "dynamic.vhd") -> Path:
    """Footer copy at 0, header at 512, BAT at 1536 (4 entries), 1 MiB blocks from 2048."""
    return build_dynamic_vhd(folder / name, BASE_SIZE, BASE_CHUNKS, block_size=MIB)


def differencing(folder: Path, name: str = "child.vhd") -> Path:
    parent = dynamic(folder, "parent.vhd")
    return build_differencing_vhd(folder / name, parent, [(MIB, b"c" * 1024)], block_size=MIB)


def vhdx(folder: Path, name: str = "disk.vhdx") -> Path:
    """Headers at 64/128 KiB, region tables at 192/256 KiB, metadata at 2 MiB, BAT at 3 MiB."""
    return build_vhdx(folder / name, BASE_SIZE, BASE_CHUNKS)


def valid_images(folder: Path) -> dict[str, Path]:
    """One small valid image of each kind the readers handle."""
    return {"vhd-fixed": fixed(folder), "vhd-dynamic": dynamic(folder),
            "vhd-differencing": differencing(folder), "vhdx": vhdx(folder)}


# --- editing helpers ------------------------------------------------------------------
def patch(path: Path, offset: int, data: bytes) -> Path:
    """Overwrite bytes at ``offset`` (negative: from the end)."""
    with open(path, "r+b") as handle:
        handle.seek(offset, 0 if offset >= 0 else 2)
        handle.write(data)
    return path


def truncate(path: Path, length: int) -> Path:
    with open(path, "r+b") as handle:
        handle.truncate(length)
    return path


def refresh_checksums(data: bytearray) -> bytearray:
    """Recompute every VHD/VHDX checksum found at its usual place in ``data``."""
    if data[:8] == b"vhdxfile":
        for offset, size in ((64 * KIB, 4 * KIB), (128 * KIB, 4 * KIB),
                             (192 * KIB, 64 * KIB), (256 * KIB, 64 * KIB)):
            if len(data) >= offset + size:
                data[offset:offset + size] = with_crc32c(data[offset:offset + size])
        return data
    for start in (0, len(data) - 512):
        if start >= 0 and data[start:start + 8] == b"conectix":
            footer = data[start:start + 512]
            struct.pack_into(">I", data, start + 64, vhd_checksum(footer, slice(64, 68)))
            if start == 0 and len(data) >= 1536 and data[512:520] == b"cxsparse":
                struct.pack_into(">I", data, 512 + 36,
                                 vhd_checksum(data[512:1536], slice(36, 40)))
    return data


def refreshed(path: Path) -> Path:
    """Recompute the checksums of the file at ``path`` in place."""
    path.write_bytes(bytes(refresh_checksums(bytearray(path.read_bytes()))))
    return path


def set_footer(path: Path, offset_in_footer: int, data: bytes) -> Path:
    """Change footer fields in both copies (end, and start if dynamic) and re-checksum."""
    raw = bytearray(path.read_bytes())
    for start in (0, len(raw) - 512):
        if raw[start:start + 8] == b"conectix":
            raw[start + offset_in_footer:start + offset_in_footer + len(data)] = data
    path.write_bytes(bytes(refresh_checksums(raw)))
    return path


def set_header(path: Path, offset_in_header: int, data: bytes) -> Path:
    """Change dynamic-header fields (header at 512) and re-checksum."""
    patch(path, 512 + offset_in_header, data)
    return refreshed(path)


def set_vhdx(path: Path, offset: int, data: bytes) -> Path:
    """Change VHDX bytes and recompute the header and region-table CRCs."""
    patch(path, offset, data)
    return refreshed(path)


# VHDX offsets in the hand-built base
META = 2 * MIB
META_ITEMS = META + 64 * KIB  # file parameters, then one item every 4 KiB
BAT = 3 * MIB
FIRST_BLOCK = 4 * MIB
REGION_TABLES = (192 * KIB, 256 * KIB)


def both_region_tables(offset_in_table: int, data: bytes) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        path = vhdx(folder)
        for table in REGION_TABLES:
            patch(path, table + offset_in_table, data)
        return refreshed(path)
    return build


def named(name: str, content: bytes) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(content)
        return path
    return build


def fixed_with_footer(offset: int, data: bytes) -> Callable[[Path], Path]:
    return lambda folder: set_footer(fixed(folder), offset, data)


def dynamic_with_footer(offset: int, data: bytes) -> Callable[[Path], Path]:
    return lambda folder: set_footer(dynamic(folder), offset, data)


def dynamic_with_header(offset: int, data: bytes) -> Callable[[Path], Path]:
    return lambda folder: set_header(dynamic(folder), offset, data)


def vhdx_with(offset: int, data: bytes) -> Callable[[Path], Path]:
    return lambda folder: set_vhdx(vhdx(folder), offset, data)


def cut(base: Callable[[Path], Path], length: int) -> Callable[[Path], Path]:
    return lambda folder: truncate(base(folder), length)


def raw_edit(base: Callable[[Path], Path], offset: int, data: bytes) -> Callable[[Path], Path]:
    """Change bytes without fixing any checksum."""
    return lambda folder: patch(base(folder), offset, data)


def _differencing_without_parent(folder: Path) -> Path:
    child = differencing(folder)
    (folder / "parent.vhd").rename(folder / "moved-away.bin")
    return child


def _differencing_garbage_locators(folder: Path) -> Path:
    child = differencing(folder)
    (folder / "parent.vhd").unlink()
    # both locators: huge length and an offset far past the end of the file
    for entry in range(2):
        set_header(child, 576 + 24 * entry + 8, struct.pack(">I", 0x7FFFFFFF))
        set_header(child, 576 + 24 * entry + 16, struct.pack(">Q", 1 << 62))
    return child


U32, U64 = ">I", ">Q"
CASES: dict[str, Case] = {
    # names and tiny files
    "empty.vhd": Case(named("empty.vhd", b""), vhd.FormatMismatchError),
    "tiny.vhd": Case(named("tiny.vhd", b"conec"), vhd.FormatMismatchError),
    "text.vhd": Case(named("notes.vhd", b"this is not a disk\n" * 40), vhd.FormatMismatchError),
    "tiny.vhdx": Case(named("tiny.vhdx", b"vhdxfile"), vhd.TruncatedImageError),
    "short-footer-only.vhd": Case(named("s.vhd", b"conectix" + bytes(503)), vhd.ChecksumError),
    "cookie-only.vhd": Case(named("c.vhd", b"conectix"), vhd.TruncatedImageError),
    # fixed VHD
    "fixed-bad-checksum": Case(raw_edit(fixed, -512 + 64, b"\0\0\0\1"), vhd.ChecksumError),
    "fixed-bad-cookie": Case(raw_edit(fixed, -512, b"conectiy"), vhd.FormatMismatchError),
    "fixed-disk-type-5": Case(fixed_with_footer(60, struct.pack(U32, 5)), vhd.ImageFormatError),
    "fixed-version-2": Case(fixed_with_footer(12, struct.pack(U32, 0x00020000)),
                            vhd.ImageFormatError),
    "fixed-size-2^62": Case(fixed_with_footer(48, struct.pack(U64, 1 << 62)),
                            vhd.TruncatedImageError),
    "fixed-size-odd": Case(fixed_with_footer(48, struct.pack(U64, BASE_SIZE - 100)),
                           vhd.ImageFormatError),
    "fixed-truncated-in-footer": Case(cut(fixed, BASE_SIZE + 300), vhd.FormatMismatchError),
    "fixed-truncated-in-data": Case(cut(fixed, BASE_SIZE // 2), vhd.FormatMismatchError),
    # dynamic VHD
    "dynamic-truncated-in-header": Case(cut(dynamic, 700), vhd.TruncatedImageError),
    "dynamic-truncated-in-bat": Case(cut(dynamic, 1540), vhd.TruncatedImageError),
    "dynamic-truncated-in-block": Case(cut(dynamic, 2048 + 512 + 1000), vhd.TruncatedImageError),
    "dynamic-bad-header-cookie": Case(dynamic_with_header(0, b"cxsparsy"), vhd.ImageFormatError),
    "dynamic-bad-header-checksum": Case(raw_edit(dynamic, 512 + 36, b"\0\0\0\0"),
                                        vhd.ChecksumError),
    "dynamic-both-footers-bad": Case(raw_edit(raw_edit(dynamic, 64, b"\0\0\0\0"),
                                              -512 + 64, b"\0\0\0\0"), vhd.ChecksumError),
    "dynamic-header-version-9": Case(dynamic_with_header(24, struct.pack(U32, 0x00090000)),
                                     vhd.ImageFormatError),
    "dynamic-block-size-3MiB": Case(dynamic_with_header(32, struct.pack(U32, 3 * MIB)),
                                    vhd.ImageFormatError),
    "dynamic-block-size-0": Case(dynamic_with_header(32, struct.pack(U32, 0)),
                                 vhd.ImageFormatError),
    "dynamic-too-few-bat-entries": Case(dynamic_with_header(28, struct.pack(U32, 2)),
                                        vhd.ImageFormatError),
    "dynamic-table-past-eof": Case(dynamic_with_header(16, struct.pack(U64, 1 << 40)),
                                   vhd.TruncatedImageError),
    "dynamic-bat-entry-past-eof": Case(raw_edit(dynamic, 1536, struct.pack(U32, 0x7FFFFFF0)),
                                       vhd.TruncatedImageError),
    "dynamic-size-2^62": Case(dynamic_with_footer(48, struct.pack(U64, 1 << 62)),
                              vhd.ImageFormatError),
    "dynamic-header-offset-past-eof": Case(dynamic_with_footer(16, struct.pack(U64, 1 << 60)),
                                           vhd.TruncatedImageError),
    "dynamic-disk-type-0": Case(dynamic_with_footer(60, struct.pack(U32, 0)),
                                vhd.ImageFormatError),
    # differencing VHD
    "differencing-parent-missing": Case(_differencing_without_parent, vhd.ParentNotFoundError),
    "differencing-garbage-locators": Case(_differencing_garbage_locators,
                                          vhd.ParentNotFoundError),
    # VHDX
    "vhdx-truncated-in-headers": Case(cut(vhdx, 100 * KIB), vhd.TruncatedImageError),
    "vhdx-truncated-in-metadata": Case(cut(vhdx, META + 1000), vhd.TruncatedImageError),
    "vhdx-truncated-in-block": Case(cut(vhdx, FIRST_BLOCK + 1000), vhd.TruncatedImageError),
    "vhdx-bad-identifier": Case(raw_edit(vhdx, 0, b"vhdxfilE"), vhd.FormatMismatchError),
    "vhdx-both-headers-bad-crc": Case(
        raw_edit(raw_edit(vhdx, 64 * KIB + 4, b"\0\0\0\0"), 128 * KIB + 4, b"\0\0\0\0"),
        vhd.ChecksumError),
    "vhdx-both-headers-bad-signature": Case(
        lambda folder: set_vhdx(set_vhdx(vhdx(folder), 64 * KIB, b"HEAD"), 128 * KIB, b"HEAD"),
        vhd.ImageFormatError),
    "vhdx-header-version-2": Case(
        lambda folder: set_vhdx(set_vhdx(vhdx(folder), 64 * KIB + 66, b"\2\0"),
                                128 * KIB + 66, b"\2\0"), vhd.ImageFormatError),
    "vhdx-region-tables-bad-crc": Case(
        raw_edit(raw_edit(vhdx, 192 * KIB + 4, b"\0\0\0\0"), 256 * KIB + 4, b"\0\0\0\0"),
        vhd.ChecksumError),
    "vhdx-region-table-huge-count": Case(both_region_tables(8, struct.pack("<I", 100000)),
                                         vhd.ImageFormatError),
    "vhdx-bat-region-past-eof": Case(both_region_tables(16 + 16, struct.pack("<Q", 1 << 50)),
                                     vhd.TruncatedImageError),
    "vhdx-region-unaligned": Case(both_region_tables(16 + 16, struct.pack("<Q", BAT + 7)),
                                  vhd.ImageFormatError),
    "vhdx-metadata-signature": Case(vhdx_with(META, b"METADATA"), vhd.ImageFormatError),
    "vhdx-metadata-item-outside": Case(vhdx_with(META + 32 + 16, struct.pack("<I", 0xFFFFFF00)),
                                       vhd.ImageFormatError),
    "vhdx-block-size-3MiB": Case(vhdx_with(META_ITEMS, struct.pack("<I", 3 * MIB)),
                                 vhd.ImageFormatError),
    "vhdx-size-2^62": Case(vhdx_with(META_ITEMS + 4 * KIB, struct.pack("<Q", 1 << 62)),
                           vhd.ImageFormatError),
    "vhdx-too-few-bat-entries": Case(vhdx_with(META_ITEMS + 4 * KIB, struct.pack("<Q", 1 << 40)),
                                     vhd.ImageFormatError),
    "vhdx-logical-sector-1000": Case(vhdx_with(META_ITEMS + 12 * KIB, struct.pack("<I", 1000)),
                                     vhd.ImageFormatError),
    "vhdx-bat-entry-past-eof": Case(vhdx_with(BAT, struct.pack("<Q", (1 << 40) << 20 | 6)),
                                    vhd.TruncatedImageError),
    "vhdx-bat-entry-in-headers": Case(vhdx_with(BAT, struct.pack("<Q", 0 << 20 | 6)),
                                      vhd.TruncatedImageError),
    "vhdx-bad-payload-state": Case(vhdx_with(BAT + 8, struct.pack("<Q", 5)),
                                   vhd.ImageFormatError),
    "vhdx-pending-log": Case(
        lambda folder: set_vhdx(set_vhdx(vhdx(folder), 64 * KIB + 48, b"\1" * 16),
                                128 * KIB + 48, b"\1" * 16), vhd.UnsupportedImageError),
}


def build_all(folder: Path, cases: dict | None = None,
              ) -> dict[str, tuple[Path, type[vhd.VhdError]]]:
    """Every case of ``cases`` (default: this corpus) built in its own sub-folder of
    ``folder``; a case is anything with ``build(folder)`` and ``expected``."""
    built = {}
    for number, (name, case) in enumerate((CASES if cases is None else cases).items()):
        home = folder / f"case{number:02d}"
        home.mkdir()
        built[name] = (case.build(home), case.expected)
    return built

"""Malformed VMDKs and OVAs: each case builds a damaged file from a good one (qemu-img,
VMDKstream, tar) in a folder of its own and names the typed error it must raise, with
words of its one-line message. Some are refused on open, some only when the damaged grain
is read; either way nothing may escape but that error.
"""
from __future__ import annotations

import struct
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.vhd.corpus import named, patch, truncate
from tests.vhd.images import MIB, SECTOR, qemu_img, scattered_chunks, write_raw
from tests.vhd.vmdk_images import make_ova, make_vmdk, make_vmware_stream, ovf_text
from azlift.vhd.errors import (ChecksumError, ImageFormatError, ImageIOError, TruncatedImageError,
                        UnsupportedImageError, VhdError)

SIZE = 3 * MIB + 3 * SECTOR


@dataclass(frozen=True)
class Case:
    build: Callable[[Path], Path]
    error: type[VhdError]
    words: str


def raw(folder: Path) -> Path:
    chunks = [(o + 4096, d) for o, d in scattered_chunks(SIZE - 8192, 6, seed=5)]
    return write_raw(folder / "r.img", SIZE, [(0, b"\xeb\x63\x90"), *chunks])


def sparse(folder: Path, subformat: str = "monolithicSparse") -> Path:
    return make_vmdk(raw(folder), folder / "d.vmdk", subformat)


def grain_sector(path: Path, last: bool = False) -> int:
    """Where qemu's stream file keeps its first (or last) grain: GD and GTs come first."""
    data = path.read_bytes()
    directory = struct.unpack_from("<Q", data, 56)[0] * SECTOR
    table = struct.unpack_from("<I", data, directory)[0] * SECTOR
    entries = [e for e in struct.unpack_from("<512I", data, table) if e > 1]
    return max(entries) if last else entries[0]


def tables_past_eof(folder: Path) -> Path:
    """Both grain directories' first entries point far past the end."""
    path = sparse(folder)
    data = path.read_bytes()
    for field in (48, 56):  # redundant and primary directory offsets
        patch(path, struct.unpack_from("<Q", data, field)[0] * SECTOR, struct.pack("<I", 1 << 28))
    return path


def tables_shared(folder: Path) -> Path:
    """A 65 MiB disk (three grain tables of 32 MiB): the second entry of both grain
    directories points at the first's table, as a crafted file would, to stand for GiBs
    of tables with a few KiB."""
    path = make_vmdk(write_raw(folder / "big.img", 65 * MIB, [(0, b"\xeb\x63\x90")]),
                     folder / "shared.vmdk", "monolithicSparse")
    data = path.read_bytes()
    for field in (48, 56):
        directory = struct.unpack_from("<Q", data, field)[0] * SECTOR
        first = struct.unpack_from("<I", data, directory)[0]
        patch(path, directory + 4, struct.pack("<I", first))
    return path


def truncated_grain(folder: Path) -> Path:
    path = sparse(folder, "streamOptimized")
    return truncate(path, grain_sector(path, last=True) * SECTOR + 14)


def corrupt_grain(folder: Path) -> Path:
    path = sparse(folder, "streamOptimized")
    return patch(path, grain_sector(path) * SECTOR + 12, b"\xff\xff\xff\xff")


def misplaced_grain(folder: Path) -> Path:
    path = sparse(folder, "streamOptimized")
    return patch(path, grain_sector(path) * SECTOR, struct.pack("<Q", 999 * 128))


def flat(folder: Path, damage: Callable[[Path], None]) -> Path:
    path = sparse(folder, "monolithicFlat")
    damage(folder / "d-flat.vmdk")
    return path


def delta_link(folder: Path) -> Path:
    base = sparse(folder)
    qemu_img("create", "-f", "vmdk", "-b", base, "-F", "vmdk", folder / "snap.vmdk")
    return folder / "snap.vmdk"


def ova(folder: Path, **options: object) -> Path:
    disk = sparse(folder, "streamOptimized")
    return make_ova(folder / "vm.ova", [(disk, SIZE)], **options)


def member_damaged(folder: Path, cut: bool) -> Path:
    path = ova(folder, manifest=None if cut else "SHA256")
    with tarfile.open(path) as archive:
        member = archive.getmember("d.vmdk")
    with open(path, "r+b") as handle:
        if cut:
            handle.truncate(member.offset_data + member.size // 2)
        else:
            handle.seek(member.offset_data + 600)
            handle.write(b"\x00\x01")
    return path


HEADER_FIELDS = {"version": (4, struct.pack("<I", 9), "version 9"),
                 "grain-size": (20, struct.pack("<Q", 3), "grain size 3"),
                 "table-entries": (44, struct.pack("<I", 0), "entries per grain table"),
                 "capacity": (12, struct.pack("<Q", 1 << 50), "capacity")}
BAD_OVF = ovf_text([("d.vmdk", SIZE, "vmdk")]).replace('ovf:capacity="', 'ovf:capacity="x')

CASES: dict[str, Case] = {
    **{f"header-{name}": Case(lambda f, o=offset, v=value: patch(sparse(f), o, v),
                              ImageFormatError, words)
       for name, (offset, value, words) in HEADER_FIELDS.items()},
    "grain-directories-past-eof": Case(
        lambda f: patch(patch(sparse(f), 48, struct.pack("<Q", 1 << 30)), 56,
                        struct.pack("<Q", 1 << 30)), TruncatedImageError, "grain directory"),
    "grain-tables-past-eof": Case(tables_past_eof, TruncatedImageError, "grain table"),
    "grain-tables-shared": Case(tables_shared, ImageFormatError,
                                "grain directory entries point to the same grain table"),
    "truncated-grain": Case(truncated_grain, TruncatedImageError, "expected"),
    "corrupt-grain": Case(corrupt_grain, ImageFormatError, "does not inflate"),
    "grain-marker-elsewhere": Case(misplaced_grain, ImageFormatError, "grain marker"),
    "bad-footer-marker": Case(
        lambda f: patch(make_vmware_stream(raw(f), f / "v.vmdk"), -1536 + 12,
                        struct.pack("<I", 2)), ImageFormatError, "footer marker"),
    "bad-end-of-stream": Case(
        lambda f: patch(make_vmware_stream(raw(f), f / "v.vmdk"), -512 + 12,
                        struct.pack("<I", 7)), ImageFormatError, "end-of-stream"),
    "flat-extent-short": Case(lambda f: flat(f, lambda p: truncate(p, MIB)), TruncatedImageError,
                              "holds only"),
    "flat-extent-missing": Case(lambda f: flat(f, Path.unlink), ImageIOError, "not found"),
    "garbled-extent-line": Case(
        named("bad.vmdk", b'# Disk DescriptorFile\ncreateType="monolithicFlat"\n'
                          b'RW lots FLAT "x" 0\n'), ImageFormatError, "not an extent line"),
    "descriptor-without-extents": Case(
        named("empty.vmdk", b'# Disk DescriptorFile\ncreateType="monolithicFlat"\n'),
        ImageFormatError, "no extents"),
    "lone-split-extent": Case(
        lambda f: (sparse(f, "twoGbMaxExtentSparse"), f / "d-s001.vmdk")[1],
        UnsupportedImageError, "open the descriptor"),
    "delta-link": Case(delta_link, UnsupportedImageError, "delta link"),
    "ova-manifest-mismatch": Case(lambda f: member_damaged(f, cut=False), ChecksumError,
                                  "manifest says"),
    "ova-member-cut": Case(lambda f: member_damaged(f, cut=True), ImageFormatError, "vm.ova"),
    "ova-bad-ovf": Case(lambda f: ova(f, ovf=BAD_OVF, manifest=None), ImageFormatError,
                        "whole number"),
    "ova-disk-not-in-tar": Case(
        lambda f: ova(f, ovf=ovf_text([("gone.vmdk", SIZE, "vmdk")]), manifest=None),
        ImageFormatError, "not in the OVA"),
}

"""A corpus of malformed and refused qcow2 images, each made from a small valid one.

``CASES`` maps a case name to ``Case(build, expected)``: ``build(folder)`` writes the file
(qemu-img makes the valid base, then bytes are patched where the qcow2 spec puts them)
and returns its path; opening it, listing its extents and reading it must raise
``expected``. ``valid_images`` are the bases, for the fuzz test.
"""
from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from azlift import vhd
from tests.vhd import corpus
from tests.vhd.corpus import patch, truncate
from tests.vhd.images import MIB, qemu_img, write_raw
from tests.vhd.qcow2_images import create_overlay, qemu_io

CHUNKS = [(0, b"\xeb" + b"a" * 65535), (MIB + 17, b"x" * 5000), (3 * MIB + 4096, b"y" * 512)]


@dataclass(frozen=True)
class Case:
    build: Callable[[Path], Path]
    expected: type[vhd.VhdError]
    says: str  # words the one-line message must hold: the fault found is the one made


# --- valid bases ----------------------------------------------------------------------------
def raw_source(folder: Path) -> Path:
    path = folder / "source.raw"
    if not path.exists():
        write_raw(path, 4 * MIB, CHUNKS)
    return path


def plain(folder: Path, name: str = "plain.qcow2") -> Path:
    """v3, 64 KiB clusters: header, refcounts, L1 at 192 KiB, L2 at 256 KiB, data after."""
    path = folder / name
    qemu_img("convert", "-f", "raw", "-O", "qcow2", raw_source(folder), path)
    return path


def compressed(folder: Path, name: str = "compressed.qcow2") -> Path:
    """The same with zlib-compressed clusters, the last one ending at the end of the file."""
    path = folder / name
    qemu_img("convert", "-f", "raw", "-O", "qcow2", "-c", raw_source(folder), path)
    return path


def extended(folder: Path, name: str = "extended.qcow2") -> Path:
    path = folder / name
    qemu_img("convert", "-f", "raw", "-O", "qcow2", "-o", "extended_l2=on",
             raw_source(folder), path)
    return path


def overlay(folder: Path, name: str = "overlay.qcow2") -> Path:
    base = plain(folder, "base.qcow2")
    path = create_overlay(folder / name, base.name, "qcow2")
    qemu_io(path, "write -P 0x11 2M 64k")
    return path


def valid_images(folder: Path) -> dict[str, Path]:
    return {"plain": plain(folder), "compressed": compressed(folder),
            "extended": extended(folder), "overlay": overlay(folder)}


# --- editing helpers ------------------------------------------------------------------------
def field(path: Path, fmt: str, offset: int) -> int:
    with open(path, "rb") as handle:
        handle.seek(offset)
        return struct.unpack(fmt, handle.read(struct.calcsize(fmt)))[0]


def l1_offset(path: Path) -> int:
    return field(path, ">Q", 40)


def l2_offset(path: Path) -> int:
    return field(path, ">Q", l1_offset(path)) & 0x00FFFFFFFFFFFE00


def set_incompatible(path: Path, bits: int) -> Path:
    return patch(path, 72, struct.pack(">Q", field(path, ">Q", 72) | bits))


def compressed_entry(path: Path, index: int) -> tuple[int, int]:
    """(L2 entry, host offset) of the ``index``-th compressed cluster (64 KiB clusters)."""
    table = l2_offset(path)
    entries = [field(path, ">Q", table + 8 * n) for n in range(64)]
    entry = [e for e in entries if e & 1 << 62][index]
    return entry, entry & ((1 << 54) - 1)


# --- the cases ------------------------------------------------------------------------------
def loop(folder: Path) -> Path:
    first = folder / "a.qcow2"
    qemu_img("create", "-f", "qcow2", first, "4M")
    second = create_overlay(folder / "b.qcow2", "a.qcow2", "qcow2")
    qemu_img("rebase", "-u", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", first)
    return second


def self_backing(folder: Path) -> Path:
    path = folder / "self.qcow2"
    qemu_img("create", "-f", "qcow2", path, "4M")
    qemu_img("rebase", "-u", "-f", "qcow2", "-b", "self.qcow2", "-F", "qcow2", path)
    return path


def missing_backing(folder: Path) -> Path:
    path = overlay(folder)
    (folder / "base.qcow2").unlink()
    return path


def missing_data_file(folder: Path) -> Path:
    path = folder / "ext.qcow2"
    qemu_img("create", "-f", "qcow2", "-o", f"data_file={folder / 'ext.data'}", path, "4M")
    (folder / "ext.data").unlink()
    return path


def bad_subclusters(folder: Path) -> Path:
    """A subcluster both allocated and reading as zero (bit 0 and bit 32 of the bitmap)."""
    path = extended(folder)
    bitmap = l2_offset(path) + 8
    return patch(path, bitmap, struct.pack(">Q", field(path, ">Q", bitmap) | 1 << 32 | 1))


def zstd_without_bit(folder: Path) -> Path:
    path = plain(folder)
    return patch(path, 104, b"\x01")


def version(number: int) -> Callable[[Path], Path]:
    return lambda folder: patch(plain(folder), 4, struct.pack(">I", number))


CASES: dict[str, Case] = {
    "qcow2-truncated-header": Case(lambda f: truncate(plain(f), 50), vhd.TruncatedImageError,
                                   "ends inside the qcow2"),
    "qcow2-truncated-before-l1": Case(lambda f: truncate(plain(f), 128 * 1024),
                                      vhd.TruncatedImageError, "the L1 table"),
    "qcow2-truncated-data": Case(lambda f: truncate(plain(f), 400 * 1024),
                                 vhd.TruncatedImageError, "past the end of"),
    "qcow2-l1-entry-past-eof": Case(
        lambda f: patch(p := plain(f), l1_offset(p), struct.pack(">Q", 1 << 40 | 1 << 63)),
        vhd.TruncatedImageError, "L1 entry 0 points to an L2 table"),
    "qcow2-l1-entry-unaligned": Case(
        lambda f: patch(p := plain(f), l1_offset(p), struct.pack(">Q", 0x40200 | 1 << 63)),
        vhd.ImageFormatError, "not aligned"),
    "qcow2-l1-offset-past-eof": Case(
        lambda f: patch(plain(f), 40, struct.pack(">Q", 1 << 40)), vhd.TruncatedImageError,
        "the L1 table"),
    "qcow2-l2-entry-past-eof": Case(
        lambda f: patch(p := plain(f), l2_offset(p) + 8, struct.pack(">Q", 1 << 63 | 1 << 40)),
        vhd.TruncatedImageError, "points to a cluster at offset 1099511627776"),
    "qcow2-l2-entry-unaligned": Case(
        lambda f: patch(p := plain(f), l2_offset(p) + 8, struct.pack(">Q", 1 << 63 | 0x50200)),
        vhd.ImageFormatError, "not aligned"),
    "qcow2-compressed-cluster-past-eof": Case(
        lambda f: patch(p := compressed(f), l2_offset(p) + 8,
                        struct.pack(">Q", 1 << 62 | 1 << 40)),
        vhd.TruncatedImageError, "compressed cluster at offset 1099511627776"),
    "qcow2-compressed-cluster-runs-past-eof": Case(  # starts inside, its sectors do not
        lambda f: patch(p := compressed(f), l2_offset(p) + 8, struct.pack(
            ">Q", 1 << 62 | 2 << 54 | p.stat().st_size - 100)),
        vhd.TruncatedImageError, "(3 sectors), past the end of the file"),
    "qcow2-compressed-cluster-cut-off": Case(
        lambda f: truncate(p := compressed(f), compressed_entry(p, 2)[1] + 10),
        vhd.TruncatedImageError, "cut off by the end of the file"),
    "qcow2-compressed-cluster-garbage": Case(
        lambda f: patch(p := compressed(f), compressed_entry(p, 1)[1], b"\xff\xfe" * 20),
        vhd.ImageFormatError, "compressed cluster at offset"),
    "qcow2-absurd-size": Case(lambda f: patch(plain(f), 24, struct.pack(">Q", 1 << 62)),
                              vhd.ImageFormatError, "L1 table has 1 entries"),
    "qcow2-absurd-l1-size": Case(lambda f: patch(plain(f), 36, struct.pack(">I", 1 << 31)),
                                 vhd.ImageFormatError, "larger than the 32 MiB"),
    "qcow2-cluster-bits-30": Case(lambda f: patch(plain(f), 20, struct.pack(">I", 30)),
                                  vhd.ImageFormatError, "cluster_bits is 30"),
    "qcow2-header-length-odd": Case(lambda f: patch(plain(f), 100, struct.pack(">I", 107)),
                                    vhd.ImageFormatError, "header length is 107"),
    "qcow2-extension-overruns": Case(
        lambda f: patch(plain(f), 112, struct.pack(">II", 0x6803F857, 1 << 30)),
        vhd.ImageFormatError, "runs past the extension area"),
    "qcow2-backing-name-too-long": Case(
        lambda f: patch(overlay(f), 8, struct.pack(">QI", 512, 5000)), vhd.ImageFormatError,
        "backing file name of 5000 bytes"),
    "qcow2-backing-loop": Case(loop, vhd.ParentChainError, "loops back"),
    "qcow2-backing-is-itself": Case(self_backing, vhd.ParentChainError, "loops back"),
    "qcow2-backing-missing": Case(missing_backing, vhd.ParentNotFoundError,
                                  "backing file 'base.qcow2' not found"),
    "qcow2-data-file-missing": Case(missing_data_file, vhd.ImageIOError,
                                    "external data file"),
    "qcow2-subcluster-both-allocated-and-zero": Case(bad_subclusters, vhd.ImageFormatError,
                                                     "invalid subcluster bitmap"),
    "qcow2-compression-type-without-its-bit": Case(zstd_without_bit, vhd.ImageFormatError,
                                                   "compression type is zstd"),
    "qcow2-marked-corrupt": Case(lambda f: set_incompatible(plain(f), 2), vhd.ImageFormatError,
                                 "marked corrupt"),
    "qcow2-unknown-incompatible-bit": Case(lambda f: set_incompatible(plain(f), 1 << 9),
                                           vhd.UnsupportedImageError, "bit 9"),
    "qcow2-encrypted-aes": Case(lambda f: patch(plain(f), 32, struct.pack(">I", 1)),
                                vhd.UnsupportedImageError, "encrypted (AES)"),
    "qcow2-version-4": Case(version(4), vhd.UnsupportedImageError, "qcow2 version 4"),
    "qcow-version-1": Case(version(1), vhd.UnsupportedImageError, "qcow version 1"),
}


def build_all(folder: Path) -> dict[str, tuple[Path, type[vhd.VhdError]]]:
    """Every qcow2 case built in its own sub-folder of ``folder``."""
    return corpus.build_all(folder, CASES)


def open_fully(path: Path) -> None:
    """Open, map and read the whole image, as convert and upload do."""
    with vhd.Qcow2Image(path) as image:
        list(image.extents())
        image.describe()
        size = image.virtual_size
        for offset in range(0, size, 4 * MIB):
            image.read(offset, min(4 * MIB, size - offset))

"""Files that are disk containers or compressed wrappers, never raw disks.

qemu-img writes the formats it can (qcow2, qcow, QED, every VMDK subformat, VDI,
Parallels); the rest are built from their published byte layouts with the standard
library (tar, zip, gzip, xz, bzip2) or by hand (zstd frame, ISO 9660 volume descriptors,
DMG trailer, COWD/seSparse/LUKS headers, OVF and VMDK descriptors). Each maker returns
the path to hand to azlift; ``CONTAINERS`` maps a case name to (maker, the format name
azlift must report).
"""
from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import struct
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from tests.vhd.images import MIB, qemu_img

Maker = Callable[[Path], Path]

# A small raw disk: what the wrappers below wrap.
PAYLOAD = b"\x33\xc0" + bytes(508) + b"\x55\xaa" + b"data" * 1000


def _qemu_create(fmt: str, name: str, *options: str) -> Maker:
    def make(directory: Path) -> Path:
        path = directory / name
        args = ["create", "-q", "-f", fmt]
        if options:
            args += ["-o", ",".join(options)]
        qemu_img(*args, path, "64M")
        return path
    return make


def _bytes(name: str, content: Callable[[], bytes]) -> Maker:
    def make(directory: Path) -> Path:
        path = directory / name
        path.write_bytes(content())
        return path
    return make


def _zstd_frame(data: bytes) -> bytes:
    """One zstd frame holding ``data`` in a raw block (RFC 8878 §3.1)."""
    assert len(data) < 256
    header = b"\x28\xb5\x2f\xfd" + bytes([0x20, len(data)])  # single segment, 1-byte size
    block = (1 | (0 << 1) | (len(data) << 3)).to_bytes(3, "little")  # last, raw
    return header + block + data


def iso9660_image() -> bytes:
    """A 1 MiB ISO 9660 image: a primary volume descriptor and the set terminator."""
    image = bytearray(MIB)
    primary = bytearray(2048)
    primary[0:7] = b"\x01CD001\x01"
    primary[40:72] = b"AZLIFT_TEST".ljust(32)
    struct.pack_into("<I", primary, 80, MIB // 2048)  # volume space size, both-endian
    struct.pack_into(">I", primary, 84, MIB // 2048)
    image[0x8000:0x8800] = primary
    image[0x8800:0x8807] = b"\xffCD001\x01"
    return bytes(image)


def _dmg() -> bytes:
    """Data followed by a UDIF "koly" trailer in the last 512 bytes."""
    trailer = bytearray(512)
    trailer[0:4] = b"koly"
    struct.pack_into(">II", trailer, 4, 4, 512)  # version, header size
    return PAYLOAD + bytes(trailer)


def _tar(name: str, members: list[tuple[str, bytes]], fmt: int) -> Maker:
    def make(directory: Path) -> Path:
        path = directory / name
        with tarfile.open(path, "w", format=fmt) as archive:
            for member, data in members:
                info = tarfile.TarInfo(member)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
        return path
    return make


def _zip(directory: Path) -> Path:
    path = directory / "disk.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("disk.raw", PAYLOAD)
    return path


OVF = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
       b'<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" '
       b'xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">\n'
       b'  <References><File ovf:id="file1" ovf:href="vm-disk1.vmdk"/></References>\n'
       b'</Envelope>\n')


def _vmdk_flat(subformat: str, pick: str) -> Maker:
    """A VMDK made of a descriptor and flat extents; ``pick`` which file to return."""
    def make(directory: Path) -> Path:
        descriptor = _qemu_create("vmdk", f"{subformat}.vmdk", f"subformat={subformat}")(
            directory)
        if pick == "descriptor":
            return descriptor
        return next(p for p in sorted(directory.iterdir()) if p != descriptor
                    and p.name.startswith(subformat))
    return make


def _header(magic: bytes, size: int = 64 * 1024) -> Callable[[], bytes]:
    return lambda: magic + bytes(size - len(magic))


CONTAINERS: dict[str, tuple[Maker, str]] = {
    "qcow2-v3": (_qemu_create("qcow2", "disk.qcow2"), "qcow2"),
    "qcow2-v2": (_qemu_create("qcow2", "disk-v2.qcow2", "compat=0.10"), "qcow2"),
    "qcow2-named-img": (lambda d: _rename(_qemu_create("qcow2", "q.qcow2")(d), "disk.img"),
                        "qcow2"),
    "qcow": (_qemu_create("qcow", "disk.qcow"), "qcow"),
    "qed": (_qemu_create("qed", "disk.qed"), "QED"),
    "vmdk-monolithicSparse": (_qemu_create("vmdk", "sparse.vmdk"), "VMDK"),
    "vmdk-streamOptimized": (_qemu_create("vmdk", "stream.vmdk",
                                          "subformat=streamOptimized"), "VMDK"),
    "vmdk-twoGbMaxExtentSparse": (_vmdk_flat("twoGbMaxExtentSparse", "descriptor"), "VMDK"),
    "vmdk-twoGbMaxExtentSparse-extent": (_vmdk_flat("twoGbMaxExtentSparse", "extent"),
                                         "VMDK"),
    "vmdk-monolithicFlat": (_vmdk_flat("monolithicFlat", "descriptor"), "VMDK"),
    "vmdk-twoGbMaxExtentFlat": (_vmdk_flat("twoGbMaxExtentFlat", "descriptor"), "VMDK"),
    "vmdk-cowd": (_bytes("delta.vmdk", _header(b"COWD\x01\x00\x00\x00")), "COWD"),
    "vmdk-sesparse": (_bytes("delta-sesparse.vmdk",
                             _header(b"\xbe\xba\xfe\xca\x00\x00\x00\x00")), "seSparse"),
    "vdi": (_qemu_create("vdi", "disk.vdi"), "VDI"),
    "parallels": (_qemu_create("parallels", "disk.hdd"), "Parallels"),
    "luks": (_bytes("disk.luks", _header(b"LUKS\xba\xbe\x00\x01")), "LUKS"),
    "ova-ustar": (_tar("vm.ova", [("vm.ovf", OVF), ("vm-disk1.vmdk", PAYLOAD)],
                       tarfile.USTAR_FORMAT), "OVA"),
    "ova-pax": (_tar("vm-pax.ova", [("vm.ovf", OVF), ("vm-disk1.vmdk", PAYLOAD)],
                     tarfile.PAX_FORMAT), "OVA"),
    "tar": (_tar("disk.tar", [("disk.raw", PAYLOAD)], tarfile.GNU_FORMAT), "tar"),
    "zip": (_zip, "zip"),
    "7z": (_bytes("disk.7z", _header(b"7z\xbc\xaf\x27\x1c\x00\x04")), "7-Zip"),
    "ovf": (_bytes("vm.ovf", lambda: OVF), "OVF"),
    "iso": (_bytes("install.iso", iso9660_image), "ISO 9660"),
    "gzip": (_bytes("disk.raw.gz", lambda: gzip.compress(PAYLOAD)), "gzip"),
    "xz": (_bytes("disk.raw.xz", lambda: lzma.compress(PAYLOAD)), "xz"),
    "zstd": (_bytes("disk.raw.zst", lambda: _zstd_frame(b"hello azlift")), "zstd"),
    "bzip2": (_bytes("disk.raw.bz2", lambda: bz2.compress(PAYLOAD)), "bzip2"),
    "dmg": (_bytes("disk.dmg", _dmg), "DMG"),
    "vhds": (_bytes("shared.vhds", _header(b"vhdxfile")), "VHD Set"),
}

# Cases a reader of azlift's own opens (or refuses for what is inside: an OVA without a
# VMDK disk, one extent of a split VMDK): the refusal of unreadable containers is tested
# on the others; tests/vhd/test_vmdk.py, test_ova.py and test_qcow2.py cover these.
READ_BY_A_READER = {"vmdk-monolithicSparse", "vmdk-streamOptimized",
                    "vmdk-twoGbMaxExtentSparse", "vmdk-twoGbMaxExtentSparse-extent",
                    "vmdk-monolithicFlat", "vmdk-twoGbMaxExtentFlat", "ova-ustar", "ova-pax",
                    "qcow2-v3", "qcow2-v2", "qcow2-named-img"}
REFUSED_CASES = [name for name in CONTAINERS if name not in READ_BY_A_READER]

# Containers whose content is recognised whatever the name (not the .vhds case, which only
# its name gives away).
CONTENT_CASES = [name for name in CONTAINERS if name != "vhds"]

def _rename(path: Path, name: str) -> Path:
    return path.rename(path.with_name(name))


def fingerprint(path: Path) -> tuple[str, int, int]:
    """Content hash, size and modification time: what "left untouched" means."""
    stat = path.stat()
    return hashlib.sha256(path.read_bytes()).hexdigest(), stat.st_size, stat.st_mtime_ns


def make_container(name: str, directory: Path) -> Path:
    """Write case ``name`` into ``directory`` (a folder of its own) and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    return CONTAINERS[name][0](directory)

"""Signatures of the disk containers and compressed wrappers that are not raw disks.

Layout facts only (where each format puts its magic, what a user can do with it); the
probing lives in ``detect.py``. Each entry is matched against the first ``HEAD_SIZE``
bytes of a file (and, for tail signatures, its last sector), so telling a qcow2 or a
gzip file from a raw disk costs two reads.
"""
from __future__ import annotations

import io
import re
import struct
from collections.abc import Callable
from typing import NamedTuple

# Enough to reach ISO 9660's third possible volume descriptor (0x9001 + 5).
HEAD_SIZE = 0x9006
TAIL_SIZE = 512

NOT_A_DISK = "it is not a disk image"
SNAPSHOT = "a snapshot delta holds only the blocks changed since the snapshot"

# "qemu-img convert ... -O raw": the way forward for what qemu reads and azlift doesn't.
QEMU_TO_RAW = "`qemu-img convert -f {qemu} -O raw {{path}} disk.raw` it first"


class Signature(NamedTuple):
    """One recognisable container: what it is called and how to get a disk out of it."""

    format: str          # key: the reader that will open it, e.g. "qcow2", "vmdk"
    name: str            # short name for people: "qcow2", "VMDK", "gzip"
    label: str           # what the file is, for people: "qcow2 image"
    offset: int          # where the magic sits (negative: from the end of the file)
    magic: bytes         # the bytes that identify it there
    advice: str          # the way forward while azlift has no reader for it ({path})
    # Why azlift refuses it; None: a disk format azlift has no reader for yet.
    why: str | None = None
    matches: Callable[[bytes], bool] | None = None  # a finer test of the head, if any
    evidence: str = ""   # how it was recognised, when not by ``magic`` alone

    def describe_magic(self) -> str:
        if self.evidence:
            return self.evidence
        where = (f"offset {self.offset}" if self.offset >= 0
                 else f"{-self.offset} bytes before the end")
        return f"{_printable(self.magic)} at {where}"


def _printable(magic: bytes) -> str:
    text = "".join(chr(b) if 0x20 <= b < 0x7F and b != 0x5C else f"\\x{b:02x}" for b in magic)
    return f"'{text}'"


def _qcow_version(head: bytes) -> int:
    return struct.unpack_from(">I", head, 4)[0] if len(head) >= 8 else 0


def _is_qcow2(head: bytes) -> bool:
    return _qcow_version(head) in (2, 3)


def _is_qcow1(head: bytes) -> bool:
    return _qcow_version(head) == 1


def _is_unknown_qcow(head: bytes) -> bool:
    return _qcow_version(head) not in (1, 2, 3)


def _is_bzip2(head: bytes) -> bool:
    # "BZh" + block size digit, then a block magic (pi) or the end-of-stream magic (sqrt pi).
    return (len(head) >= 10 and 0x31 <= head[3] <= 0x39
            and head[4:10] in (b"\x31\x41\x59\x26\x53\x59", b"\x17\x72\x45\x38\x50\x90"))


def _is_ova(head: bytes) -> bool:
    """A tar whose first member is an OVF descriptor (DSP0243 puts it first); pax and GNU
    long-name headers before it are read through, as tar itself does."""
    if not _is_tar(head):
        return False
    import tarfile  # only for files that already look like a tar

    try:
        with tarfile.open(fileobj=io.BytesIO(head), mode="r:") as archive:
            first = archive.next()
    except (tarfile.TarError, EOFError, OSError):
        return False
    return first is not None and first.name.lower().endswith(".ovf")


def _is_tar(head: bytes) -> bool:
    return head[257:262] == b"ustar"


_TEXT_PREFIX = re.compile(rb"^(?:\xef\xbb\xbf)?\s*")


def _text_starts_with(head: bytes, prefix: bytes) -> bool:
    start = _TEXT_PREFIX.match(head)
    body = head[start.end():] if start else head
    return body[:len(prefix)].lower() == prefix.lower()


def _is_vmdk_descriptor(head: bytes) -> bool:
    return _text_starts_with(head, b"# Disk DescriptorFile")


def _is_ovf(head: bytes) -> bool:
    if not (_text_starts_with(head, b"<?xml") or _text_starts_with(head, b"<Envelope")
            or _text_starts_with(head, b"<ovf:Envelope")):
        return False
    text = head[:8192]
    return b"Envelope" in text and b"/ovf/envelope/" in text.lower()


def _iso_at(offset: int) -> Callable[[bytes], bool]:
    return lambda head: head[offset:offset + 5] == b"CD001"


# Archives and compressors: (format, name, offset, magic, listing command) and
# (format, magic, decompression command).
ARCHIVES = (("tar", "tar", 257, b"ustar", "tar -tvf"), ("zip", "zip", 0, b"PK\x03\x04", "unzip -l"),
            ("7z", "7-Zip", 0, b"7z\xbc\xaf\x27\x1c", "7z l"))
COMPRESSORS = (("gzip", b"\x1f\x8b\x08", "gunzip -k"), ("xz", b"\xfd7zXZ\x00", "unxz -k"),
               ("zstd", b"\x28\xb5\x2f\xfd", "unzstd"), ("bzip2", b"BZh", "bunzip2 -k"))


def _qemu(fmt: str) -> str:
    return QEMU_TO_RAW.format(qemu=fmt)


# Order matters only where one magic is a prefix of another's test (OVA before tar).
SIGNATURES: tuple[Signature, ...] = (
    Signature("qcow2", "qcow2", "qcow2 image", 0, b"QFI\xfb", _qemu("qcow2"),
              matches=_is_qcow2),
    Signature("qcow", "qcow", "qcow (version 1) image", 0, b"QFI\xfb", _qemu("qcow"),
              matches=_is_qcow1),
    Signature("qcow-unknown", "qcow", "qcow image of an unknown version", 0, b"QFI\xfb",
              "check the file with `qemu-img info {path}`", matches=_is_unknown_qcow),
    Signature("qed", "QED", "QED image", 0, b"QED\x00", _qemu("qed")),
    Signature("vmdk", "VMDK", "VMDK sparse extent", 0, b"KDMV", _qemu("vmdk")),
    Signature("vmdk", "VMDK", "VMDK descriptor", 0, b"", _qemu("vmdk"),
              matches=_is_vmdk_descriptor, evidence="'# Disk DescriptorFile' at the start"),
    Signature("vmdk-cowd", "VMDK COWD", "VMDK COWD (vmfsSparse) snapshot extent", 0,
              b"COWD",
              "consolidate the VM's snapshots first (vSphere: Snapshots > Consolidate), "
              "then give the base disk's descriptor", why=SNAPSHOT),
    Signature("vmdk-sesparse", "VMDK seSparse", "VMDK seSparse snapshot extent", 0,
              b"\xbe\xba\xfe\xca\x00\x00\x00\x00",
              "consolidate the VM's snapshots first (vSphere: Snapshots > Consolidate), "
              "then give the base disk's descriptor", why=SNAPSHOT),
    Signature("vdi", "VDI", "VirtualBox VDI image", 0x40, b"\x7f\x10\xda\xbe",
              _qemu("vdi")),
    *(Signature("parallels", "Parallels", "Parallels image", 0, magic, _qemu("parallels"))
      for magic in (b"WithoutFreeSpace", b"WithouFreSpacExt")),
    Signature("luks", "LUKS", "LUKS-encrypted image", 0, b"LUKS\xba\xbe",
              "Azure cannot boot a disk encrypted as a whole; decrypt it first "
              "(`qemu-img convert --object secret,... -O raw`), or use Azure Disk Encryption "
              "after the upload", why="azlift does not decrypt images"),
    Signature("ova", "OVA", "OVA (a tar archive with an OVF descriptor)", 257, b"ustar",
              "extract the disk it holds (`tar -xf {path}`) and give azlift that disk",
              matches=_is_ova),
    *(Signature(fmt, name, f"{name} archive", offset, magic,
                f"extract the disk image from it first (`{lister} {{path}}` lists what it "
                f"holds)", why=NOT_A_DISK)
      for fmt, name, offset, magic, lister in ARCHIVES),
    Signature("ovf", "OVF", "OVF descriptor", 0, b"",
              "an OVF only describes a VM: give azlift the disk file its References name, "
              "or the OVA", matches=_is_ovf, why=NOT_A_DISK,
              evidence="an XML OVF Envelope at the start"),
    *(Signature(fmt, fmt, f"{fmt}-compressed file", 0, magic,
                f"decompress it first (`{tool} {{path}}`), then give azlift the disk inside",
                matches=_is_bzip2 if fmt == "bzip2" else None, why=NOT_A_DISK)
      for fmt, magic, tool in COMPRESSORS),
    *(Signature("iso", "ISO 9660",
                "ISO 9660 image (an installation or data medium, not a VM disk)",
                offset, b"CD001",
                "install the OS into a VM from it, then give azlift that VM's disk",
                matches=_iso_at(offset), why=NOT_A_DISK)
      for offset in (0x8001, 0x8801, 0x9001)),
    Signature("dmg", "DMG", "Apple disk image (DMG)", -512, b"koly", _qemu("dmg")),
)

# What a name promises: a file so named is never read as raw unless --format raw says so.
EXTENSION_FORMATS: dict[str, str] = {
    ".vmdk": "vmdk", ".qcow2": "qcow2", ".qcow": "qcow", ".qed": "qed", ".vdi": "vdi",
    ".hdd": "parallels", ".hds": "parallels", ".ova": "ova", ".ovf": "ovf",
    ".vhds": "vhds", ".iso": "iso", ".gz": "gzip", ".tgz": "gzip", ".xz": "xz",
    ".zst": "zstd", ".bz2": "bzip2", ".zip": "zip", ".tar": "tar", ".7z": "7z",
    ".dmg": "dmg",
}

# What to say when a name promises a format whose signature is missing.
EXPECTED_SIGNATURES: dict[str, str] = {
    "vmdk": "a 'KDMV' sparse header or a '# Disk DescriptorFile' text descriptor; a "
            "VMDK's -flat.vmdk data file is raw: give its descriptor, or pass --format raw",
    "qcow2": "'QFI\\xfb' at offset 0", "qcow": "'QFI\\xfb' at offset 0",
    "qed": "'QED\\x00' at offset 0", "vdi": "the VDI signature at offset 0x40",
    "parallels": "'WithoutFreeSpace' at offset 0", "ova": "a tar header at offset 257",
    "ovf": "an XML OVF Envelope", "iso": "'CD001' at offset 0x8001",
    "gzip": "'\\x1f\\x8b' at offset 0", "xz": "'\\xfd7zXZ' at offset 0",
    "zstd": "'\\x28\\xb5\\x2f\\xfd' at offset 0", "bzip2": "'BZh' at offset 0",
    "zip": "'PK\\x03\\x04' at offset 0", "tar": "'ustar' at offset 257",
    "7z": "'7z\\xbc\\xaf' at offset 0", "dmg": "'koly' 512 bytes before the end",
}

# Formats that are never a disk whatever the content says.
VHD_SET = Signature(
    "vhds", "VHD Set", "VHD Set file (.vhds)", 0, b"", why="it is not a disk",
    evidence="named .vhds",
    advice="a VHD Set only points at a shared disk's checkpoints: give azlift the "
           ".vhdx/.avhdx it names (Hyper-V Manager: Inspect Disk), or convert it with "
           "`Convert-VHD` on the Hyper-V host")


def match_head(head: bytes) -> Signature | None:
    """The first signature whose magic (and finer test) matches ``head``, else None."""
    for signature in SIGNATURES:
        if signature.offset < 0:
            continue
        at = signature.offset
        if head[at:at + len(signature.magic)] != signature.magic:
            continue
        if (signature.matches is None and signature.magic) or (
                signature.matches is not None and signature.matches(head)):
            return signature
    return None


def match_tail(tail: bytes) -> Signature | None:
    """A signature that lives at a fixed distance from the end of the file (DMG's koly)."""
    for signature in SIGNATURES:
        if signature.offset >= 0 or len(tail) < -signature.offset:
            continue
        at = len(tail) + signature.offset
        if tail[at:at + len(signature.magic)] == signature.magic:
            return signature
    return None

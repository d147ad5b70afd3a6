"""OVA packages: the disks an OVF lists, read in place inside the tar.

``OvaPackage`` reads the tar's member index, the OVF descriptor and the manifest;
``OvaImage`` is one of its disks as a DiskImage. A disk's member is a ``Window`` over the
OVA (no extraction); a disk the OVF splits into chunk members (``ovf:chunkSize``) is a
``ChunkedWindow`` over all of them; a VMDK descriptor's other extents are looked up
among the members. The OVF's capacity for the disk is checked against the VMDK's size.
Manifest digests of the members a disk uses are checked when the disk is opened, so a
damaged download is refused before a byte is sent. A gzip-compressed member cannot be
read in place (gzip has no random access): it is inflated once into an anonymous
temporary file, which disappears when the image is closed.
"""
from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from typing import Any

from . import guids
from ._ovf_structs import (
    MAX_MANIFEST_BYTES,
    MAX_OVF_BYTES,
    OvfDisk,
    OvfError,
    parse_manifest,
    parse_ovf,
)
from ._vmdk_structs import SPARSE_MAGIC, looks_like_descriptor
from ._vhd_structs import azure_virtual_size
from .errors import (
    CapacityMismatchError,
    ChecksumError,
    DiskSelectionError,
    ImageFormatError,
    ImageIOError,
    TruncatedImageError,
    UnsupportedImageError,
)
from .raw import FileImage, file_length
from .vmdk import VmdkImage, Window
from .vmdk_files import ChunkedWindow

ZIP_MAGIC = b"PK\x03\x04"
HASH_CHUNK = 4 << 20
INFLATE_CHUNK = 1 << 20
OVA_ID_NAMESPACE = guids.parse("0d8f5a4e-3c7b-4f0e-9a61-5b2f3e7c9d14")


def chunk_index(member: str, href: str) -> int | None:
    """The number of ``member`` as a chunk of ``href`` (``href.000000001`` -> 1), else None."""
    stem, _, suffix = member.rpartition(".")
    return int(suffix) if suffix.isascii() and suffix.isdigit() and stem == href else None


class OvaPackage:
    """An OVA's members, OVF disks and manifest; members are windows over the file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.file = FileImage(self.path)
        self._temps: list[FileImage] = []
        try:
            self.members = self._index()
            self.ovf_name = self._ovf_member()
            try:
                self.disks = parse_ovf(self._member_bytes(self.ovf_name, MAX_OVF_BYTES))
                self.manifest = self._manifest()
            except OvfError as error:
                raise ImageFormatError(f"{self.path}: {self.ovf_name}: {error}") from error
            self.verified: dict[str, str] = {}
            self._verify(self.ovf_name)
        except BaseException:
            self.close()
            raise

    # -- the tar ----------------------------------------------------------------------
    def _index(self) -> dict[str, tarfile.TarInfo]:
        if self.file.pread_upto(0, 4) == ZIP_MAGIC:
            raise ImageFormatError(
                f"{self.path}: a zip archive, expected an OVA (a tar archive, as OVF "
                f"packages are); extract it (`unzip {os.path.basename(self.path)}`) and give "
                f"azlift the .ova or .vmdk inside")
        members: dict[str, tarfile.TarInfo] = {}
        handle = os.fdopen(os.dup(self.file.fd), "rb")  # shares the offset: rewind it
        try:
            handle.seek(0)
            with tarfile.open(fileobj=handle, mode="r:") as archive:
                for member in archive:
                    members[os.path.normpath(member.name)] = member
        except (tarfile.TarError, EOFError, ValueError) as error:
            raise ImageFormatError(
                f"{self.path}: expected an OVA (a tar archive), the tar cannot be read "
                f"({error})") from error
        except OSError as error:
            raise ImageIOError(f"cannot read {self.path}: {error.strerror or error}") from error
        finally:
            handle.close()
        if not members:
            raise ImageFormatError(f"{self.path}: expected an OVA (a tar archive with an OVF "
                                   f"descriptor), found no tar members")
        return members

    def _ovf_member(self) -> str:
        names = [name for name in self.members if name.lower().endswith(".ovf")]
        if len(names) != 1:
            found = "none" if not names else ", ".join(names)
            raise ImageFormatError(
                f"{self.path}: expected one .ovf descriptor in the OVA, found {found}")
        return names[0]

    def member(self, name: str) -> tarfile.TarInfo:
        """The tar entry for a file the OVF names (exact, else by its base name)."""
        key = os.path.normpath(name)
        info = self.members.get(key)
        if info is None:
            matches = [m for n, m in self.members.items()
                       if os.path.basename(n) == os.path.basename(key)]
            info = matches[0] if len(matches) == 1 else None
        if info is None:
            raise ImageFormatError(f"{self.path}: the OVF names {name}, which is not in "
                                   f"the OVA")
        if not info.isreg() or info.issparse():
            raise UnsupportedImageError(
                f"{self.path}: member {name} is not a plain file in the tar "
                f"(expected a regular member)")
        end = info.offset_data + info.size
        if end > self.file.file_size:
            raise TruncatedImageError(
                f"{self.path}: member {name} should hold {info.size} bytes up to offset "
                f"{end}, the OVA ends at {self.file.file_size}")
        return info

    def _member_bytes(self, name: str, limit: int) -> bytes:
        info = self.member(name)
        if info.size > limit:
            raise ImageFormatError(f"{self.path}: member {name} is {info.size} bytes, "
                                   f"expected at most {limit}")
        return self.file.pread(info.offset_data, info.size)

    def _manifest(self) -> dict[str, tuple[str, str]]:
        names = [name for name in self.members if name.lower().endswith(".mf")]
        if not names:
            return {}
        return parse_manifest(self._member_bytes(names[0], MAX_MANIFEST_BYTES))

    def _verify(self, name: str) -> None:
        """Check a member against its manifest digest, once (reads the member through)."""
        info = self.member(name)
        entry = self.manifest.get(os.path.basename(info.name)) or self.manifest.get(info.name)
        if entry is None or info.name in self.verified:
            return
        algorithm, expected = entry
        digest = hashlib.new(algorithm)
        position, end = info.offset_data, info.offset_data + info.size
        while position < end:
            chunk = self.file.pread(position, min(HASH_CHUNK, end - position))
            digest.update(chunk)
            position += len(chunk)
        if digest.hexdigest() != expected:
            raise ChecksumError(
                f"{self.path}: member {name} has {algorithm.upper()} {digest.hexdigest()}, "
                f"the manifest says {expected} (the OVA is damaged or was modified)")
        self.verified[info.name] = algorithm

    # -- windows ----------------------------------------------------------------------
    def window(self, name: str, compression: str = "", chunk_size: int | None = None,
               total: int | None = None) -> Window:
        """A file the OVF names as a readable window: one member read in place, or its
        chunk members joined (``chunk_size``); inflated first when gzip-compressed."""
        label = f"{self.path}!{name}"
        if chunk_size:
            source: Window = ChunkedWindow(
                self.file, [(info.offset_data, info.size)
                            for info in self.chunks(name, chunk_size, total)], label)
        else:
            info = self.member(name)
            self._verify(name)
            label = f"{self.path}!{info.name}"
            source = Window(self.file, info.offset_data, info.size, name=label, owner=False)
        if compression == "gzip":
            return Window(self._inflate(source, label), name=label, owner=False)
        if compression:
            raise UnsupportedImageError(
                f"{self.path}: member {name} uses ovf:compression={compression!r} "
                f"(expected none or gzip)")
        return source

    def chunks(self, name: str, chunk_size: int,
               total: int | None = None) -> list[tarfile.TarInfo]:
        """The members ``name.000000000``, ``name.000000001``... of a file the OVF splits
        into chunks: numbered from 0 without a gap, each but the last ``chunk_size``
        bytes, ``total`` (the File's ovf:size) together, each checked against the
        manifest."""
        key = os.path.normpath(name)
        found: dict[int, str] = {}
        for member in self.members:
            index = chunk_index(member, key)
            if index is None:
                index = chunk_index(os.path.basename(member), key)
            if index is not None:
                found[index] = member
        if not found:
            raise ImageFormatError(
                f"{self.path}: the OVF splits {name} into chunks (ovf:chunkSize "
                f"{chunk_size}), expected members {name}.000000000, {name}.000000001...; "
                f"found none")
        missing = sorted(set(range(max(found) + 1)) - set(found))
        if missing:
            raise ImageFormatError(
                f"{self.path}: chunk {missing[0]} of {name} is missing (expected chunks "
                f"0 .. {max(found)} without a gap)")
        infos = [self.member(found[index]) for index in range(len(found))]
        for index, info in enumerate(infos):
            last = index == len(infos) - 1
            if info.size > chunk_size or (not last and info.size != chunk_size):
                raise ImageFormatError(
                    f"{self.path}: chunk member {info.name} holds {info.size} bytes, "
                    f"expected {'at most ' if last else ''}{chunk_size} (ovf:chunkSize)")
            self._verify(info.name)
        held = sum(info.size for info in infos)
        if total is not None and held != total:
            raise ImageFormatError(
                f"{self.path}: the chunks of {name} hold {held} bytes, the OVF says "
                f"{total} (ovf:size); a chunk is missing or cut short")
        return infos

    def _inflate(self, source: Window, label: str) -> FileImage:
        handle = tempfile.TemporaryFile(prefix="azlift-ova-")
        fd = os.dup(handle.fileno())
        handle.close()
        temp = TempFile(fd, f"{label} (inflated)")
        self._temps.append(temp)
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        position, out = 0, 0
        try:
            while position < source.size and not inflater.eof:
                chunk = source.pread(position, min(INFLATE_CHUNK, source.size - position))
                position += len(chunk)
                data = inflater.decompress(chunk)
                os.pwrite(fd, data, out)
                out += len(data)
        except zlib.error as error:
            raise ImageFormatError(f"{label}: the gzip data does not inflate ({error})") \
                from error
        except OSError as error:
            raise ImageIOError(f"cannot inflate {label} into a temporary file: "
                               f"{error.strerror or error}") from error
        if not inflater.eof:
            raise TruncatedImageError(f"{label}: the gzip data ends before its end marker")
        temp.file_size = out
        return temp

    def close(self) -> None:
        for temp in self._temps:
            temp.close()
        self._temps = []
        self.file.close()


class TempFile(FileImage):
    """An already open (anonymous) file read through FileImage's positional reads."""

    def __init__(self, fd: int, name: str) -> None:  # noqa: D107 - no path to open
        self.path = name
        self._fd = fd
        self.file_size = file_length(fd, name)


def check_capacity(path: str, disk: OvfDisk, virtual_size: int) -> str | None:
    """The OVF's capacity for ``disk`` against its VMDK's ``virtual_size``.

    Equal after Azure's rounding to a whole MiB is the same disk. A VMDK larger than the
    OVF says is refused: one of them is wrong and azlift cannot tell which. A VMDK smaller
    than the OVF says is read as it is (all its data is there; an importer would have
    grown the disk): the returned warning says how to get the OVF's size.
    """
    ovf, vmdk = disk.capacity, virtual_size
    if azure_virtual_size(ovf) == azure_virtual_size(vmdk):
        return None
    if vmdk > ovf:
        raise CapacityMismatchError(
            f"{path}: disk {disk.number}: the OVF gives a capacity of {ovf} bytes, its VMDK "
            f"holds {vmdk} bytes (expected the same size; the package is inconsistent: "
            f"extract the VMDK with tar to read it on its own)")
    return (f"disk {disk.number}: the OVF gives a capacity of {ovf} bytes, its VMDK holds "
            f"{vmdk} bytes; Azure gets the VMDK's size (`azlift vhd convert --size {ovf}` "
            f"makes the OVF's, or grow the disk in Azure later)")


def choose_disk(path: str, disks: list[OvfDisk], number: int | None) -> OvfDisk:
    """The disk ``number`` (1-based, OVF order); required when there are several."""
    listing = "; ".join(disk.label() for disk in disks)
    if not disks:
        raise ImageFormatError(f"{path}: the OVF lists no disks")
    if number is None:
        if len(disks) == 1:
            return disks[0]
        raise DiskSelectionError(
            f"{path} holds {len(disks)} disks; pass --disk N to choose one: {listing}",
            [disk.summary() for disk in disks])
    if not 1 <= number <= len(disks):
        raise DiskSelectionError(
            f"{path}: there is no disk {number}; expected --disk 1 .. {len(disks)}: {listing}",
            [disk.summary() for disk in disks])
    return disks[number - 1]


class OvaImage:
    """One disk of an OVA, read in place; ``describe`` also lists the package's disks."""

    format = "ova"
    thread_safe = True  # as its VmdkImage

    def __init__(self, path: str | os.PathLike[str], disk: int | None = None) -> None:
        self.path = os.fspath(path)
        self.package = OvaPackage(self.path)
        try:
            self.disk = choose_disk(self.path, self.package.disks, disk)
            self.inner = self._open_disk(self.disk)
            note = check_capacity(self.path, self.disk, self.inner.virtual_size)
        except BaseException:
            self.package.close()
            raise
        self.unique_id = self.inner.unique_id or self._identity()
        self.source_notes = (("capacity_mismatch", note),) if note else ()

    def _open_disk(self, disk: OvfDisk) -> VmdkImage:
        package = self.package
        if disk.file is None:
            raise UnsupportedImageError(
                f"{self.path}: disk {disk.number} ({disk.disk_id}) has no file (a blank "
                f"disk the OVF creates on import); nothing to read")
        window = package.window(disk.file.href, disk.file.compression, disk.file.chunk_size,
                                disk.file.size)
        head = window.pread_upto(0, 512)
        if head[:4] != SPARSE_MAGIC and not looks_like_descriptor(head):
            raise UnsupportedImageError(
                f"{self.path}: disk {disk.number} ({disk.file.href}) is in format "
                f"{disk.format or 'unknown'}; azlift reads VMDK disks inside an OVA")

        def open_member(name: str) -> Window:
            return package.window(name)
        return VmdkImage(window.path, window=window, opener=open_member)

    def _identity(self) -> bytes:
        stat = os.stat(self.path)
        return guids.name_guid(OVA_ID_NAMESPACE, f"{os.path.realpath(self.path)}:{stat.st_size}:"
                                                 f"{stat.st_mtime_ns}:{self.disk.number}")

    @property
    def virtual_size(self) -> int:
        return self.inner.virtual_size

    def read(self, offset: int, length: int) -> bytes | bytearray:
        return self.inner.read(offset, length)

    def extents(self) -> Iterator[tuple[int, int]]:
        return self.inner.extents()

    def describe(self) -> dict[str, Any]:
        info = self.inner.describe()
        info.update(path=self.path, format=self.format, disk_format=self.inner.format,
                    file_size=self.package.file.file_size, disk=self.disk.number,
                    ovf_capacity=self.disk.capacity,
                    disks=[disk.summary() for disk in self.package.disks],
                    manifest={name: algorithm for name, algorithm
                              in self.package.verified.items()})
        return info

    def close(self) -> None:
        self.inner.close()
        self.package.close()

    def __enter__(self) -> "OvaImage":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def list_disks(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The disks of an OVA in OVF order, without opening any of them."""
    package = OvaPackage(path)
    try:
        return [disk.summary() for disk in package.disks]
    finally:
        package.close()

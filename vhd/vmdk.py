"""VMDK readers: a text descriptor's extents (SPARSE, FLAT, VMFS, ZERO) behind one ``read``.

A VMDK is a descriptor plus extents. ``VmdkImage`` opens either a text descriptor (its
extent files named relative to it) or a single sparse file carrying its descriptor inside
(monolithicSparse, streamOptimized). Each extent maps its part of the guest disk:
``FlatExtent`` straight to a file, ``ZeroExtent`` to zeros, ``SparseExtent``
(vmdk_sparse.py) through the grain directory and tables.

Files are reached through ``Window`` (vmdk_files.py: a byte range of an open file), so
the same code reads an extent that is a member inside an OVA without extracting it. Delta
links, redo logs (COWD, vmfsSparse, seSparse) and device-backed extents are refused:
reading them alone would give a wrong disk.
"""
from __future__ import annotations

import bisect
import os
from collections.abc import Iterator
from typing import Any

from ._vmdk_structs import (
    DESCRIPTOR_SIGNATURE,
    DEVICE_CREATE_TYPES,
    DEVICE_EXTENTS,
    HEADER_SIZE,
    MAX_CAPACITY_SECTORS,
    MAX_DESCRIPTOR_BYTES,
    READABLE_EXTENTS,
    SECTOR,
    SNAPSHOT_CREATE_TYPES,
    SNAPSHOT_EXTENTS,
    SPARSE_MAGIC,
    Descriptor,
    DescriptorError,
    ExtentLine,
    SparseHeader,
    looks_like_descriptor,
    parse_descriptor,
)
from .errors import (
    ImageFormatError,
    ReadRangeError,
    TruncatedImageError,
    UnsupportedImageError,
)
from .raw import FileImage, merge_extents
from .vmdk_files import Opener, Window, file_opener
from .vmdk_sparse import CONSOLIDATE, SparseExtent, read_stream_footer, refuse_redo_log

__all__ = ["CONSOLIDATE", "FlatExtent", "Opener", "SparseExtent", "VmdkImage", "Window",
           "ZeroExtent", "ddb_uuid", "decode_descriptor", "file_opener", "read_stream_footer",
           "refuse_redo_log", "refuse_unreadable"]


# --- extents --------------------------------------------------------------------------
class ZeroExtent:
    """A ZERO extent: sectors that read as zeros and hold no file."""

    kind = "ZERO"

    def __init__(self, sectors: int) -> None:
        self.size = sectors * SECTOR

    def read_into(self, offset: int, buffer: memoryview) -> None:
        pass  # the buffer starts zeroed

    def extents(self) -> Iterator[tuple[int, int]]:
        return iter(())

    def describe(self) -> dict[str, Any]:
        return {"type": self.kind, "size": self.size}

    def close(self) -> None:
        pass


class FlatExtent:
    """A FLAT or VMFS extent: guest bytes are file bytes from ``offset`` sectors on."""

    def __init__(self, kind: str, window: Window, sectors: int, offset_sectors: int) -> None:
        self.kind = kind
        self.window = window
        self.size = sectors * SECTOR
        self.start = offset_sectors * SECTOR
        if self.start + self.size > window.size:
            raise TruncatedImageError(
                f"{window.path}: the descriptor maps {self.size} bytes from offset "
                f"{self.start}, the file holds only {window.size} bytes")

    def read_into(self, offset: int, buffer: memoryview) -> None:
        self.window.pread_into(self.start + offset, buffer)

    def extents(self) -> Iterator[tuple[int, int]]:
        return ((offset - self.start, length) for offset, length in
                self.window.data_extents(self.start, self.start + self.size))

    def describe(self) -> dict[str, Any]:
        return {"type": self.kind, "file": self.window.path, "size": self.size,
                "offset": self.start}

    def close(self) -> None:
        self.window.close()



Extent = ZeroExtent | FlatExtent | SparseExtent


# --- the image ------------------------------------------------------------------------
class VmdkImage:
    """A VMDK: a descriptor and its extents, read as one guest disk.

    ``read`` may be called from several threads at once (positional reads, tables read
    only), which is how compressed grains get inflated in parallel.
    """

    thread_safe = True

    def __init__(self, path: str | os.PathLike[str], *, window: Window | None = None,
                 opener: Opener | None = None) -> None:
        path = os.fspath(path)
        self.path = path
        self.extent_list: list[Extent] = []
        primary = window if window is not None else Window(FileImage(path))
        self._primary: Window | None = primary
        try:
            self.descriptor, self.embedded = self._open(primary, opener or file_opener(path))
        except BaseException:
            self.close()
            raise
        self.starts = []
        position = 0
        for extent in self.extent_list:
            self.starts.append(position)
            position += extent.size
        self._size = position
        if position > MAX_CAPACITY_SECTORS * SECTOR:
            self.close()
            raise ImageFormatError(
                f"{path}: the extents add up to {position} bytes, beyond VMDK's limit "
                f"(expected at most {MAX_CAPACITY_SECTORS * SECTOR}, 64 TiB)")
        create_type = self.descriptor.create_type
        self.format = f"vmdk-{create_type}" if create_type else "vmdk"
        self.unique_id = ddb_uuid(self.descriptor.keys.get("ddb.uuid", ""))

    def _open(self, primary: Window, opener: Opener) -> tuple[Descriptor, bool]:
        head = primary.pread_upto(0, HEADER_SIZE)
        refuse_redo_log(primary.path, head)
        if head[:4] == SPARSE_MAGIC:
            extent = SparseExtent(primary)
            self._primary = None  # the extent owns it now
            self.extent_list.append(extent)
            descriptor = embedded_descriptor(primary, extent.header_at_start)
            if not descriptor.extents:
                raise UnsupportedImageError(
                    f"{primary.path}: a VMDK sparse extent without a descriptor is one piece "
                    f"of a split disk (twoGbMaxExtentSparse); open the descriptor .vmdk that "
                    f"names it instead")
            refuse_unreadable(primary.path, descriptor)
            return descriptor, True
        if not looks_like_descriptor(head):
            raise ImageFormatError(
                f"{primary.path}: expected a VMDK (a 'KDMV' sparse header or a text "
                f"descriptor starting {DESCRIPTOR_SIGNATURE.decode()!r}), found {head[:8]!r}")
        if primary.size > MAX_DESCRIPTOR_BYTES:
            raise ImageFormatError(
                f"{primary.path}: a text descriptor of {primary.size} bytes is too large "
                f"(expected at most {MAX_DESCRIPTOR_BYTES})")
        descriptor = decode_descriptor(primary.path, primary.pread(0, primary.size))
        refuse_unreadable(primary.path, descriptor)
        if not descriptor.extents:
            raise ImageFormatError(f"{primary.path}: the descriptor lists no extents")
        for line in descriptor.extents:
            self.extent_list.append(open_extent(primary.path, line, opener))
        return descriptor, False

    @property
    def virtual_size(self) -> int:
        return self._size

    def check_range(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self._size:
            raise ReadRangeError(
                f"{self.path}: read of {length} bytes at offset {offset} is outside the "
                f"disk (virtual size {self._size})")

    def read(self, offset: int, length: int) -> bytearray:
        """Guest bytes ``[offset, offset + length)`` assembled from the extents."""
        self.check_range(offset, length)
        out = bytearray(length)
        view = memoryview(out)
        index = max(bisect.bisect_right(self.starts, offset) - 1, 0)
        position, end = offset, offset + length
        while position < end and index < len(self.extent_list):
            extent, start = self.extent_list[index], self.starts[index]
            stop = min(end, start + extent.size)
            if stop > position:
                extent.read_into(position - start, view[position - offset:stop - offset])
                position = stop
            index += 1
        return out

    def extents(self) -> Iterator[tuple[int, int]]:
        def shifted() -> Iterator[tuple[int, int]]:
            for extent, start in zip(self.extent_list, self.starts):
                for offset, length in extent.extents():
                    yield start + offset, min(length, extent.size - offset)
        return merge_extents(shifted())

    def allocated_bytes(self) -> int:
        return sum(length for _, length in self.extents())

    def source_files(self) -> tuple[str, ...]:
        """Every file the extents are read from (extent files, or the OVA holding them):
        what a conversion must not write over."""
        return tuple(dict.fromkeys(extent.window.file.path for extent in self.extent_list
                                   if hasattr(extent, "window")))

    def describe(self) -> dict[str, Any]:
        keys = self.descriptor.keys
        files = {getattr(e, "window").path for e in self.extent_list if hasattr(e, "window")}
        return {
            "path": self.path,
            "format": self.format,
            "virtual_size": self.virtual_size,
            "file_size": sum(os.path.getsize(f) for f in files if os.path.isfile(f)),
            "allocated_bytes": self.allocated_bytes(),
            "descriptor": {"create_type": self.descriptor.create_type,
                           "embedded": self.embedded,
                           "cid": keys.get("CID", ""), "parent_cid": keys.get("parentCID", ""),
                           "adapter_type": keys.get("ddb.adapterType", ""),
                           "uuid": keys.get("ddb.uuid", "")},
            "extents": [extent.describe() for extent in self.extent_list],
            "parents": [],
        }

    def close(self) -> None:
        for extent in self.extent_list:
            extent.close()
        self.extent_list = []
        if self._primary is not None:
            self._primary.close()
            self._primary = None

    def __enter__(self) -> "VmdkImage":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_extent(descriptor_path: str, line: ExtentLine, opener: Opener) -> Extent:
    """The extent object for one descriptor line (its file opened through ``opener``)."""
    if line.type == "ZERO":
        return ZeroExtent(line.sectors)
    if line.type not in READABLE_EXTENTS:
        raise refusal(descriptor_path, line.type)
    if line.access == "NOACCESS":
        raise UnsupportedImageError(
            f"{descriptor_path}: extent {line.file} is marked NOACCESS; its data is not "
            f"readable")
    if not line.file:
        raise ImageFormatError(
            f"{descriptor_path}: the {line.type} extent line names no file")
    window = opener(line.file)
    try:
        if line.type == "SPARSE":
            return SparseExtent(window, line.sectors)
        return FlatExtent(line.type, window, line.sectors, line.offset)
    except BaseException:
        window.close()
        raise


def refusal(path: str, kind: str) -> UnsupportedImageError:
    """The one-line refusal for an extent type azlift does not read."""
    if kind in SNAPSHOT_EXTENTS:
        return UnsupportedImageError(
            f"{path}: a {kind} extent is a snapshot's redo log; {CONSOLIDATE}")
    if kind in DEVICE_EXTENTS:
        return UnsupportedImageError(
            f"{path}: a {kind} extent is backed by a device (raw device mapping); "
            f"clone the disk to a file first")
    return UnsupportedImageError(
        f"{path}: extent type {kind} is not one azlift reads "
        f"(expected {', '.join(READABLE_EXTENTS)})")


def refuse_unreadable(path: str, descriptor: Descriptor) -> None:
    """Delta links and device-backed create types would read as a wrong disk: refuse."""
    if descriptor.has_parent:
        hint = descriptor.keys.get("parentFileNameHint", "")
        parent = f" on {hint}" if hint else ""
        raise UnsupportedImageError(
            f"{path}: a delta link (parentCID {descriptor.parent_cid}{parent}) holds only a "
            f"snapshot's changes; {CONSOLIDATE}")
    create_type = descriptor.create_type.lower()
    if create_type in SNAPSHOT_CREATE_TYPES:
        raise refusal(path, create_type.upper())
    if create_type in DEVICE_CREATE_TYPES:
        raise UnsupportedImageError(
            f"{path}: createType {descriptor.create_type} is backed by a device; clone the "
            f"disk to a file first")


def decode_descriptor(path: str, raw: bytes) -> Descriptor:
    text = raw.split(b"\x00", 1)[0].decode("utf-8", errors="replace")
    try:
        return parse_descriptor(text)
    except DescriptorError as error:
        raise ImageFormatError(f"{path}: {error}") from error


def embedded_descriptor(window: Window, header: SparseHeader) -> Descriptor:
    """The descriptor inside a sparse file (an empty one when the file has none)."""
    if not header.descriptor_offset or not header.descriptor_size:
        return Descriptor()
    start, size = header.descriptor_offset * SECTOR, header.descriptor_size * SECTOR
    if size > MAX_DESCRIPTOR_BYTES or start + size > window.size:
        raise TruncatedImageError(
            f"{window.path}: the embedded descriptor ({size} bytes at offset {start}) lies "
            f"outside the file (file size {window.size})")
    return decode_descriptor(window.path, window.pread(start, size))


def ddb_uuid(value: str) -> bytes | None:
    """``ddb.uuid`` ("60 00 C2 9a ...", 16 hex bytes) as 16 bytes, or None."""
    try:
        raw = bytes.fromhex(value.replace("-", " "))
    except ValueError:
        return None
    if len(raw) != 16 or not any(raw):
        return None
    return raw

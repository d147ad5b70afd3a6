"""VMDK readers: a text descriptor's extents (SPARSE, FLAT, VMFS, ZERO) behind one ``read``.

A VMDK is a descriptor plus extents. ``VmdkImage`` opens either a text descriptor (its
extent files named relative to it) or a single sparse file carrying its descriptor inside
(monolithicSparse, streamOptimized). Each extent maps its part of the guest disk:
``FlatExtent`` straight to a file, ``ZeroExtent`` to zeros, ``SparseExtent`` through the
grain directory and tables (hosted sparse, versions 1-3, stream-optimized in qemu's layout
and in VMware's with the directory at the end). Compressed grains are inflated inside
``read``: zlib drops the GIL, so callers' worker threads inflate in parallel.

Files are reached through ``Window`` (a byte range of an open file), so the same code reads
an extent that is a member inside an OVA without extracting it. Delta links, redo logs
(COWD, vmfsSparse, seSparse) and device-backed extents are refused: reading them alone
would give a wrong disk.
"""
from __future__ import annotations

import bisect
import os
import stat
import uuid
import zlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ._vmdk_structs import (
    COWD_MAGIC,
    DESCRIPTOR_SIGNATURE,
    DEVICE_CREATE_TYPES,
    DEVICE_EXTENTS,
    FLAG_REDUNDANT_GD,
    GD_AT_END,
    GRAIN_MARKER_SIZE,
    GTE_ZEROED,
    HEADER_SIZE,
    MARKER_EOS,
    MARKER_FOOTER,
    MARKER_NAMES,
    MARKER_STRUCT,
    MAX_CAPACITY_SECTORS,
    MAX_DESCRIPTOR_BYTES,
    READABLE_EXTENTS,
    SECTOR,
    SESPARSE_MAGIC,
    SNAPSHOT_CREATE_TYPES,
    SNAPSHOT_EXTENTS,
    SPARSE_MAGIC,
    Descriptor,
    DescriptorError,
    ExtentLine,
    SparseHeader,
    header_problem,
    looks_like_descriptor,
    parse_descriptor,
)
from .errors import (
    ImageFormatError,
    ImageIOError,
    ReadRangeError,
    TruncatedImageError,
    UnsupportedImageError,
)
from .raw import FileImage, block_extents, file_data_extents, merge_extents, stored_block_extents

if TYPE_CHECKING:
    import numpy as np

CONSOLIDATE = "consolidate the snapshots first (or clone the VM to a single disk)"


class Window:
    """Bytes ``[base, base + size)`` of an open file, read by position (thread-safe)."""

    def __init__(self, file: FileImage, base: int = 0, size: int | None = None,
                 name: str | None = None, owner: bool = True) -> None:
        self.file = file
        self.base = base
        self.size = file.file_size - base if size is None else size
        self.path = name or file.path
        self.owner = owner

    def pread_upto(self, offset: int, length: int) -> bytes:
        length = min(length, self.size - offset)
        return self.file.pread_upto(self.base + offset, length) if length > 0 else b""

    def pread(self, offset: int, length: int) -> bytes:
        data = self.pread_upto(offset, length)
        if len(data) != length:
            raise TruncatedImageError(
                f"{self.path}: expected {length} bytes at offset {offset}, the file ends "
                f"after {len(data)} of them (file size {self.size})")
        return data

    def pread_into(self, offset: int, buffer: memoryview) -> None:
        if offset + len(buffer) > self.size:
            raise TruncatedImageError(
                f"{self.path}: expected {len(buffer)} bytes at offset {offset}, past the end "
                f"of the file (file size {self.size})")
        self.file.pread_into(self.base + offset, buffer)

    def data_extents(self, start: int, end: int) -> Iterator[tuple[int, int]]:
        """Ranges of ``[start, end)`` that hold data (the file's holes left out)."""
        end = min(end, self.size)
        return ((offset - self.base, length) for offset, length in
                file_data_extents(self.file.fd, self.base + start, self.base + end))

    def close(self) -> None:
        if self.owner:
            self.file.close()


Opener = Callable[[str], Window]


def file_opener(descriptor_path: str) -> Opener:
    """Open extent files named relative to the descriptor's folder; refuse devices."""
    folder = os.path.dirname(os.path.abspath(descriptor_path))

    def open_extent(name: str) -> Window:
        path = os.path.join(folder, name)
        try:
            mode = os.stat(path).st_mode
        except OSError:
            mode = 0
        if stat.S_ISBLK(mode) or stat.S_ISCHR(mode):
            raise UnsupportedImageError(
                f"{descriptor_path}: extent {name} is a device (raw device mapping); azlift "
                f"reads file-backed disks only: clone the disk to a file first")
        if not mode:
            raise ImageIOError(f"{descriptor_path}: extent file {name} not found "
                               f"(looked for {path})")
        return Window(FileImage(path))
    return open_extent


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


class SparseExtent:
    """A hosted sparse extent (KDMV): grain directory -> grain tables -> grains.

    The tables are read once at open, bounded by the file size; only the tables that
    exist are kept (4 bytes per grain they map), so memory follows the allocated data.
    """

    kind = "SPARSE"

    def __init__(self, window: Window, sectors: int | None = None) -> None:
        self.window = window
        path = window.path
        head = window.pread_upto(0, HEADER_SIZE)
        if len(head) < HEADER_SIZE:
            raise TruncatedImageError(
                f"{path}: {len(head)} bytes is too small for a VMDK sparse extent "
                f"(its header alone is {HEADER_SIZE})")
        refuse_redo_log(path, head)
        header = SparseHeader.unpack(head)
        problem = header_problem(header)
        if problem is not None:
            raise ImageFormatError(f"{path}: {problem}")
        self.header_at_start = header
        self.footer_used = header.gd_offset == GD_AT_END
        if self.footer_used:
            header = read_stream_footer(window)
        self.header = header
        self.size = (header.capacity if sectors is None else sectors) * SECTOR
        self.grain = header.grain_bytes
        self.per_table = header.gtes_per_gt
        self.directory_used = "footer" if self.footer_used else "header"
        try:
            self.tables = self._read_tables(header.gd_offset)
        except TruncatedImageError:
            if not (header.flags & FLAG_REDUNDANT_GD and header.rgd_offset):
                raise
            self.tables = self._read_tables(header.rgd_offset)  # the copy kept for this
            self.directory_used = "redundant"

    # -- the map ------------------------------------------------------------------------
    def _read_tables(self, gd_sector: int) -> dict[int, np.ndarray]:
        import numpy as np
        header, window, path = self.header, self.window, self.window.path
        count = header.gd_entries
        gd_offset = gd_sector * SECTOR
        if gd_offset + 4 * count > window.size or gd_sector == 0:
            raise TruncatedImageError(
                f"{path}: the grain directory ({count} entries at offset {gd_offset}) lies "
                f"outside the file (file size {window.size})")
        directory = np.frombuffer(window.pread(gd_offset, 4 * count), dtype="<u4")
        table_bytes = 4 * self.per_table
        tables: dict[int, np.ndarray] = {}
        used = np.flatnonzero(directory)
        if used.size:
            ends = directory[used].astype(np.int64) * SECTOR + table_bytes
            worst = int(np.argmax(ends))
            if int(ends[worst]) > window.size:
                raise TruncatedImageError(
                    f"{path}: grain directory entry {int(used[worst])} points to a grain "
                    f"table ending at offset {int(ends[worst])}, past the end of the file "
                    f"(file size {window.size})")
        for index in used.tolist():
            tables[index] = np.frombuffer(
                window.pread(int(directory[index]) * SECTOR, table_bytes), dtype="<u4")
        self._check_grains(tables)
        return tables

    def _check_grains(self, tables: dict[int, np.ndarray]) -> None:
        """Refuse a grain table entry pointing past the end of the file."""
        import numpy as np
        window, header = self.window, self.header
        least = GRAIN_MARKER_SIZE if header.compressed else self.grain
        limit = window.size
        for index, table in tables.items():
            stored = table[table > self._zero_marker()]
            if not stored.size:
                continue
            last = int(stored.max()) * SECTOR
            if last + least > limit:
                # the disk's last grain may be cut at the capacity
                grain = index * self.per_table + int(np.flatnonzero(table == stored.max())[0])
                needed = min(least, max(self.size - grain * self.grain, 0)) or least
                if last + needed > limit:
                    raise TruncatedImageError(
                        f"{window.path}: grain {grain} is stored at offset {last}, past the "
                        f"end of the file (file size {limit})")

    def _zero_marker(self) -> int:
        """GTE values at or below which a grain holds no data (0, and 1 when zeroed)."""
        return GTE_ZEROED if self.header.zeroed_gte else 0

    def _entry(self, grain: int) -> int:
        table = self.tables.get(grain // self.per_table)
        return 0 if table is None else int(table[grain % self.per_table])

    def read_into(self, offset: int, buffer: memoryview) -> None:
        grain_size, done, length = self.grain, 0, len(buffer)
        pending: tuple[int, int, int] | None = None  # (buffer start, file offset, length)
        compressed: list[tuple[int, int, int, int, int]] = []
        while done < length:
            position = offset + done
            grain, within = divmod(position, grain_size)
            count = min(grain_size - within, length - done)
            entry = self._entry(grain)
            if entry > self._zero_marker():
                if self.header.compressed:
                    compressed.append((done, grain, entry, within, count))
                else:
                    source = entry * SECTOR + within
                    if pending and pending[1] + pending[2] == source and pending[0] + pending[2] == done:
                        pending = (pending[0], pending[1], pending[2] + count)
                    else:
                        if pending:
                            self._flush(buffer, pending)
                        pending = (done, source, count)
            done += count
        if pending:
            self._flush(buffer, pending)
        if compressed:
            self._inflate_into(buffer, compressed)

    def _inflate_into(self, buffer: memoryview,
                      grains: list[tuple[int, int, int, int, int]]) -> None:
        """Inflate ``(buffer start, grain, entry, within, count)`` grains into ``buffer``;
        grains stored close together (a stream file's usual case) come in one read."""
        entries = [entry for _, _, entry, _, _ in grains]
        low = min(entries) * SECTOR
        high = max(entries) * SECTOR + GRAIN_MARKER_SIZE + self.grain + SECTOR
        span = None
        if len(grains) > 1 and high - low <= 2 * len(grains) * (self.grain + SECTOR):
            span = (low, memoryview(self.window.pread_upto(low, high - low)))
        for done, grain, entry, within, count in grains:
            out = memoryview(self._inflate(grain, entry, span))
            buffer[done:done + count] = out[within:within + count]

    def _flush(self, buffer: memoryview, run: tuple[int, int, int]) -> None:
        start, source, count = run
        self.window.pread_into(source, buffer[start:start + count])

    def _inflate(self, grain: int, entry: int,
                 span: tuple[int, memoryview] | None = None) -> bytes:
        """The guest bytes of compressed ``grain`` stored at sector ``entry`` (from
        ``span``, file bytes already read from its offset on, when it holds them)."""
        window, path = self.window, self.window.path
        where = entry * SECTOR
        expected = min(self.grain, self.size - grain * self.grain)
        reach = GRAIN_MARKER_SIZE + self.grain + SECTOR
        if span is not None and span[0] <= where:
            head: bytes | memoryview = span[1][where - span[0]:where - span[0] + reach]
        else:
            head = window.pread_upto(where, reach)
        if self.header.markers:
            if len(head) < GRAIN_MARKER_SIZE:
                raise TruncatedImageError(
                    f"{path}: grain {grain} at offset {where} is cut off by the end of the file")
            lba, size, _ = MARKER_STRUCT.unpack(bytes(head[:GRAIN_MARKER_SIZE]) + bytes(4))
            sector = grain * self.header.grain_size
            if lba != sector:
                raise ImageFormatError(
                    f"{path}: the grain marker at offset {where} says guest sector {lba}, "
                    f"the grain table says {sector}")
            if size == 0 or size > 2 * self.grain + 4096:
                raise ImageFormatError(
                    f"{path}: the grain marker at offset {where} gives a compressed size of "
                    f"{size} bytes (expected 1 .. {2 * self.grain + 4096})")
            data = head[GRAIN_MARKER_SIZE:GRAIN_MARKER_SIZE + size]
            if len(data) < size:
                data = window.pread(where + GRAIN_MARKER_SIZE, size)
        else:
            data = head
        try:
            out = zlib.decompress(data, bufsize=self.grain) if self.header.markers else \
                zlib.decompressobj().decompress(data, self.grain)
        except zlib.error as error:
            raise ImageFormatError(
                f"{path}: grain {grain} at offset {where} does not inflate ({error})") from error
        if len(out) < expected:
            raise ImageFormatError(
                f"{path}: grain {grain} at offset {where} inflates to {len(out)} bytes, "
                f"expected {expected}")
        return out

    def extents(self) -> Iterator[tuple[int, int]]:
        import numpy as np
        grains: list[np.ndarray] = []
        offsets: list[np.ndarray] = []
        floor = self._zero_marker()
        for index in sorted(self.tables):
            table = self.tables[index]
            hit = np.flatnonzero(table > floor)
            grains.append(hit.astype(np.int64) + index * self.per_table)
            offsets.append(table[hit].astype(np.int64) * SECTOR)
        if not grains:
            return iter(())
        blocks = np.concatenate(grains)
        blocks = blocks[blocks * self.grain < self.size]
        if not blocks.size:
            return iter(())
        if self.header.compressed:
            allocated = np.zeros(int(blocks[-1]) + 1, dtype=bool)
            allocated[blocks] = True
            return block_extents(allocated, self.grain, self.size)
        window = self.window
        starts = np.concatenate(offsets)[:blocks.size] + window.base
        return stored_block_extents(window.file.fd, window.file.file_size, blocks, starts,
                                    self.grain, self.size)

    def allocated_grains(self) -> int:
        import numpy as np
        floor = self._zero_marker()
        return sum(int(np.count_nonzero(t > floor)) for t in self.tables.values())

    def describe(self) -> dict[str, Any]:
        header = self.header
        return {
            "type": self.kind, "file": self.window.path, "size": self.size,
            "version": header.version, "flags": f"0x{header.flags:x}",
            "grain_size": self.grain, "compressed": header.compressed,
            "markers": header.markers, "zeroed_grains": header.zeroed_gte,
            "grain_directory": self.directory_used,
            "allocated_grains": self.allocated_grains(),
        }

    def close(self) -> None:
        self.window.close()


Extent = ZeroExtent | FlatExtent | SparseExtent


def refuse_redo_log(path: str, head: bytes) -> None:
    """COWD and seSparse files are snapshot redo logs: never a whole disk on their own."""
    if head[:4] == COWD_MAGIC:
        raise UnsupportedImageError(
            f"{path}: a COWD (vmfsSparse) redo log holds only a snapshot's changes; "
            f"{CONSOLIDATE}")
    if head[:8] == SESPARSE_MAGIC:
        raise UnsupportedImageError(
            f"{path}: a seSparse redo log holds only a snapshot's changes; {CONSOLIDATE}")


def read_stream_footer(window: Window) -> SparseHeader:
    """The footer of a stream-optimized file whose header defers the GD to it.

    The file ends with a footer marker, the footer (a header copy with the real GD offset)
    and an end-of-stream marker, 512 bytes each.
    """
    path = window.path
    if window.size < 3 * SECTOR + HEADER_SIZE:
        raise TruncatedImageError(
            f"{path}: the header puts the grain directory in a footer, but the file "
            f"({window.size} bytes) is too short to hold one")
    tail = window.pread(window.size - 3 * SECTOR, 3 * SECTOR)
    marker_value, marker_size, marker_type = MARKER_STRUCT.unpack(tail[:MARKER_STRUCT.size])
    if marker_size != 0 or marker_type != MARKER_FOOTER:
        found = MARKER_NAMES.get(marker_type, f"type {marker_type}") if not marker_size \
            else "a grain"
        raise ImageFormatError(
            f"{path}: expected a footer marker 1536 bytes before the end of the file, "
            f"found {found}")
    _, eos_size, eos_type = MARKER_STRUCT.unpack(tail[2 * SECTOR:2 * SECTOR + MARKER_STRUCT.size])
    if eos_size != 0 or eos_type != MARKER_EOS:
        raise ImageFormatError(
            f"{path}: expected an end-of-stream marker in the last 512 bytes, found "
            f"{MARKER_NAMES.get(eos_type, f'type {eos_type}') if not eos_size else 'a grain'}")
    footer = SparseHeader.unpack(tail[SECTOR:2 * SECTOR])
    problem = header_problem(footer)
    if problem is not None:
        raise ImageFormatError(f"{path}: footer: {problem}")
    if footer.gd_offset == GD_AT_END:
        raise ImageFormatError(
            f"{path}: the footer, too, defers the grain directory to a footer")
    return footer


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
    return uuid.UUID(bytes=raw).bytes

"""The hosted sparse VMDK extent (KDMV): grain directory, grain tables and grains.

Versions 1-3, zeroed-grain entries, the redundant directory as a fallback, and
stream-optimized files in qemu's layout and in VMware's (directory in a footer at the
end). Compressed grains are inflated inside ``read_into``; the inflater drops the GIL, so
callers' worker threads inflate in parallel.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ._inflate import InflateError, inflate_zlib, inflate_zlib_prefix
from ._vmdk_structs import (
    COWD_MAGIC,
    FLAG_REDUNDANT_GD,
    GD_AT_END,
    GRAIN_MARKER_SIZE,
    GTE_ZEROED,
    HEADER_SIZE,
    MARKER_EOS,
    MARKER_FOOTER,
    MARKER_NAMES,
    MARKER_STRUCT,
    SECTOR,
    SESPARSE_MAGIC,
    SparseHeader,
    header_problem,
)
from .errors import ImageFormatError, TruncatedImageError, UnsupportedImageError
from .raw import block_extents, stored_block_extents
from .vmdk_files import Window

if TYPE_CHECKING:
    import numpy as np

CONSOLIDATE = "consolidate the snapshots first (or clone the VM to a single disk)"


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
        # Each table is its own: entries sharing one, or more tables than the file holds,
        # would make a few KiB stand for GiBs of tables (none of the writers does either).
        if np.unique(directory[used]).size != used.size:
            raise ImageFormatError(
                f"{path}: grain directory entries point to the same grain table (expected "
                f"a table of its own for each)")
        if used.size * table_bytes > window.size:
            raise ImageFormatError(
                f"{path}: the grain directory uses {used.size} tables of {table_bytes} bytes, "
                f"more than the file's {window.size} bytes hold")
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
            out = inflate_zlib(data, self.grain) if self.header.markers else \
                inflate_zlib_prefix(data, self.grain)
        except InflateError as error:
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
        if self.header.compressed or not self.window.contiguous:
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


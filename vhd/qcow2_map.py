"""The qcow2 guest-to-host map: L2 tables (read once each, checked, cached), the run of
each guest range (stored, zero, backing file, compressed), and ``extents()`` over the
whole backing chain (the ``Qcow2Image`` half that answers where data lives)."""
from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from ._qcow2_structs import (
    OFFSET_MASK,
    OFLAG_COMPRESSED,
    OFLAG_COPIED,
    OFLAG_ZERO,
    SUBCLUSTER_ALLOC_MASK,
    SUBCLUSTERS,
)
from ._vhd_structs import SECTOR
from .errors import ImageFormatError, TruncatedImageError
from .raw import (
    FROM_PARENT,
    FROM_ZERO,
    Run,
    align_extents,
    block_extents,
    coalesce_runs,
    file_data_extents,
    has_holes,
    merge_extents,
)

if TYPE_CHECKING:
    import numpy as np

COMPRESSED = -3  # Run.source of compressed clusters: inflated on read


class Qcow2Map:
    """Where each guest byte of a qcow2 lives (mixed into Qcow2Image, which sets the
    attributes used here when it opens the file)."""

    @property
    def virtual_size(self) -> int:
        return self._virtual_size

    @property
    def _unallocated(self) -> int:
        return FROM_PARENT if self.parent is not None else FROM_ZERO

    def _host(self, entry: int) -> int | None:
        """Where a standard (uncompressed) L2 entry's cluster lies, None if unallocated."""
        host = entry & OFFSET_MASK
        if host or (self.data_file is not None and entry & OFLAG_COPIED):
            return host
        return None

    def _l2_table(self, l1_index: int) -> tuple[np.ndarray, np.ndarray | None] | None:
        """(entries, subcluster bitmaps or None) of one L2 table; None when unallocated."""
        import numpy as np
        cached = self._l2_cache.get(l1_index)
        if cached is not None:
            return cached
        offset = int(self.l1[l1_index])
        if offset == 0:
            return None
        table = np.frombuffer(self.pread(offset, self.cluster_size), dtype=">u8")
        if self.extended:
            entries, bitmaps = table[0::2], table[1::2]
        else:
            entries, bitmaps = table, None
        self._check_l2(l1_index, entries, bitmaps)
        if len(self._l2_cache) >= self._l2_cache_limit:
            self._l2_cache.clear()
        self._l2_cache[l1_index] = (entries, bitmaps)
        return entries, bitmaps

    def _check_l2(self, l1_index: int, entries: np.ndarray, bitmaps: np.ndarray | None) -> None:
        """Refuse an L2 table whose entries point outside the file or contradict themselves."""
        import numpy as np
        first = l1_index * self.l2_span
        count = min(len(entries), -(-(self._virtual_size - first) // self.cluster_size))
        entries = entries[:count]
        guest = first + np.arange(count, dtype=np.int64) * self.cluster_size

        def where(index: int) -> str:
            return f"the L2 entry for guest offset {int(guest[index])}"

        compressed = (entries & np.uint64(OFLAG_COMPRESSED)) != 0
        host = (entries & np.uint64(OFFSET_MASK)).astype(np.int64)
        host[compressed] = 0
        bad = np.flatnonzero(host % self.cluster_size)
        if bad.size:
            raise self._fail(ImageFormatError, f"{where(int(bad[0]))} points to offset "
                             f"{int(host[bad[0]])}, not aligned to the cluster size "
                             f"{self.cluster_size}")
        zero = np.zeros(count, dtype=bool) if self.extended else (
            (entries & np.uint64(OFLAG_ZERO)) != 0)
        needed = np.minimum(self.cluster_size, self._virtual_size - guest)
        if bitmaps is not None:  # only the allocated subclusters need to be in the file
            flags = subcluster_flags(bitmaps[:count] & np.uint64(SUBCLUSTER_ALLOC_MASK))
            highest = np.where(flags.any(axis=1),
                               SUBCLUSTERS - np.argmax(flags[:, ::-1], axis=1), 0)
            needed = np.minimum(needed, highest * self.subcluster_size)
        store = self.store
        past = np.flatnonzero((host != 0) & ~zero & (needed > 0)
                              & (host + needed > store.file_size))
        if past.size:
            raise self._fail(TruncatedImageError, f"{where(int(past[0]))} points to a "
                             f"cluster at offset {int(host[past[0]])}, past the end of "
                             f"{store.path} ({store.file_size} bytes)")
        if compressed.any():
            if self.data_file is not None:
                raise self._fail(ImageFormatError, "the image has compressed clusters, "
                                 "which an image with an external data file cannot have")
            shift = 62 - (self.cluster_bits - 8)
            starts = (entries & np.uint64((1 << shift) - 1)).astype(np.int64)
            # the data ends inside the descriptor's last sector: that sector must begin
            # inside the file (checked here, before anything is sent, not when inflated)
            sectors = ((entries >> np.uint64(shift))
                       & np.uint64((1 << (self.cluster_bits - 8)) - 1)).astype(np.int64) + 1
            last_sector = starts // SECTOR * SECTOR + (sectors - 1) * SECTOR
            past = np.flatnonzero(compressed & ((starts >= self.file_size)
                                                | (last_sector >= self.file_size)))
            if past.size:
                index = int(past[0])
                raise self._fail(TruncatedImageError, f"{where(index)} points to a "
                                 f"compressed cluster at offset {int(starts[index])} "
                                 f"({int(sectors[index])} sectors), past the end of the "
                                 f"file ({self.file_size} bytes)")
        if bitmaps is not None:
            bitmaps = bitmaps[:count]
            alloc = bitmaps & np.uint64(SUBCLUSTER_ALLOC_MASK)
            both = ~compressed & ((alloc & (bitmaps >> np.uint64(32))) != 0)
            stray = ~compressed & (host == 0) & (alloc != 0) & ~self._copied(entries)
            bad = np.flatnonzero(both | stray)
            if bad.size:
                raise self._fail(ImageFormatError, f"{where(int(bad[0]))} has an invalid "
                                 f"subcluster bitmap {int(bitmaps[bad[0]]):#018x} (a "
                                 f"subcluster both allocated and zero, or allocated in an "
                                 f"unallocated cluster)")

    def _copied(self, entries: np.ndarray) -> np.ndarray:
        """Entries whose offset 0 means "allocated at 0" (only with an external data file)."""
        import numpy as np
        if self.data_file is None:
            return np.zeros(len(entries), dtype=bool)
        return (entries & np.uint64(OFLAG_COPIED)) != 0

    def runs(self, offset: int, length: int) -> Iterator[Run]:
        """Where each part of a guest range lives: the data store, zeros, the backing
        file or a compressed cluster; merged when contiguous."""
        return coalesce_runs(self._cluster_runs(offset, offset + length))

    def _cluster_runs(self, offset: int, end: int) -> Iterator[Run]:
        unallocated = self._unallocated
        bits = self.cluster_bits
        pos = offset
        while pos < end:
            l1_index = pos // self.l2_span
            table = self._l2_table(l1_index)
            if table is None:
                stop = min(end, (l1_index + 1) * self.l2_span)
                yield Run(pos, stop - pos, unallocated)
                pos = stop
                continue
            entries, bitmaps = table
            cluster_start = pos >> bits << bits
            stop = min(end, cluster_start + self.cluster_size)
            entry = int(entries[(pos >> bits) - l1_index * self.l2_entries])
            if entry & OFLAG_COMPRESSED:
                yield Run(pos, stop - pos, COMPRESSED)
            elif bitmaps is not None:
                bitmap = int(bitmaps[(pos >> bits) - l1_index * self.l2_entries])
                yield from self._subcluster_runs(entry, bitmap, cluster_start, pos, stop)
            elif entry & OFLAG_ZERO:
                yield Run(pos, stop - pos, FROM_ZERO)
            else:
                host = self._host(entry)
                yield Run(pos, stop - pos,
                          unallocated if host is None else host + pos - cluster_start)
            pos = stop

    def _subcluster_runs(self, entry: int, bitmap: int, cluster_start: int, pos: int,
                         stop: int) -> Iterator[Run]:
        host = self._host(entry)
        size = self.subcluster_size
        for index in range((pos - cluster_start) // size, (stop - 1 - cluster_start) // size + 1):
            start = max(pos, cluster_start + index * size)
            end = min(stop, cluster_start + (index + 1) * size)
            if bitmap >> (32 + index) & 1:
                source = FROM_ZERO
            elif bitmap >> index & 1 and host is not None:
                source = host + start - cluster_start
            else:
                source = self._unallocated
            yield Run(start, end - start, source)

    # -- extents ------------------------------------------------------------------------
    def extents(self) -> Iterator[tuple[int, int]]:
        """Data this image or its backing chain holds: allocated (sub)clusters that do not
        read as zero, less the host file's holes, plus the backing file's extents where
        this image leaves the range unallocated (a zero cluster hides them)."""
        return merge_extents(self._extent_parts())

    def _extent_parts(self) -> Iterator[tuple[int, int]]:
        import numpy as np
        backing = RangeCursor(self.parent.extents()) if self.parent is not None else None
        done = 0  # guest bytes before this point are mapped
        for l1_index in np.flatnonzero(self.l1).tolist():  # L2 tables, skipping empty L1
            start = l1_index * self.l2_span
            stop = min(self._virtual_size, start + self.l2_span)
            if backing is not None:
                yield from backing.take(done, start)
            done = stop
            table = self._l2_table(l1_index)
            assert table is not None  # its L1 entry is non-zero
            own, unallocated = self._table_map(table, start, stop)
            inherited = [] if backing is None else [
                part for low, count in unallocated for part in backing.take(low, low + count)]
            yield from heapq.merge(own, inherited)
        if backing is not None:
            yield from backing.take(done, self._virtual_size)

    def _table_map(self, table: tuple[np.ndarray, np.ndarray | None], start: int,
                   stop: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """(data ranges, unallocated ranges) of the guest range ``[start, stop)`` one L2
        table maps, both ascending."""
        import numpy as np
        count = -(-(stop - start) // self.cluster_size)
        entries = table[0][:count]
        compressed = (entries & np.uint64(OFLAG_COMPRESSED)) != 0
        host = (entries & np.uint64(OFFSET_MASK)).astype(np.int64)
        allocated = ~compressed & ((host != 0) | self._copied(entries))
        if table[1] is None:
            zero = ~compressed & ((entries & np.uint64(OFLAG_ZERO)) != 0)
            normal = allocated & ~zero
            unallocated = ~compressed & ~zero & ~allocated
            units = np.flatnonzero(normal)
            hosts = host[units]
        else:
            bitmaps = table[1][:count]
            alloc_bits = subcluster_flags(bitmaps & np.uint64(SUBCLUSTER_ALLOC_MASK))
            zero_bits = subcluster_flags(bitmaps >> np.uint64(32))
            normal_sub = allocated[:, None] & alloc_bits & ~zero_bits
            unallocated = (~compressed[:, None] & ~normal_sub & ~zero_bits).ravel()
            units = np.flatnonzero(normal_sub.ravel())
            hosts = host[units // SUBCLUSTERS] + units % SUBCLUSTERS * self.subcluster_size
        limit = stop - start
        data = merge_extents(heapq.merge(
            self._stored_extents(units, hosts, limit),
            block_extents(compressed, self.cluster_size, limit)))
        holes = block_extents(unallocated, self.subcluster_size, limit)
        return shifted(data, start), shifted(holes, start)

    def _stored_extents(self, units: np.ndarray, hosts: np.ndarray,
                        limit: int) -> Iterator[tuple[int, int]]:
        """Guest ranges of the stored (sub)clusters ``units`` (their data at ``hosts``),
        less the holes of the file that stores them: a hole reads as zeros, so a
        preallocated image or a raw data file sends only what it really holds."""
        import numpy as np
        if not units.size:
            return iter(())
        size, store = self.subcluster_size, self.store
        breaks = np.flatnonzero((np.diff(units) != 1) | (np.diff(hosts) != size)) + 1
        firsts = np.concatenate(([0], breaks))
        lasts = np.concatenate((breaks - 1, [units.size - 1]))
        groups = zip((units[firsts] * size).tolist(), hosts[firsts].tolist(),
                     ((units[lasts] - units[firsts] + 1) * size).tolist())
        if not has_holes(store.fd, store.file_size):
            return ((guest, min(length, limit - guest)) for guest, _, length in groups)

        def data_runs() -> Iterator[tuple[int, int]]:
            for guest, host, length in groups:
                length = min(length, limit - guest)
                for start, count in file_data_extents(store.fd, host, host + length):
                    yield guest + start - host, count
        return align_extents(data_runs(), limit)


def subcluster_flags(words: np.ndarray) -> np.ndarray:
    """``(n, 32)`` booleans from ``n`` 32-bit bitmaps held in uint64 (bit i = subcluster i)."""
    import numpy as np
    little = words.astype("<u4").view(np.uint8)
    return np.unpackbits(little, bitorder="little").reshape(-1, SUBCLUSTERS).astype(bool)


def shifted(ranges: Iterable[tuple[int, int]], by: int) -> list[tuple[int, int]]:
    return [(offset + by, length) for offset, length in ranges]


class RangeCursor:
    """Walks ascending ``(offset, length)`` ranges once, handing out their parts inside
    ascending, non-overlapping windows."""

    def __init__(self, ranges: Iterable[tuple[int, int]]) -> None:
        self._ranges = iter(ranges)
        self._current = next(self._ranges, None)

    def take(self, start: int, stop: int) -> list[tuple[int, int]]:
        parts = []
        while self._current is not None:
            offset, length = self._current
            end = offset + length
            if end <= start:
                self._current = next(self._ranges, None)
                continue
            if offset >= stop:
                break
            low, high = max(offset, start), min(end, stop)
            parts.append((low, high - low))
            if end > stop:
                break
            self._current = next(self._ranges, None)
        return parts

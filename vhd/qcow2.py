"""qcow2 reader (versions 2 and 3): L1/L2 tables, zero clusters, extended L2 entries with
subclusters, zlib and zstd compressed clusters, backing chains and external data files.

Everything that can be checked on open is: header fields, feature bits (the corrupt bit,
encryption and unknown incompatible features are refused), header extensions, the L1
table and where every L2 table lies. Each L2 table is checked when first read, which
``extents()`` does for all of them before anything downstream writes a byte.

Reads hold no lock: tables and the last inflated cluster live in small caches whose
updates are single assignments, so several threads may read one image at once, and
zlib/zstd release the GIL while they inflate.
"""
from __future__ import annotations

import heapq
import os
import struct
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ._inflate import inflate_raw
from ._qcow2_structs import (
    AUTOCLEAR_DATA_FILE_RAW,
    AUTOCLEAR_NAMES,
    COMPAT_NAMES,
    COMPRESSION_TYPES,
    COMPRESSION_ZLIB,
    COMPRESSION_ZSTD,
    CRYPT_METHODS,
    EXT_BACKING_FORMAT,
    EXT_DATA_FILE,
    EXT_FEATURE_NAMES,
    INCOMPAT_COMPRESSION,
    INCOMPAT_CORRUPT,
    INCOMPAT_DATA_FILE,
    INCOMPAT_DIRTY,
    INCOMPAT_KNOWN,
    INCOMPAT_NAMES,
    MAGIC,
    OFFSET_MASK,
    OFLAG_COMPRESSED,
    OFLAG_COPIED,
    OFLAG_ZERO,
    SUBCLUSTER_ALLOC_MASK,
    SUBCLUSTERS,
    V2_HEADER_LENGTH,
    V3_HEADER_LENGTH,
    Header,
    bit_names,
    compressed_location,
    extensions_end,
    feature_names,
    header_length_needed,
    header_problem,
    l1_entries_needed,
    l2_entries,
    parse_extensions,
)
from ._vhd_structs import SECTOR
from .errors import (
    ImageFormatError,
    ImageIOError,
    ParentChainError,
    ParentNotFoundError,
    TruncatedImageError,
    UnknownFormatError,
    UnsupportedImageError,
)
from .image import DiskImage
from .raw import (
    FROM_PARENT,
    FROM_ZERO,
    FileImage,
    Run,
    align_extents,
    block_extents,
    coalesce_runs,
    file_data_extents,
    has_holes,
    merge_extents,
)
from .vhd import MAX_CHAIN_DEPTH

if TYPE_CHECKING:
    import numpy as np

COMPRESSED = -3  # Run.source of compressed clusters: inflated on read
L2_CACHE_BYTES = 8 * 1024 * 1024  # per open image; each reading thread opens its own
BATCH_BYTES = 8 * 1024 * 1024  # compressed clusters read with one pread, at most
BATCH_GAP = 4096  # bytes between compressed clusters that still share one pread
ZSTD_HINT = "install azlift[zstd] (pip install 'azlift[zstd]')"


class Qcow2Image(FileImage):
    """A qcow2 image; ``parent`` is its backing file (any format azlift reads), if any."""

    format = "qcow2"

    def __init__(self, path: str | os.PathLike[str], *, _depth: int = 0,
                 _seen: frozenset[str] = frozenset()) -> None:
        super().__init__(path)
        self.parent: DiskImage | None = None
        self.data_file: FileImage | None = None
        self._l2_cache: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
        self._inflated: tuple[int, bytes] | None = None
        self._local = threading.local()
        try:
            self._load(_depth, _seen)
        except BaseException:
            self.close()
            raise

    def _fail(self, error: type[Exception], message: str) -> Exception:
        return error(f"{self.path}: {message}")

    # -- opening ------------------------------------------------------------------------
    def _load(self, depth: int, seen: frozenset[str]) -> None:
        self.header = header = self._read_header()
        self.cluster_bits = header.cluster_bits
        self.cluster_size = header.cluster_size
        self.extended = header.extended_l2
        self.l2_entries = l2_entries(header.cluster_bits, self.extended)
        self.l2_span = self.cluster_size * self.l2_entries
        self.subcluster_size = self.cluster_size // (SUBCLUSTERS if self.extended else 1)
        # qemu sees whole sectors only (total_sectors = size / 512).
        self._virtual_size = header.size // SECTOR * SECTOR
        self._l2_cache_limit = max(4, L2_CACHE_BYTES // self.cluster_size)
        cluster0 = self.pread_upto(0, self.cluster_size)
        self.extensions = self._read_extensions(header, cluster0)
        self._check_features(header)
        self._zstd = load_zstd(self.path) if header.compression_type == COMPRESSION_ZSTD else None
        self.l1 = self._read_l1(header)
        self.backing_name, self.backing_format = self._backing_name(header, cluster0)
        self.store: FileImage = self
        self.data_file_name: str | None = None
        if header.incompatible_features & INCOMPAT_DATA_FILE:
            self.data_file = self.store = self._open_data_file()
        if self.backing_name:
            self.parent = open_backing(self, self.backing_name, self.backing_format, depth, seen)

    def _read_header(self) -> Header:
        raw = self.pread_upto(0, V3_HEADER_LENGTH + 8)
        if raw[:4] != MAGIC:
            raise self._fail(ImageFormatError, f"expected the qcow2 magic 'QFI\\xfb' at offset "
                             f"0, found {raw[:4]!r}")
        if len(raw) < 8:
            raise self._fail(TruncatedImageError, f"the file ends inside the qcow2 header "
                             f"({len(raw)} bytes)")
        (version,) = struct.unpack_from(">I", raw, 4)
        if version == 1:
            raise self._fail(UnsupportedImageError,
                             "qcow version 1 image: azlift reads qcow2 (versions 2 and 3); "
                             "convert it first with `qemu-img convert -O qcow2`")
        if version not in (2, 3):
            raise self._fail(UnsupportedImageError,
                             f"qcow2 version {version}: azlift reads versions 2 and 3")
        needed = header_length_needed(version)
        if len(raw) < needed:
            raise self._fail(TruncatedImageError, f"the file ends inside the qcow2 version "
                             f"{version} header ({len(raw)} of {needed} bytes)")
        header = Header.unpack(raw)
        problem = header_problem(header)
        if problem is not None:
            raise self._fail(ImageFormatError, problem)
        if header.crypt_method:
            method = CRYPT_METHODS.get(header.crypt_method, f"method {header.crypt_method}")
            raise self._fail(UnsupportedImageError,
                             f"the image is encrypted ({method}); azlift does not read "
                             f"encrypted disks: decrypt it first with `qemu-img convert` "
                             f"(giving the key as a --object secret) to a plain qcow2 or raw")
        return header

    def _read_extensions(self, header: Header, cluster0: bytes) -> dict[int, bytes]:
        start = header.header_length if header.version >= 3 else V2_HEADER_LENGTH
        area = cluster0[start:extensions_end(header)]
        try:
            found = parse_extensions(area)
        except ValueError as error:
            raise self._fail(ImageFormatError, str(error)) from error
        return dict(found)

    def _check_features(self, header: Header) -> None:
        incompatible = header.incompatible_features
        unknown = incompatible & ~INCOMPAT_KNOWN
        if unknown:
            table = feature_names(self.extensions.get(EXT_FEATURE_NAMES, b""))
            names = [f"bit {bit}" + (f" ({table[(0, bit)]})" if (0, bit) in table else "")
                     for bit in range(64) if unknown >> bit & 1]
            raise self._fail(UnsupportedImageError,
                             f"the image uses incompatible features azlift does not know "
                             f"({', '.join(names)}); a reader that ignores them would return "
                             f"wrong data")
        if incompatible & INCOMPAT_CORRUPT:
            raise self._fail(ImageFormatError,
                             "the image is marked corrupt (qemu found inconsistent metadata "
                             "and stopped writing to it); repair it with `qemu-img check -r "
                             "all` first")
        kind = header.compression_type
        if kind not in COMPRESSION_TYPES:
            raise self._fail(UnsupportedImageError,
                             f"compression type {kind} is unknown (expected 0 zlib or 1 zstd)")
        if (kind != COMPRESSION_ZLIB) != bool(incompatible & INCOMPAT_COMPRESSION):
            raise self._fail(ImageFormatError,
                             f"compression type is {COMPRESSION_TYPES[kind]} but the "
                             f"compression-type feature bit is "
                             f"{'clear' if kind != COMPRESSION_ZLIB else 'set'}")

    def _read_l1(self, header: Header) -> np.ndarray:
        import numpy as np
        count = l1_entries_needed(header.size, self.cluster_bits, self.extended)
        offset = header.l1_table_offset
        if offset + count * 8 > self.file_size:
            raise self._fail(TruncatedImageError,
                             f"the L1 table ({count} entries at offset {offset}) ends past the "
                             f"end of the file ({self.file_size} bytes)")
        raw = np.frombuffer(self.pread(offset, count * 8), dtype=">u8")
        tables = (raw & np.uint64(OFFSET_MASK)).astype(np.int64)
        unaligned = np.flatnonzero(tables % self.cluster_size)
        if unaligned.size:
            index = int(unaligned[0])
            raise self._fail(ImageFormatError,
                             f"L1 entry {index} points to an L2 table at offset "
                             f"{int(tables[index])}, not aligned to the cluster size "
                             f"{self.cluster_size}")
        past = np.flatnonzero(tables + self.cluster_size > self.file_size)
        past = past[tables[past] != 0]
        if past.size:
            index = int(past[0])
            raise self._fail(TruncatedImageError,
                             f"L1 entry {index} points to an L2 table at offset "
                             f"{int(tables[index])}, past the end of the file "
                             f"({self.file_size} bytes)")
        return tables

    def _backing_name(self, header: Header, cluster0: bytes) -> tuple[str | None, str | None]:
        if not header.backing_file_offset or not header.backing_file_size:
            return None, None
        start = header.backing_file_offset
        raw = cluster0[start:start + header.backing_file_size]
        if len(raw) < header.backing_file_size:
            raise self._fail(TruncatedImageError, "the file ends inside the backing file name")
        name = self._text(raw, "backing file name")
        fmt = self.extensions.get(EXT_BACKING_FORMAT)
        return name, (self._text(fmt, "backing file format") if fmt else None)

    def _text(self, raw: bytes, what: str) -> str:
        try:
            return raw.split(b"\0", 1)[0].decode("utf-8")
        except UnicodeDecodeError as error:
            raise self._fail(ImageFormatError, f"the {what} is not UTF-8 text") from error

    def _open_data_file(self) -> FileImage:
        raw = self.extensions.get(EXT_DATA_FILE)
        if not raw:
            raise self._fail(UnsupportedImageError,
                             "the image keeps its data in an external data file but does not "
                             "name it (qemu needs it given with data-file=); azlift cannot "
                             "find it")
        self.data_file_name = name = self._text(raw, "external data file name")
        if has_protocol(name):
            raise self._fail(UnsupportedImageError, f"external data file {name!r} is not a "
                             f"local file name")
        # Beside the image first, as for backing files; qemu itself (7.2) takes a relative
        # data file name from the working directory, so that comes second.
        tried = list(dict.fromkeys([resolve_relative(self.path, name), name]))
        for path in tried:
            if os.path.isfile(path):
                return FileImage(path)
        raise self._fail(ImageIOError, f"external data file {name!r} not found (looked at "
                         f"{', '.join(tried)})")

    # -- the map ------------------------------------------------------------------------
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
            past = np.flatnonzero(compressed & (starts >= self.file_size))
            if past.size:
                raise self._fail(TruncatedImageError, f"{where(int(past[0]))} points to a "
                                 f"compressed cluster at offset {int(starts[past[0]])}, past "
                                 f"the end of the file ({self.file_size} bytes)")
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

    # -- reading ------------------------------------------------------------------------
    def read(self, offset: int, length: int) -> bytes:
        """Guest bytes: one pread per contiguous run, compressed clusters inflated."""
        self.check_range(offset, length)
        runs = list(self.runs(offset, length))
        if len(runs) == 1 and runs[0].source >= 0:
            return self.store.pread(runs[0].source, length)
        out = bytearray(length)
        view = memoryview(out)
        for run in runs:
            part = view[run.offset - offset:run.offset - offset + run.length]
            if run.source >= 0:
                self.store.pread_into(run.source, part)
            elif run.source == FROM_PARENT:
                part[:] = self.parent_read(run.offset, run.length)
            elif run.source == COMPRESSED:
                self._inflate_into(run.offset, part)
        return out  # type: ignore[return-value]  # bytes-like, as FileImage.read_runs

    def _entry(self, cluster: int) -> int:
        table = self._l2_table(cluster // self.l2_entries)
        assert table is not None  # the run came from this table
        return int(table[0][cluster % self.l2_entries])

    def _inflate_into(self, start: int, view: memoryview) -> None:
        """Fill ``view`` (guest bytes from ``start``, all in compressed clusters)."""
        bits, end = self.cluster_bits, start + len(view)
        first, last = start >> bits, (end - 1) >> bits
        entries = [(cluster, self._entry(cluster)) for cluster in range(first, last + 1)]
        cached = self._inflated
        if len(entries) == 1 and cached is not None and cached[0] == entries[0][1]:
            self._copy_cluster(first, cached[1], start, view)
            return
        for batch in compressed_batches(
                (cluster, *compressed_location(entry, bits)) for cluster, entry in entries):
            span_start = batch[0][1]
            span = memoryview(self.pread_upto(
                span_start, max(offset + size for _, offset, size in batch) - span_start))
            for cluster, offset, size in batch:
                data = self._inflate(span[offset - span_start:offset - span_start + size],
                                     offset, size)
                self._copy_cluster(cluster, data, start, view)
        if len(entries) == 1:
            self._inflated = (entries[0][1], data)

    def _copy_cluster(self, cluster: int, data: bytes, start: int, view: memoryview) -> None:
        cluster_start = cluster << self.cluster_bits
        low = max(start, cluster_start)
        high = min(start + len(view), cluster_start + self.cluster_size)
        view[low - start:high - start] = data[low - cluster_start:high - cluster_start]

    def _inflate(self, data: memoryview, offset: int, size: int) -> bytes:
        """One compressed cluster's bytes; a typed error when they do not inflate fully."""
        problem = None
        try:
            if self._zstd is not None:
                out = zstd_inflate(self._zstd_context(), data, self.cluster_size)
            else:
                out = inflate_raw(data, self.cluster_size)
        except Exception as error:  # noqa: BLE001 - zlib's, ISA-L's, zstandard's errors
            out, problem = b"", f"does not inflate ({error})"
        if len(out) == self.cluster_size:
            return out
        if problem is None:
            problem = f"inflates to {len(out)} bytes, expected {self.cluster_size}"
        if offset + size > self.file_size:
            raise self._fail(TruncatedImageError,
                             f"the compressed cluster at offset {offset} ({size} bytes) is cut "
                             f"off by the end of the file ({self.file_size} bytes): {problem}")
        raise self._fail(ImageFormatError,
                         f"the compressed cluster at offset {offset} {problem}")

    def _zstd_context(self) -> Any:
        """One zstd decompressor per thread (a context must not be shared while in use)."""
        context = getattr(self._local, "zstd", None)
        if context is None:
            context = self._local.zstd = self._zstd.ZstdDecompressor()
        return context

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

    # -- describing -----------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        import numpy as np
        header = self.header
        info: dict[str, Any] = {
            **self.describe_file(),
            "qcow2": {
                "version": header.version,
                "compat": header.compat,
                "cluster_size": self.cluster_size,
                "extended_l2": self.extended,
                "subcluster_size": self.subcluster_size,
                "compression_type": COMPRESSION_TYPES[header.compression_type],
                "refcount_bits": 1 << header.refcount_order,
                "internal_snapshots": header.nb_snapshots,
                "l2_tables": int(np.count_nonzero(self.l1)),
                "l1_entries": len(self.l1),
                "incompatible_features": bit_names(header.incompatible_features,
                                                   INCOMPAT_NAMES),
                "compatible_features": bit_names(header.compatible_features, COMPAT_NAMES),
                "autoclear_features": bit_names(header.autoclear_features, AUTOCLEAR_NAMES),
                "dirty": bool(header.incompatible_features & INCOMPAT_DIRTY),
            },
            "backing_file": None,
            "data_file": None,
            "parents": parent_chain(self),
            "warnings": self.warnings(),
        }
        if self.parent is not None:
            info["backing_file"] = {"name": self.backing_name, "format": self.backing_format,
                                    "path": self.parent.path, "opened_as": self.parent.format}
        if self.data_file is not None:
            info["data_file"] = {
                "name": self.data_file_name, "path": self.data_file.path,
                "raw": bool(header.autoclear_features & AUTOCLEAR_DATA_FILE_RAW)}
        return info

    def warnings(self) -> list[str]:
        """What a user should know although the image reads correctly."""
        header = self.header
        found = []
        if header.incompatible_features & INCOMPAT_DIRTY:
            found.append("the image is marked dirty (qemu did not close it cleanly, or it "
                         "uses lazy refcounts): its reference counts may be stale, but the "
                         "L1/L2 tables azlift reads are authoritative; run `qemu-img check "
                         "-r all` before qemu writes to it again")
        if header.nb_snapshots:
            found.append(f"the image has {header.nb_snapshots} internal snapshot(s); azlift "
                         f"reads the current state of the disk only")
        if self.parent is not None and not self.backing_format:
            found.append("the backing file's format is not recorded in the image; it was "
                         "detected from the file's content")
        return found

    # -- lifetime -----------------------------------------------------------------------
    def close(self) -> None:
        for attached in (getattr(self, "parent", None), getattr(self, "data_file", None)):
            if attached is not None:
                attached.close()
        super().close()


# --- helpers ------------------------------------------------------------------------------
def load_zstd(path: str) -> Any:
    """The zstandard module, or a one-line error saying how to get it."""
    try:
        import zstandard
    except ImportError as error:
        raise UnsupportedImageError(
            f"{path}: the image is compressed with zstd, which needs the optional zstandard "
            f"package: {ZSTD_HINT}") from error
    return zstandard


def zstd_inflate(context: Any, data: memoryview | bytes, size: int) -> bytes:
    """``size`` bytes out of one or more zstd frames; what follows them is ignored (the
    last sector of a compressed cluster can hold the start of the next one)."""
    out: list[bytes] = []
    got = 0
    rest: Any = data
    while got < size and len(rest):
        inflater = context.decompressobj()
        chunk = inflater.decompress(rest)
        out.append(chunk)
        got += len(chunk)
        if not inflater.eof:
            break
        rest = inflater.unused_data
    return b"".join(out)[:size]


def compressed_batches(clusters: Iterable[tuple[int, int, int]],
                       ) -> Iterator[list[tuple[int, int, int]]]:
    """Group ``(cluster, host offset, size)`` so neighbours in the file share one pread."""
    batch: list[tuple[int, int, int]] = []
    batch_end = 0
    for item in clusters:
        _, offset, size = item
        if batch and not (batch_end - BATCH_GAP <= offset <= batch_end + BATCH_GAP
                          and offset >= batch[0][1]
                          and offset + size - batch[0][1] <= BATCH_BYTES):
            yield batch
            batch = []
        if not batch:
            batch_end = 0
        batch.append(item)
        batch_end = max(batch_end, offset + size)
    if batch:
        yield batch


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


def has_protocol(name: str) -> bool:
    """qemu's rule: a ``:`` before any ``/`` makes a name a protocol (nbd:, json:, ...)."""
    colon = name.find(":")
    slash = name.find("/")
    return colon >= 0 and (slash < 0 or colon < slash)


def resolve_relative(image_path: str, name: str) -> str:
    """A name stored in an image, resolved as qemu does: relative to the folder of the
    image that names it (as that image was named, symlinks not followed)."""
    if os.path.isabs(name):
        return name
    return os.path.join(os.path.dirname(image_path), name)


def open_backing(image: Qcow2Image, name: str, fmt: str | None, depth: int,
                 seen: frozenset[str]) -> DiskImage:
    """Open the backing file ``name`` of ``image`` (format ``fmt``, or from content)."""
    from .detect import detect_format, open_image  # detect imports this module

    seen = seen | {os.path.realpath(image.path)}
    if depth + 1 > MAX_CHAIN_DEPTH:
        raise ParentChainError(
            f"{image.path}: the backing chain is deeper than {MAX_CHAIN_DEPTH} images")
    if has_protocol(name):
        raise UnsupportedImageError(
            f"{image.path}: backing file {name!r} is not a local file name (a qemu protocol "
            f"or json: name); azlift follows local backing files only")
    path = resolve_relative(image.path, name)
    if not os.path.isfile(path):
        raise ParentNotFoundError(
            f"{image.path}: backing file {name!r} not found (looked at {path})")
    if os.path.realpath(path) in seen:
        raise ParentChainError(f"{image.path}: the backing chain loops back to {path}")
    if (fmt or detect_format(path).format).lower() == "qcow2":
        return Qcow2Image(path, _depth=depth + 1, _seen=seen)
    try:
        return open_image(path, format=fmt)
    except UnknownFormatError as error:
        raise UnsupportedImageError(
            f"{image.path}: backing file {name!r} has format {fmt!r}, which azlift does not "
            f"read") from error


def parent_chain(image: DiskImage) -> list[dict[str, Any]]:
    """The backing chain from the nearest file to the base, as JSON-ready entries."""
    chain: list[dict[str, Any]] = []
    current = getattr(image, "parent", None)
    while current is not None:
        chain.append({"path": current.path, "format": current.format,
                      "virtual_size": current.virtual_size})
        current = getattr(current, "parent", None)
    return chain

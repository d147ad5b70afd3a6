"""qcow2 reader (versions 2 and 3): L1/L2 tables, zero clusters, extended L2 entries with
subclusters, zlib and zstd compressed clusters, backing chains and external data files.

Everything that can be checked on open is: header fields, feature bits (the corrupt bit,
encryption and unknown incompatible features are refused), header extensions, the L1
table and where every L2 table lies. Each L2 table is checked when first read, which
``extents()`` does for all of them before anything downstream writes a byte.

Reads hold no lock: tables and the last inflated cluster live in small caches whose
updates are single assignments, so several threads may read one image at once, and
the inflaters release the GIL.

The class is assembled from its parts: ``Qcow2Header`` (qcow2_header.py) opens and checks
the file, ``Qcow2Map`` (qcow2_map.py) answers where each guest byte lives, qcow2_chain.py
follows backing files; this module reads (inflating compressed clusters) and describes.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ._inflate import inflate_raw
from ._qcow2_structs import (
    AUTOCLEAR_DATA_FILE_RAW,
    AUTOCLEAR_NAMES,
    COMPAT_NAMES,
    COMPRESSION_TYPES,
    COMPRESSION_ZSTD,
    INCOMPAT_DATA_FILE,
    INCOMPAT_DIRTY,
    INCOMPAT_NAMES,
    SUBCLUSTERS,
    bit_names,
    compressed_location,
    l2_entries,
)
from ._vhd_structs import SECTOR
from .errors import ImageFormatError, TruncatedImageError, UnsupportedImageError
from .image import DiskImage
from .qcow2_chain import open_backing, parent_chain
from .qcow2_header import Qcow2Header
from .qcow2_map import COMPRESSED, Qcow2Map
from .raw import FROM_PARENT, FileImage

if TYPE_CHECKING:
    import numpy as np

L2_CACHE_BYTES = 8 * 1024 * 1024  # per open image; each reading thread opens its own
BATCH_BYTES = 8 * 1024 * 1024  # compressed clusters read with one pread, at most
BATCH_GAP = 4096  # bytes between compressed clusters that still share one pread
ZSTD_HINT = "install azlift[zstd] (pip install 'azlift[zstd]')"


class Qcow2Image(Qcow2Map, Qcow2Header):
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
    last sector of a compressed cluster can hold the start of the next one). Each frame
    is read through a bounded reader, which one read does not carry past the frame's end:
    a frame that goes on past ``size`` (zstd's RLE blocks reach ~32000:1, a crafted
    cluster GiBs) gives ``size`` + 1 bytes at most, which the caller refuses, as qemu
    refuses such a cluster."""
    pieces: list[bytes] = []
    got = 0
    rest: Any = data
    while got < size and len(rest):
        wanted = size - got
        frame = context.stream_reader(rest, read_across_frames=False).read(wanted + 1)
        pieces.append(frame)
        got += len(frame)
        if len(frame) >= wanted:
            break
        # the frame ended short of the cluster (so it is small): where does the next start?
        inflater = context.decompressobj()
        inflater.decompress(rest)
        if not inflater.eof:
            break
        rest = inflater.unused_data
    return b"".join(pieces)


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

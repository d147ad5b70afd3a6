"""Raw disk images, and the file handling every reader shares.

``FileImage`` owns the descriptor: opening with one-line errors, positional reads that
never move a shared offset, bounds checks and the context manager. ``RawImage`` is the
simplest reader on top of it: the file *is* the disk, a tail that is not a whole sector
reads as zero-padded, and the file's holes (SEEK_DATA/SEEK_HOLE) are the map of data.
"""
from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from ._vhd_structs import SECTOR, round_up
from .block_tables import index_extents
from .errors import ImageIOError, ReadRangeError, TruncatedImageError

if TYPE_CHECKING:
    import numpy as np
    from ._signatures import Signature


# Where a run's bytes come from when not from the file (see ``Run.source``).
FROM_ZERO = -1
FROM_PARENT = -2


class Run(NamedTuple):
    """A guest range and where its bytes live: a file offset, FROM_ZERO or FROM_PARENT."""

    offset: int
    length: int
    source: int


def coalesce_runs(runs: Iterable[Run]) -> Iterator[Run]:
    """Join consecutive runs with the same non-file source, or contiguous in the file."""
    pending: Run | None = None
    for run in runs:
        if pending is not None and (
                (run.source < 0 and run.source == pending.source)
                or (run.source >= 0 and pending.source >= 0
                    and run.source == pending.source + pending.length)):
            pending = Run(pending.offset, pending.length + run.length, pending.source)
            continue
        if pending is not None:
            yield pending
        pending = run
    if pending is not None:
        yield pending


def merge_extents(extents: Iterable[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """Join ascending ``(offset, length)`` ranges that touch or overlap; drop empty ones."""
    start = end = None
    for offset, length in extents:
        if length <= 0:
            continue
        if start is None:
            start, end = offset, offset + length
        elif offset <= end:
            end = max(end, offset + length)
        else:
            yield start, end - start
            start, end = offset, offset + length
    if start is not None:
        yield start, end - start


def block_spans(offset: int, end: int, block_size: int) -> Iterator[tuple[int, int, int, int]]:
    """``(block, block_start, start, stop)`` for each block the guest range
    ``[offset, end)`` touches, ``[start, stop)`` being the part inside that block."""
    for block in range(offset // block_size, -(-end // block_size)):
        block_start = block * block_size
        yield block, block_start, max(offset, block_start), min(end, block_start + block_size)


def block_extents(allocated: "np.ndarray", block_size: int,
                  limit: int) -> Iterator[tuple[int, int]]:
    """Guest ranges of the blocks flagged in the boolean array ``allocated``, merged and
    clipped to ``limit``; vectorised, so a BAT of millions of entries takes milliseconds."""
    import numpy as np
    indices = np.flatnonzero(allocated)
    if not indices.size:
        return
    breaks = np.flatnonzero(np.diff(indices) != 1) + 1
    firsts = indices[np.concatenate(([0], breaks))].tolist()
    lasts = indices[np.concatenate((breaks - 1, [indices.size - 1]))].tolist()
    for first, last in zip(firsts, lasts):
        start = first * block_size
        yield start, min((last + 1) * block_size, limit) - start


def align_extents(extents: Iterable[tuple[int, int]], limit: int) -> Iterator[tuple[int, int]]:
    """Widen ranges outward to whole sectors, clip them to ``limit`` and merge them."""
    def widened() -> Iterator[tuple[int, int]]:
        for offset, length in extents:
            start = offset - offset % SECTOR
            end = min(round_up(offset + length, SECTOR), limit)
            if end > start:
                yield start, end - start
    return merge_extents(widened())


def file_data_extents(fd: int, start: int, end: int) -> Iterator[tuple[int, int]]:
    """Ranges of ``[start, end)`` in the file that hold data, from SEEK_DATA/SEEK_HOLE.

    A file system without hole reporting yields the whole range: a safe superset.
    """
    pos = start
    while pos < end:
        try:
            data = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as error:
            if error.errno == errno.ENXIO:  # no data after pos
                return
            yield pos, end - pos
            return
        if data >= end:
            return
        try:
            hole = os.lseek(fd, data, os.SEEK_HOLE)
        except OSError:
            hole = end
        hole = min(hole, end)
        yield data, hole - data
        pos = hole


def has_holes(fd: int, size: int) -> bool:
    """Whether the file has a hole before ``size`` (False when holes are not reported)."""
    try:
        return os.lseek(fd, 0, os.SEEK_HOLE) < size
    except OSError:
        return False


def stored_block_extents(fd: int, file_size: int, blocks: "Sequence[int] | np.ndarray",
                         offsets: "Iterable[int] | np.ndarray", block_size: int,
                         limit: int) -> Iterator[tuple[int, int]]:
    """Guest ranges of the stored ``blocks`` (block numbers, ascending; ``offsets``: where
    each one's data starts in the file), less the file's holes inside them.

    Tools leave the unwritten part of a block as a hole (qemu-img does), and a hole reads
    as zeros: nothing downstream needs to read or send it. A file without holes costs
    one lseek; otherwise two per stored block. ``blocks`` is a list (a table read without
    numpy, as a VHD's; ``offsets`` then any iterable, read only where there are holes) or
    a numpy array, whose runs of blocks are then found vectorised (a fully allocated
    table of millions of blocks in milliseconds).
    """
    if not len(blocks):
        return iter(())
    if not has_holes(fd, file_size):
        if isinstance(blocks, list):
            return index_extents(blocks, block_size, limit)
        import numpy as np
        allocated = np.zeros(int(blocks[-1]) + 1, dtype=bool)
        allocated[blocks] = True
        return block_extents(allocated, block_size, limit)

    def data_runs() -> Iterator[tuple[int, int]]:
        for block, source in zip(_ints(blocks), _ints(offsets)):
            guest = block * block_size
            length = min(block_size, limit - guest)
            for start, count in file_data_extents(fd, source, source + length):
                yield guest + start - source, count
    return align_extents(data_runs(), limit)


def _ints(values: "Iterable[int] | np.ndarray") -> Iterable[int]:
    return values.tolist() if hasattr(values, "tolist") else values  # type: ignore[union-attr]


class FileImage:
    """An open image file: positional reads, bounds checks, close and ``with``."""

    format = "file"
    # Set by ``open_image`` when a forced --format overrode a container signature.
    signature_ignored: "Signature | None" = None

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._fd: int | None = None
        self._fd = open_readable(self.path)
        self.file_size = file_length(self._fd, self.path)

    # -- the descriptor ---------------------------------------------------------------
    @property
    def fd(self) -> int:
        if self._fd is None:
            raise ImageIOError(f"{self.path}: image is closed")
        return self._fd

    def pread(self, offset: int, length: int) -> bytes:
        """Exactly ``length`` bytes at ``offset`` of the file, or TruncatedImageError."""
        data = self.pread_upto(offset, length)
        if len(data) != length:
            raise TruncatedImageError(
                f"{self.path}: expected {length} bytes at offset {offset}, "
                f"the file ends after {len(data)} of them (file size {self.file_size})")
        return data

    def pread_upto(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes at ``offset``; shorter only at the end of the file."""
        if length <= 0:
            return b""
        chunks = []
        got = 0
        while got < length:
            try:
                chunk = os.pread(self.fd, length - got, offset + got)
            except OSError as error:
                raise ImageIOError(f"cannot read {self.path} at offset {offset + got}: "
                                   f"{error.strerror}") from error
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def read_runs(self, offset: int, length: int, runs: Iterable[Run]) -> bytes:
        """Assemble guest bytes from ``runs`` (contiguous, in order, covering the range).

        A single run in the file is one pread. Otherwise the file's runs are read straight
        into one zero-filled buffer (preadv, no copy in Python), which is returned as is:
        a bytearray, which is bytes-like for every consumer (slicing, comparing, writing).
        """
        runs = list(runs)
        if len(runs) == 1 and runs[0].source >= 0:
            return self.pread(runs[0].source, length)
        out = bytearray(length)
        view = memoryview(out)
        for run in runs:
            start = run.offset - offset
            if run.source >= 0:
                self.pread_into(run.source, view[start:start + run.length])
            elif run.source == FROM_PARENT:
                view[start:start + run.length] = self.parent_read(run.offset, run.length)
        return out  # type: ignore[return-value]  # bytes-like, see the docstring

    def pread_into(self, offset: int, buffer: memoryview) -> None:
        """Fill ``buffer`` from the file at ``offset``, or TruncatedImageError."""
        done = 0
        while done < len(buffer):
            try:
                got = os.preadv(self.fd, [buffer[done:]], offset + done)
            except OSError as error:
                raise ImageIOError(f"cannot read {self.path} at offset {offset + done}: "
                                   f"{error.strerror}") from error
            if got == 0:
                raise TruncatedImageError(
                    f"{self.path}: expected {len(buffer)} bytes at offset {offset}, the file "
                    f"ends after {done} of them (file size {self.file_size})")
            done += got

    def parent_read(self, offset: int, length: int) -> bytes:
        """Bytes a child disk inherits from ``self.parent`` (zeros without one); a parent
        smaller than the child reads as zeros beyond its end."""
        parent = getattr(self, "parent", None)
        if parent is None:
            return bytes(length)
        available = max(0, min(length, parent.virtual_size - offset))
        if available == length:
            return parent.read(offset, length)
        data = parent.read(offset, available) if available else b""
        return bytes(data) + bytes(length - available)

    def check_range(self, offset: int, length: int) -> None:
        """Refuse a read that does not lie inside ``[0, virtual_size]``."""
        size = self.virtual_size  # type: ignore[attr-defined]
        if offset < 0 or length < 0 or offset + length > size:
            raise ReadRangeError(
                f"{self.path}: read of {length} bytes at offset {offset} is outside the "
                f"disk (virtual size {size})")

    def allocated_bytes(self) -> int:
        """Bytes inside ``extents()``: what a sparse copy of the disk would hold."""
        return sum(length for _, length in self.extents())  # type: ignore[attr-defined]

    def describe_file(self) -> dict[str, Any]:
        """The fields every reader's ``describe()`` starts with."""
        return {
            "path": self.path,
            "format": self.format,
            "virtual_size": self.virtual_size,  # type: ignore[attr-defined]
            "file_size": self.file_size,
            "allocated_bytes": self.allocated_bytes(),
            **({"signature_ignored": signature_fields(self.signature_ignored)}
               if self.signature_ignored is not None else {}),
        }

    # -- lifetime ---------------------------------------------------------------------
    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "FileImage":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finaliser
            pass


def open_readable(path: str) -> int:
    """A read-only descriptor for a regular file or block device, or one-line ImageIOError."""
    try:  # non-blocking: opening a FIFO with no writer would wait for ever
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
                     | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError as error:
        raise ImageIOError(f"{path}: no such file") from error
    except IsADirectoryError as error:
        raise ImageIOError(f"{path}: is a directory, expected a disk image file") from error
    except PermissionError as error:
        raise ImageIOError(f"{path}: permission denied") from error
    except OSError as error:
        raise ImageIOError(f"cannot open {path}: {error.strerror or error}") from error
    mode = os.fstat(fd).st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISBLK(mode)):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        raise ImageIOError(f"{path}: is {kind}, expected a disk image file")
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return fd


def file_length(fd: int, path: str) -> int:
    """Length of a regular file or block device."""
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    except OSError as error:
        raise ImageIOError(f"cannot size {path}: {error.strerror}") from error


def signature_fields(signature: "Signature") -> dict[str, str]:
    """A container signature as describe() and --json show it."""
    return {"format": signature.format, "label": signature.label,
            "evidence": signature.describe_magic()}


class RawImage(FileImage):
    """A raw disk: the bytes of the file, zero-padded to a whole sector."""

    format = "raw"
    # Why the file was taken as raw (inspect shows it, so a mistake can be caught).
    raw_reason = "opened as raw"

    @property
    def virtual_size(self) -> int:
        return round_up(self.file_size, SECTOR)

    def read(self, offset: int, length: int) -> bytes:
        """Guest bytes ``[offset, offset + length)``; the padded tail past the size the
        file had when opened reads as zeros, a file cut short since is TruncatedImageError
        (its lost bytes must not pass for zeros)."""
        self.check_range(offset, length)
        stored = max(0, min(length, self.file_size - offset))
        data = self.pread(offset, stored) if stored else b""
        return data + bytes(length - stored) if stored < length else data

    def runs(self, offset: int, length: int) -> Iterator[Run]:
        """Guest byte N is file byte N; the padded tail past the file's end is zeros."""
        stored = max(0, min(length, self.file_size - offset))
        if stored:
            yield Run(offset, stored, offset)
        if stored < length:
            yield Run(offset + stored, length - stored, FROM_ZERO)

    def extents(self) -> Iterator[tuple[int, int]]:
        return align_extents(file_data_extents(self.fd, 0, self.file_size), self.virtual_size)

    def describe(self) -> dict[str, Any]:
        return {**self.describe_file(), "raw_reason": self.raw_reason, "parents": []}

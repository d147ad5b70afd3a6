"""A DiskImage seen as the fixed VHD that will exist in Azure, without writing it anywhere.

The blob is: the guest-visible bytes, zero-padded to a whole MiB, then the footer `vhd
convert` writes. Only the image's extents can hold data; everything else is zero and
never read or sent. Reads are thread-safe: every worker thread gets its own handle.
"""
from __future__ import annotations

import hashlib
import json
import mmap
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from azlift.vhd import DiskImage, azure_virtual_size, open_image
from azlift.vhd._vhd_structs import FOOTER_SIZE
from azlift.vhd.conversion import footer_for

from .checksum import PageChecksum, RunningChecksum
from .ranges import SECTOR, Range, align_up, nonzero_pieces, normalize, split, work_units

if TYPE_CHECKING:
    import numpy as np

    from .leased_source import LeasedSource

ZERO_BLOCK = bytes(4 * 1024 * 1024)
T = TypeVar("T")

# DiskImage.format -> the family name vhd.open_image(format=...) accepts.
FORMAT_FAMILY = {"raw": "raw", "vhd-fixed": "vhd", "vhd-dynamic": "vhd",
                 "vhd-differencing": "vhd", "vhdx": "vhdx", "qcow2": "qcow2"}
# Formats whose runs name offsets of the image's own file where the bytes lie as stored.
MAPPABLE_FORMATS = frozenset(("raw", "vhd-fixed", "vhd-dynamic", "vhd-differencing", "vhdx"))


def footer_bytes(image: DiskImage, virtual_size: int) -> bytes:
    """The footer `vhd convert` writes for ``image`` at ``virtual_size`` (deterministic)."""
    return footer_for(image, virtual_size).pack()


@dataclass(frozen=True)
class FixedVhdLayout:
    """Where the data of the Azure fixed VHD lies, and its footer."""

    virtual_size: int  # whole MiB
    source_size: int  # guest-visible size of the source (may be less than virtual_size)
    footer: bytes
    data_extents: tuple[Range, ...]  # sector-aligned, sorted, merged, within source_size

    @property
    def blob_length(self) -> int:
        return self.virtual_size + FOOTER_SIZE

    @property
    def footer_offset(self) -> int:
        return self.virtual_size

    def units(self) -> Iterator[Range]:
        """Work units (≤ 4 MiB, never across a 4 MiB boundary), then the footer; lazily."""
        yield from work_units(self.data_extents)
        yield self.footer_offset, FOOTER_SIZE

    @property
    def scan_bytes(self) -> int:
        """Bytes the units cover: the data extents and the footer."""
        return sum(length for _, length in self.data_extents) + FOOTER_SIZE

    def extents_digest(self) -> str:
        """A hash of the data map: part of the source fingerprint a resume checks."""
        text = json.dumps([self.virtual_size, list(self.data_extents)])
        return hashlib.sha256(text.encode()).hexdigest()


def fixed_vhd_layout(image: DiskImage) -> FixedVhdLayout:
    """The fixed VHD for ``image``: size rounded up to a MiB, extents aligned, footer."""
    virtual_size = azure_virtual_size(image.virtual_size)
    limit = align_up(image.virtual_size, SECTOR)
    extents = tuple(normalize(image.extents(), limit))
    return FixedVhdLayout(virtual_size=virtual_size, source_size=image.virtual_size,
                          footer=footer_bytes(image, virtual_size), data_extents=extents)


ZERO_SECTOR = bytes(SECTOR)


def nonzero_sector_flags(data: bytes | memoryview) -> np.ndarray:
    """One flag per 512-byte sector: True where any byte is non-zero (vectorised).

    Dense data is the common case: when no run of 512 zero bytes exists anywhere in the
    buffer (a substring search, about 7x quicker than the sector scan), no sector can be
    zero. Otherwise each sector's words are OR-ed together (4x quicker than ``any``)."""
    import numpy as np
    if len(data) % SECTOR:
        raise ValueError(f"buffer of {len(data)} bytes is not whole sectors")
    if isinstance(data, (bytes, bytearray)) and data.find(ZERO_SECTOR) < 0:
        return np.ones(len(data) // SECTOR, dtype=bool)
    words = np.frombuffer(data, dtype=np.uint64).reshape(-1, SECTOR // 8)
    return np.bitwise_or.reduce(words, axis=1) != 0


def nonzero_ranges(offset: int, data: bytes | memoryview) -> list[Range]:
    """The Put Page ranges of ``data`` (at ``offset``) that hold non-zero sectors.

    A buffer with no run of 512 zero bytes at all (what most units hold) is sent whole,
    found by one substring search without numpy's dozen calls (about 0.1 ms a unit)."""
    if isinstance(data, (bytes, bytearray)) and data.find(ZERO_SECTOR) < 0:
        if len(data) % SECTOR:
            raise ValueError(f"buffer of {len(data)} bytes is not whole sectors")
        return list(split(offset, len(data)))
    return nonzero_pieces(offset, nonzero_sector_flags(data))


SCAN_BLOCK = 256 * 1024


def dense_checksum(data: bytes | memoryview, kind: str) -> PageChecksum | None:
    """``data``'s Put Page checksum of ``kind`` when no run of 512 zero bytes lies in it
    (it is then sent whole), else None.

    One pass in 256 KiB blocks, the checksum first and the zero search after it while the
    block is in the cache: searched first, a 4 MiB buffer fresh from a read makes each of
    the search's sparse probes wait on memory (about 0.1 s of CPU per GiB more here)."""
    if not isinstance(data, (bytes, bytearray, mmap.mmap)) or len(data) % SECTOR:
        return None
    running = RunningChecksum(kind)
    view = memoryview(data)
    for start in range(0, len(data), SCAN_BLOCK):
        end = start + SCAN_BLOCK
        running.update(view[start:end])
        if data.find(ZERO_SECTOR, start, end) >= 0:  # blocks hold whole sectors
            return None
    return running.result()


class SourceReader:
    """Thread-safe, sector-padded reads of a DiskImage.

    Each thread reopens the image once and keeps its handle (readers may seek); the
    caller's own image object is used by no worker. If reopening is impossible, reads
    fall back to the shared image under a lock.
    """

    def __init__(self, image: DiskImage,
                 reopen: Callable[[], DiskImage] | None = None) -> None:
        self._image = image
        self._size = image.virtual_size
        self._reopen = reopen if reopen is not None else _default_reopen(image)
        self._local = threading.local()
        self._opened: list[DiskImage] = []
        self._lock = threading.Lock()
        self._mappable = getattr(image, "format", "") in MAPPABLE_FORMATS

    def _handle(self) -> tuple[DiskImage, bool]:
        if getattr(self._image, "thread_safe", False):  # one handle serves every thread
            return self._image, False
        handle = getattr(self._local, "image", None)
        if handle is None:
            try:
                handle = self._reopen() if self._reopen else None
            except Exception:  # noqa: BLE001 - fall back to the shared handle below
                handle = None
            if handle is None:
                self._local.image = self._image
                return self._image, True
            with self._lock:
                self._opened.append(handle)
            self._local.image = handle
        return handle, handle is self._image

    def _on_handle(self, work: Callable[[DiskImage], T]) -> T:
        """``work`` on this thread's handle (under the lock when it is the shared one)."""
        handle, shared = self._handle()
        if not shared:
            return work(handle)
        with self._lock:
            return work(handle)

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset``; bytes past the source's end read as zero."""
        available = max(0, min(length, self._size - offset))
        data = self._on_handle(lambda image: image.read(offset, available)) if available \
            else b""
        if len(data) < length:
            data = data + bytes(length - len(data))
        return data

    def stored_at(self, offset: int, length: int) -> int | None:
        """Where ``[offset, offset + length)`` lies in one piece in the image's own file,
        as it is stored (raw, VHD, VHDX); None where it does not."""
        if not self._mappable or offset + length > self._size:
            return None
        runs = self._on_handle(lambda image: list(image.runs(offset, length)))
        return runs[0].source if len(runs) == 1 and runs[0].source >= 0 else None

    def lease(self) -> LeasedSource | None:
        """A read lease on the image's file, for reading units through mappings; None
        where the format or the system does not allow it (see leased_source.py)."""
        path, fd = getattr(self._image, "path", None), getattr(self._image, "fd", None)
        if not self._mappable or not path or fd is None:
            return None
        from .leased_source import LeasedSource
        return LeasedSource.take(path, fd)

    def close(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for handle in opened:
            handle.close()


def _default_reopen(image: DiskImage) -> Callable[[], DiskImage] | None:
    """Opens the image's path again for a worker thread, as long as the path still names
    the file the caller opened: a file renamed over it since is another disk, whose block
    offsets must not be read from the first one (the worker then shares the caller's
    handle)."""
    path = getattr(image, "path", None)
    family = FORMAT_FAMILY.get(getattr(image, "format", ""))
    if not path or family is None or not os.path.exists(path):
        return None
    fd = getattr(image, "fd", None)
    try:
        opened = os.fstat(fd) if fd is not None else None
    except OSError:
        return None

    def reopen() -> DiskImage:
        handle = open_image(path, format=family)
        try:
            same = opened is None or os.path.samestat(os.fstat(handle.fd), opened)
        except (OSError, AttributeError):
            same = False
        if not same:
            handle.close()
            raise FileNotFoundError(f"{path} names another file than the one opened")
        return handle
    return reopen


class OrderedMd5:
    """MD5 of the whole blob (zeros included) fed out of order, each byte read once.

    Finished units arrive in any order; they wait in ``_held`` until every unit before
    them arrived, then their bytes go to a hashing thread through a bounded queue, gaps
    between units as slices of one shared zero block. So no byte of the source is read
    twice, memory stays bounded by the caller's window, and hashing overlaps the upload.
    """

    def __init__(self, blob_length: int, order: Iterable[int]) -> None:
        self.blob_length = blob_length
        self._order = iter(order)  # unit offsets in blob order, footer last
        self._expected: int | None = next(self._order, None)
        self._held: dict[int, bytes] = {}
        self._queue: queue.Queue[tuple[int, bytes] | None] = queue.Queue(maxsize=8)
        self._digest = hashlib.md5()
        self._position = 0
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="azlift-md5", daemon=True)
        self._thread.start()

    @property
    def held(self) -> int:
        """Units received but still waiting for an earlier one."""
        return len(self._held)

    def add(self, offset: int, data: bytes) -> None:
        """The bytes of the unit at ``offset`` (any order)."""
        self._held[offset] = data
        while self._expected is not None and self._expected in self._held:
            self._queue.put((self._expected, self._held.pop(self._expected)))
            self._expected = next(self._order, None)

    def _run(self) -> None:
        try:
            while (item := self._queue.get()) is not None:
                offset, data = item
                self._zeros_until(offset)
                self._digest.update(data)
                self._position = offset + len(data)
        except BaseException as error:  # noqa: BLE001 - reported by finish()
            self._error = error

    def _zeros_until(self, end: int) -> None:
        while self._position < end:
            step = min(len(ZERO_BLOCK), end - self._position)
            self._digest.update(memoryview(ZERO_BLOCK)[:step])
            self._position += step

    def finish(self) -> bytes:
        """The 16-byte digest, once every unit was added."""
        if self._held or self._expected is not None:
            raise RuntimeError("MD5 finished before every unit arrived")
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        self._zeros_until(self.blob_length)
        return self._digest.digest()

    def abandon(self) -> None:
        """Stop the hashing thread without a result (upload interrupted or failed)."""
        self._held.clear()
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        self._queue.put(None)
        self._thread.join(timeout=5)

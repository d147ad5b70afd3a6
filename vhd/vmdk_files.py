"""Where a VMDK's extent bytes come from: ``Window``, a byte range of an open file (a whole
extent file, or a member inside an OVA read in place), and the opener that finds extent
files named relative to their descriptor."""
from __future__ import annotations

import bisect
import os
import stat
from collections.abc import Callable, Iterator
from itertools import accumulate

from .errors import ImageIOError, TruncatedImageError, UnsupportedImageError
from .raw import FileImage, file_data_extents


class Window:
    """Bytes ``[base, base + size)`` of an open file, read by position (thread-safe)."""

    contiguous = True  # window offset + base = file offset

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



class ChunkedWindow(Window):
    """Several byte ranges of one open file read as one: a disk an OVA stores as chunk
    members (``ovf:chunkSize``), read in place without joining them."""

    contiguous = False

    def __init__(self, file: FileImage, pieces: list[tuple[int, int]], name: str) -> None:
        super().__init__(file, 0, sum(size for _, size in pieces), name=name, owner=False)
        self.pieces = pieces
        self.starts = list(accumulate((size for _, size in pieces), initial=0))[:-1]

    def _spans(self, offset: int, length: int) -> Iterator[tuple[int, int, int]]:
        """(file offset, count, position in the request) of each piece a read touches."""
        index = max(bisect.bisect_right(self.starts, offset) - 1, 0)
        done = 0
        while done < length and index < len(self.pieces):
            base, size = self.pieces[index]
            within = offset + done - self.starts[index]
            count = min(size - within, length - done)
            if count > 0:
                yield base + within, count, done
                done += count
            index += 1

    def pread_upto(self, offset: int, length: int) -> bytes:
        length = min(length, self.size - offset)
        if length <= 0:
            return b""
        return b"".join(self.file.pread_upto(where, count)
                        for where, count, _ in self._spans(offset, length))

    def pread_into(self, offset: int, buffer: memoryview) -> None:
        if offset + len(buffer) > self.size:
            raise TruncatedImageError(
                f"{self.path}: expected {len(buffer)} bytes at offset {offset}, past the end "
                f"of the file (file size {self.size})")
        for where, count, done in self._spans(offset, len(buffer)):
            self.file.pread_into(where, buffer[done:done + count])

    def data_extents(self, start: int, end: int) -> Iterator[tuple[int, int]]:
        end = min(end, self.size)
        for where, count, done in self._spans(start, max(end - start, 0)):
            for offset, length in file_data_extents(self.file.fd, where, where + count):
                yield start + done + offset - where, length

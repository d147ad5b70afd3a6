"""DEST's writes: whole 4 KiB blocks with O_DIRECT, the pieces off that grid buffered.

A converted image is written once and not read back soon. Through the page cache each of
its bytes costs a copy into a newly allocated page (on a virtual machine a page the host
must back first: 0.1–0.2 GB/s measured where direct writes ran at 1.2 GB/s) and evicts
what the machine had cached; qemu-img users pass ``-t none`` for the same reason. So the
blocks go from one page-aligned buffer per thread straight to the device. The pieces off
the grid (a VHD's 512-byte sectors at a run's ends, the footer) go through the ordinary
descriptor; they never share a block with a direct write. A filesystem that refuses
O_DIRECT at open (or, later, an alignment it needs) turns the rest of the copy buffered.
Which of the two the whole blocks take is convert's --cache (cache_policy.py measures
it for "auto" and switches with ``set_direct``).
"""
from __future__ import annotations

import errno
import mmap
import os
import threading
from collections.abc import Callable

# Direct writes cover whole blocks of this size, at offsets on its grid: a page at least,
# so a buffered piece and a direct write never share a page of the cache.
BLOCK = max(4096, mmap.PAGESIZE)
BUFFER = 4 * 1024 * 1024  # one page-aligned buffer of this size per writing thread
Buffer = bytes | bytearray | memoryview
CACHE_MODES = ("auto", "direct", "buffered")  # auto: cache_policy.py picks one


class Output:
    """The temporary file ``convert`` writes: ``fd`` (buffered) and, unless ``cache`` is
    "buffered" and where the filesystem allows, a second descriptor of ``path`` opened
    with O_DIRECT ("auto" starts direct; ``set_direct`` switches).

    (Buffered and direct writers do not share the copy: a write into a hole takes the
    file's lock, so one slow page-cache writer held the direct ones back, 17 s against 4
    for the same 4 GiB.)"""

    def __init__(self, fd: int, path: str, cache: str = "direct") -> None:
        self.fd = fd
        self._opened = _open_direct(fd, path) if cache != "buffered" else None
        self._direct_fd = self._opened  # None while buffered, or once a write was refused
        self._refused = False  # the filesystem refused a direct write: buffered for good
        self._local = threading.local()
        self._lock = threading.Lock()
        self.direct_bytes = 0  # what went to the device directly

    @property
    def direct(self) -> bool:
        """Whole blocks still go to the device directly."""
        return self._direct_fd is not None

    def set_direct(self, on: bool) -> None:
        """Send the writes that start from now on direct (where the filesystem takes
        them) or through the page cache (--cache auto's switches); writes under way
        finish as they began."""
        with self._lock:  # against a refusal landing meanwhile
            self._direct_fd = self._opened if on and not self._refused else None

    def write(self, data: Buffer, offset: int) -> None:
        """Write all of ``data`` at ``offset``."""
        view = memoryview(data).cast("B")
        head = min(-offset % BLOCK, len(view))
        body = (len(view) - head) // BLOCK * BLOCK if self.direct else 0
        if not body:
            pwrite_all(self.fd, view, offset)
            return
        pwrite_all(self.fd, view[:head], offset)
        done = head
        while done < head + body:
            count = min(BUFFER, head + body - done)
            buffer = self._buffer()
            buffer[:count] = view[done:done + count]
            self._write_buffer(buffer, count, offset + done)
            done += count
        if done < len(view):
            pwrite_all(self.fd, view[done:], offset + done)

    def copy_from(self, read_into: Callable[[int, memoryview], None], source: int, dest: int,
                  length: int) -> None:
        """Copy ``length`` stored bytes at ``source`` to ``dest``; ``read_into(offset,
        buffer)`` fills a buffer from the source (the reader's pread_into, which raises
        where the source ends), the thread's aligned one where the write goes direct."""
        done = 0
        while done < length:
            count = min(BUFFER, length - done)
            aligned = self.direct and not (dest + done) % BLOCK and not count % BLOCK
            target = self._buffer()[:count] if aligned else memoryview(bytearray(count))
            read_into(source + done, target)
            if aligned:
                self._write_buffer(target, count, dest + done)
            else:
                self.write(target, dest + done)
            done += count

    def close(self) -> None:
        self._direct_fd = None
        opened, self._opened = self._opened, None
        if opened is not None:
            os.close(opened)

    def _buffer(self) -> memoryview:
        buffer = getattr(self._local, "buffer", None)
        if buffer is None:
            buffer = self._local.buffer = memoryview(mmap.mmap(-1, BUFFER))
        return buffer

    def _write_buffer(self, buffer: memoryview, count: int, offset: int) -> None:
        """``buffer[:count]`` (whole blocks) at ``offset`` (on the grid), directly if the
        filesystem still takes direct writes."""
        done = 0
        direct_fd = self._direct_fd
        while done < count and direct_fd is not None:
            try:
                done += os.pwrite(direct_fd, buffer[done:count], offset + done)
            except OSError as error:
                if error.errno != errno.EINVAL:
                    raise
                with self._lock:  # an alignment this filesystem needs
                    self._refused = True
                    self._direct_fd = direct_fd = None
            if done % BLOCK:
                break  # a short direct write off the grid: the rest goes buffered
        with self._lock:
            self.direct_bytes += done
        if done < count:
            pwrite_all(self.fd, buffer[done:count], offset + done)


def _open_direct(fd: int, path: str) -> int | None:
    """A second descriptor of the file ``fd`` has open, with O_DIRECT; None where the
    filesystem refuses it (tmpfs before Linux 6.6, some FUSE and network filesystems):
    the copy then goes buffered."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return None
    for name in (f"/proc/self/fd/{fd}", path):  # the very file, even if renamed meanwhile
        try:
            return os.open(name, os.O_WRONLY | flag)
        except FileNotFoundError:
            continue  # no /proc here
        except OSError:
            return None
    return None


def pwrite_all(fd: int, data: Buffer, offset: int) -> None:
    """Write all of ``data`` at ``offset`` (os.pwrite may write less than asked)."""
    view = memoryview(data)
    while view:
        count = os.pwrite(fd, view, offset)
        view, offset = view[count:], offset + count

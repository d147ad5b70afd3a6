"""Writing guest data into a sparse output: zero blocks left as holes, stored runs
copied as they are (kernel-side or through an aligned buffer to a direct descriptor)."""
from __future__ import annotations

import errno
import os
import struct
import sys

from .image import DiskImage
from .mapped_source import MappedSource
from .output import Output
from .raw import FROM_ZERO, block_spans, has_holes

ZERO_BLOCK = 4096  # hole granularity of common filesystems


# <linux/fs.h>: _IOW(0x94, 13, struct file_clone_range {s64 fd; u64 offset, length, dest})
FICLONERANGE = 0x4020940D
# Formats whose runs() give offsets into the image's own file, stored verbatim.
KERNEL_COPY_FORMATS = frozenset({"raw", "vhd-fixed", "vhd-dynamic", "vhd-differencing", "vhdx"})


class StoredCopy:
    """Copies guest ranges from the source file to DEST as they are stored.

    Used only when the source file has holes: its writer left zeros out, so the extents
    hold data and copying them as stored keeps DEST as sparse as the source. To a direct
    DEST, blocks on the filesystem's grid in both files are first cloned (FICLONERANGE: a
    reflink on XFS, btrfs and other copy-on-write filesystems, where no data moves), the
    rest goes through the thread's aligned buffer (see output.py); to a buffered DEST
    on a block-device filesystem, blocks are cloned where they can be and the rest written
    from a mapping of the source (mapped_source.py); elsewhere, or where that is refused,
    ``os.copy_file_range`` moves them kernel-side (cloning where it can, or asking a
    network filesystem's server to copy), and a filesystem that refuses it turns the rest
    of the copy into pread/pwrite. Ranges that are not in
    the file (the parent's sectors of a differencing disk) are read and written with zero
    detection.
    """

    def __init__(self, image: DiskImage, source_fd: int, out: Output) -> None:
        self.image = image
        self.source_fd = source_fd
        self.read_into = image.pread_into  # type: ignore[attr-defined]  # a FileImage's
        self.out = out
        self.enabled = True  # copy_file_range still taken
        self.clones = sys.platform.startswith("linux")  # FICLONERANGE not refused yet
        self.own_data = getattr(image, "parent", None) is None  # all runs in this file
        # copies of a parent's image run on the workers, which may not use the mapping
        self.mapped = MappedSource.for_files(source_fd, out.fd) if self.own_data else None

    @classmethod
    def for_image(cls, image: DiskImage, out: Output) -> "StoredCopy | None":
        source_fd = getattr(image, "fd", None)
        size = getattr(image, "file_size", None)
        if ((not hasattr(os, "copy_file_range") and not out.direct)
                or not callable(getattr(image, "runs", None))
                or not callable(getattr(image, "pread_into", None))
                or getattr(image, "format", None) not in KERNEL_COPY_FORMATS
                or not isinstance(source_fd, int) or not isinstance(size, int)
                or not has_holes(source_fd, size)):
            return None
        return cls(image, source_fd, out)

    def in_kernel(self) -> bool:
        """Whether every chunk goes kernel-side now (a buffered DEST, copy_file_range not
        refused, no parent whose sectors are read and scanned in user space): such a copy
        gains nothing from more threads."""
        return self.enabled and not self.out.direct and self.own_data

    def close(self) -> None:
        """Unmap the source (a copy ended, or failed)."""
        if self.mapped is not None:
            self.mapped.close()

    def copy(self, offset: int, length: int) -> int:
        """Copy guest ``[offset, offset + length)``; the bytes written to DEST."""
        written = 0
        for run in self.image.runs(offset, length):  # type: ignore[attr-defined]
            if run.source >= 0:
                written += self._copy_run(run.source, run.offset, run.length)
            elif run.source != FROM_ZERO:  # a parent's, or stored other than verbatim
                written += write_nonzero(self.out, run.offset,
                                          self.image.read(run.offset, run.length))
        return written

    def _copy_run(self, source: int, dest: int, length: int) -> int:
        """A stored run: its whole ZERO_BLOCKs of DEST kernel-side, the partial blocks at
        either end read and written only if non-zero. (A file hole is a whole filesystem
        block, so the data a VHD stores 512 bytes off that grid brings zero sectors at
        both ends; copied as they are, they would allocate a block each in DEST.)"""
        head = min(-dest % ZERO_BLOCK, length)
        tail = (length - head) % ZERO_BLOCK
        written = 0
        for start, count, kernel in ((0, head, False), (head, length - head - tail, True),
                                     (length - tail, tail, False)):
            if not count:
                continue
            if kernel:
                written += self._copy_stored(source + start, dest + start, count)
            else:
                data = self.image.read(dest + start, count)
                written += write_nonzero(self.out, dest + start, data)
        return written

    def _clone(self, source: int, dest: int, length: int) -> bool:
        """Share ``length`` stored bytes with DEST instead of copying them, if the
        filesystem can (the range on its block grid in both files)."""
        if not self.clones or source % ZERO_BLOCK:
            return False
        import fcntl

        try:
            fcntl.ioctl(self.out.fd, FICLONERANGE,
                        struct.pack("=qQQQ", self.source_fd, source, length, dest))
        except OSError as error:
            # EINVAL: this range is off the filesystem's block grid (or past the source's
            # end, which the copy then reports). Anything else (EOPNOTSUPP on ext4 and
            # tmpfs, EXDEV, ENOTTY...) ends cloning; the copy reports a real I/O error.
            if error.errno != errno.EINVAL:
                self.clones = False
            return False
        return True

    def _copy_stored(self, source: int, dest: int, length: int) -> int:
        if self.out.direct:
            if not self._clone(source, dest, length):
                self.out.copy_from(self.read_into, source, dest, length)
            return length
        if self.mapped is not None and (self._clone(source, dest, length)
                                        or self.mapped.copy(self.out.fd, source, dest, length)):
            return length
        done = 0
        while done < length and self.enabled:
            try:
                count = os.copy_file_range(self.source_fd, self.out.fd, length - done,
                                           source + done, dest + done)
            except OSError as error:
                if error.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL,
                                       errno.EOPNOTSUPP):
                    raise
                self.enabled = False
                break
            if count == 0:
                break  # the source ends early: the read below says where
            done += count
        if done < length:  # copy_file_range refused: the same bytes through user space
            self.out.copy_from(self.read_into, source + done, dest + done, length - done)
        return length



ZEROS = bytes(ZERO_BLOCK)
NUMPY_FROM = 256 * 1024  # smaller buffers are judged block by block without numpy


def nonzero_runs(data: bytes, offset: int = 0) -> list[tuple[int, int]]:
    """``(start, stop)`` slices of ``data`` covering its non-zero ZERO_BLOCK-aligned blocks.

    Blocks are aligned to the absolute position ``offset`` of ``data[0]``, so a hole left
    by skipping one is a hole the filesystem can keep. Dense data (no run of a block's
    worth of zeros anywhere, non-zero partial blocks at the ends) is one run, found by a
    substring search; small buffers, such as the partial blocks a kernel-side copy leaves,
    are judged without numpy, whose import would cost a conversion 75 ms.
    """
    if not data:
        return []
    length = len(data)
    first_stop = min(length, ZERO_BLOCK - offset % ZERO_BLOCK)  # end of the first block
    if first_stop == length:  # a single (partial) block
        return [] if data == ZEROS[:length] else [(0, length)]
    last_start = max(first_stop, length - (offset + length) % ZERO_BLOCK) \
        if (offset + length) % ZERO_BLOCK else length - ZERO_BLOCK
    if (data.find(ZEROS) < 0 and _nonzero(data, 0, first_stop)
            and _nonzero(data, last_start, length)):
        return [(0, length)]
    blocks = [(start - offset, stop - offset) for _, _, start, stop
              in block_spans(offset, offset + length, ZERO_BLOCK)]
    if length < NUMPY_FROM:
        flags = [_nonzero(data, start, stop) for start, stop in blocks]
    else:
        flags = _numpy_flags(data, offset % ZERO_BLOCK)
    runs: list[tuple[int, int]] = []
    for (start, stop), nonzero in zip(blocks, flags):
        if not nonzero:
            continue
        if runs and runs[-1][1] == start:
            runs[-1] = (runs[-1][0], stop)
        else:
            runs.append((start, stop))
    return runs


def _nonzero(data: bytes, start: int, stop: int) -> bool:
    return data[start:stop] != ZEROS[:stop - start]


def _numpy_flags(data: bytes, lead: int) -> list[bool]:
    """One flag per ZERO_BLOCK-aligned block of ``data`` (vectorised: large buffers)."""
    import numpy as np
    padded_len = -(-(lead + len(data)) // ZERO_BLOCK) * ZERO_BLOCK
    if lead == 0 and padded_len == len(data):
        buffer = data
    else:
        buffer = bytes(lead) + data + bytes(padded_len - lead - len(data))
    words = np.frombuffer(buffer, dtype=np.uint64).reshape(-1, ZERO_BLOCK // 8)
    return (np.bitwise_or.reduce(words, axis=1) != 0).tolist()


def write_nonzero(out: Output, position: int, data: bytes) -> int:
    """Write the non-zero blocks of ``data`` (guest bytes at ``position``); the bytes
    written."""
    view = memoryview(data)
    written = 0
    for start, stop in nonzero_runs(data, position):
        out.write(view[start:stop], position + start)
        written += stop - start
    return written


__all__ = ["ZERO_BLOCK", "StoredCopy", "nonzero_runs", "write_nonzero"]

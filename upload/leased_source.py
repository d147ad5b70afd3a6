"""Units read straight from the source's page cache, through a read-only mapping that a
read lease keeps safe.

Reading a unit into a buffer copies it once more than needed: the checksum, the zero
search and the socket can all read the page cache themselves through a mapping (about
0.2 s of CPU per GiB here). A mapping has one danger: a file cut short while Python reads
a mapped page past its new end kills the process with SIGBUS. So the source is mapped only
under a read lease (fcntl F_SETLEASE): the kernel then holds back any other open of the
file for writing, and any truncate, until the lease is given back, and tells the holder
(F_GETLEASE stops answering F_RDLCK). Every read of the mapping in user space happens in
a ``guard()``; a guard entered once a break is pending refuses (SourceWithdrawn), and the
lease goes back as soon as the last guard open leaves: the writer waits milliseconds, the
units after it are read into buffers, and one whose mapped read was refused is read again
that way. Reads the kernel makes itself (a plain socket's sendmsg) fail with EFAULT, never
SIGBUS, and are not guarded.

A unit counts as sent from its mapping only if the lease was still held when its last
request was answered: until then no one could have changed the file. Otherwise (a writer
got the file meanwhile, and what went may differ from what is there now, or a checksum
failed on it) the unit is read into a buffer and put again.

The break's notice is SIGURG (F_SETSIG), whose default action is to ignore it: no signal
handler is installed and no thread has to be the main one. Only filesystems on a block
device qualify (ext4, XFS...): on NFS, SMB, FUSE or an overlay another machine or layer can
change the file without breaking a lease here. Where any step is refused (not Linux,
another process has the file open for writing, such a filesystem, a lease-break time too
short) there is no mapping and nothing else changes. What is left to chance: a process
stopped (SIGSTOP) for longer than the lease-break time inside a guard, or a disk read error
on a page evicted between its population and its checksum, ends in SIGBUS where a read would
have raised.
"""
from __future__ import annotations

import mmap
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from azlift.vhd.mapped_source import POPULATE_READ

from .http11 import BodyWithdrawn

# Smaller ranges are read into buffers: mapping, populating and unmapping cost about as
# much as copying 256-512 KiB here (and unmapping interrupts the other cores' threads).
MIN_MAPPED = 1024 * 1024
LEASE_BREAK_TIME = Path("/proc/sys/fs/lease-break-time")
MIN_BREAK_S = 5  # a guard (a 4 MiB checksum, or one TLS piece) must end well within it


class SourceWithdrawn(BodyWithdrawn):
    """The lease is being broken: the mapping may not be read in user space any more."""


class LeasedSource:
    """A read lease on the source file and the mappings made under it."""

    def __init__(self, fd: int, fcntl: ModuleType) -> None:
        self.fd = fd
        self._fcntl = fcntl  # checked by take(): it has leases
        self._lock = threading.Lock()
        self._active = 0  # guards open
        self._withdrawn = False
        self._released = False
        self._closing = False

    @classmethod
    def take(cls, path: str, same_as: int) -> LeasedSource | None:
        """A lease on ``path`` (the file open as ``same_as``), or None where refused."""
        fcntl = _fcntl()
        if fcntl is None or POPULATE_READ is None or not _break_time_allows():
            return None
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return None
        try:
            ours, theirs = os.fstat(fd), os.fstat(same_as)
            if not os.path.samestat(ours, theirs):
                raise OSError("not the same file")
            if os.major(ours.st_dev) == 0:  # see the module's docstring
                raise OSError("not on a block device's filesystem")
            fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)
            fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
        except OSError:  # EAGAIN: open for writing elsewhere; EINVAL: no leases there
            os.close(fd)
            return None
        return cls(fd, fcntl)

    @property
    def withdrawn(self) -> bool:
        return self._withdrawn

    def map(self, offset: int, length: int) -> mmap.mmap | None:
        """The file's bytes ``[offset, offset + length)`` mapped and populated, or None
        (withdrawn, under MIN_MAPPED, not page-aligned, or past the file's end: read them
        another way)."""
        if self._withdrawn or offset % mmap.ALLOCATIONGRANULARITY or length < MIN_MAPPED:
            return None
        try:
            mapping = mmap.mmap(self.fd, length, offset=offset, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            return None
        try:
            # the kernel touches every page: a range past the end fails here (EFAULT)
            mapping.madvise(POPULATE_READ, 0, length)
        except OSError:
            mapping.close()
            return None
        return mapping

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Hold the lease while the block reads the mapping; SourceWithdrawn if a break
        is pending (the block does not run)."""
        with self._lock:
            if not self._withdrawn and self._breaking():
                self._withdraw()
            if self._withdrawn:
                raise SourceWithdrawn("the source is being opened for writing")
            self._active += 1
        try:
            yield
        finally:
            with self._lock:
                self._active -= 1
                if not self._withdrawn and self._breaking():  # asked while it was open
                    self._withdraw()
                elif self._withdrawn and not self._active and self._closing:
                    self._end()
                elif self._withdrawn and not self._active:
                    self._release()

    def poll(self) -> None:
        """Give the lease back if a break is pending and no guard is open: call it now
        and then, so a writer waits for no unit to start."""
        with self._lock:
            if not self._withdrawn and self._breaking():
                self._withdraw()

    def close(self) -> None:
        """Map nothing more; give the lease back and close the descriptor now, or as the
        last guard still open leaves (a worker an interrupt left running)."""
        with self._lock:
            self._withdrawn = self._closing = True
            if not self._active:
                self._end()

    def _withdraw(self) -> None:
        self._withdrawn = True
        if not self._active:
            self._release()

    def _breaking(self) -> bool:
        fcntl = self._fcntl
        try:
            return fcntl.fcntl(self.fd, fcntl.F_GETLEASE) != fcntl.F_RDLCK
        except OSError:
            return True

    def _end(self) -> None:
        self._release()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _release(self) -> None:
        if self._released or self.fd < 0:
            return
        self._released = True
        fcntl = self._fcntl
        try:
            fcntl.fcntl(self.fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        except OSError:
            pass  # the kernel took it back already (the break time ran out)


def close_mapping(mapping: mmap.mmap) -> None:
    """Unmap now, or when the last view of it is gone (a request hook may keep one)."""
    try:
        mapping.close()
    except BufferError:
        pass


def _fcntl() -> ModuleType | None:
    """The fcntl module where it has leases, else None."""
    try:
        import fcntl
    except ImportError:
        return None
    if not all(hasattr(fcntl, name) for name in ("F_SETLEASE", "F_GETLEASE", "F_SETSIG")):
        return None
    return fcntl


def _break_time_allows() -> bool:
    try:
        return int(LEASE_BREAK_TIME.read_text().split()[0]) >= MIN_BREAK_S
    except (OSError, ValueError, IndexError):
        return False

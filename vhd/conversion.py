"""Write an Azure-ready fixed VHD into a new file (``fix`` in in_place.py works in place).

``convert`` touches only the source's allocated extents and writes them at their own
offset into a file truncated to full size, so zeros stay holes. Where the source file
marks its zeros as holes (a sparse raw file, a qemu-made dynamic VHD or VHDX: the extents
already leave them out) and says where each guest byte lives (``runs``), the stored bytes
are copied as they are. Otherwise (a fully allocated file, a differencing parent's
sectors, a format without ``runs``) chunks are read, their zero blocks skipped at memory
speed (a substring search finds dense data, numpy judges the rest block by block), the
rest written: zero detection where it is what keeps the output sparse. The data goes
through the page cache (kernel-side with ``os.copy_file_range`` where it can) while that
keeps ahead of the device, else to the device as whole 4 KiB blocks with O_DIRECT where
the filesystem allows (cache_policy.py measures which, output.py writes). It writes
to a hidden temporary name beside DEST and renames at the end: DEST appears complete or
not at all. ``footer_for`` is the footer both write, and the one ``upload`` synthesizes.
"""
from __future__ import annotations

import os
import stat
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from . import guids
from ._vhd_structs import (
    FOOTER_SIZE,
    MIB,
    Footer,
    azure_virtual_size,
    fixed_footer,
    vhd_timestamp,
)
from .check import (
    MAX_DATA_DISK_SIZE,
    Finding,
    check_output_rules,
    source_findings,
)
from .errors import (
    ImageIOError,
    InvalidOptionError,
    InvalidSizeError,
    OutputExistsError,
    SameFileError,
)
from .image import DiskImage
from .new_file import (
    create_temporary,
    exists_error,
    fsync_directory,
    publish,
    umask,
    unlink_quietly,
)
from .output import CACHE_MODES, Output, pwrite_all
from .sparse_write import (
    KERNEL_COPY_FORMATS,
    ZERO_BLOCK,
    StoredCopy,
    nonzero_runs,
    write_nonzero,
)

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

    from .cache_policy import AdaptiveCache

__all__ = ["ConvertResult", "Progress", "ZERO_BLOCK", "convert", "footer_for", "nonzero_runs",
           "pwrite_all", "target_size", "write_nonzero"]

Progress = Callable[[int, int], None]
CHUNK = 4 * MIB  # read size: a whole number of VHD (2 MiB) and VHDX (1+ MiB) blocks
COPY_WORKERS = min(4, os.cpu_count() or 1)
COPY_WINDOW = 2 * COPY_WORKERS  # chunks in flight: bounded memory (window x 4 MiB)
# The largest CHS geometry tells readers that follow Virtual PC's rule (size = C*H*S, as
# qemu does for unknown creators) to trust the current size instead; Azure ignores it.
MAX_GEOMETRY = (65535, 16, 255)
FOOTER_ID_NAMESPACE = guids.parse("7a1f3c52-5d0e-4b8e-9c1a-a21f7d0e6b35")


# --- the footer azlift writes (shared with upload, which synthesizes the same one) -------
def footer_for(image: DiskImage, virtual_size: int) -> Footer:
    """The footer of the fixed VHD azlift makes from ``image``: the same bytes every time.

    The unique id is the source's own (VHD footer unique id, VHDX virtual disk id) when it
    has one, else a uuid5 of the source file's real path, size and mtime; the timestamp is
    the source's mtime. So ``convert`` and ``upload`` agree byte for byte.
    """
    info = _stat(image.path)
    unique_id = _source_unique_id(image)
    if unique_id is None:
        identity = (f"{os.path.realpath(image.path)}:{info.st_size}:{info.st_mtime_ns}"
                    if info else f"{image.path}:{image.virtual_size}")
        unique_id = guids.name_guid(FOOTER_ID_NAMESPACE, identity)
    timestamp = vhd_timestamp(info.st_mtime) if info else 0
    footer = fixed_footer(virtual_size, unique_id=unique_id, timestamp=timestamp)
    return footer._replace(cylinders=MAX_GEOMETRY[0], heads=MAX_GEOMETRY[1],
                           sectors_per_track=MAX_GEOMETRY[2]).with_checksum()


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except (OSError, ValueError):
        return None


def _source_unique_id(image: DiskImage) -> bytes | None:
    candidates = [getattr(getattr(image, "footer", None), "unique_id", None),
                  getattr(image, "virtual_disk_id", None), getattr(image, "unique_id", None)]
    for value in candidates:
        value = getattr(value, "bytes", value)  # a uuid.UUID, from a caller's own reader
        if isinstance(value, str):
            try:
                value = guids.parse(value)
            except ValueError:
                continue
        if isinstance(value, bytes) and len(value) == 16 and any(value):
            return value
    return None


# --- convert --------------------------------------------------------------------------
class ConvertResult(NamedTuple):
    """What ``convert`` wrote."""

    source: str
    dest: str
    source_format: str
    source_virtual_size: int
    virtual_size: int
    data_bytes: int  # bytes read from the source's allocated extents
    written_bytes: int  # non-zero bytes written (the rest stayed holes)
    allocated_bytes: int  # what DEST occupies on disk
    unique_id: str
    seconds: float
    findings: tuple[Finding, ...] = ()
    direct_bytes: int = 0  # of written_bytes, those that went straight to the device
    cache: str = "direct"  # "direct", "buffered" or "auto" (switching as phases say)
    cache_phases: tuple[tuple[str, int], ...] = ()  # auto: (mode, after bytes written)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "dest": self.dest, "source_format": self.source_format,
                "source_virtual_size": self.source_virtual_size,
                "virtual_size": self.virtual_size, "file_size": self.virtual_size + FOOTER_SIZE,
                "data_bytes": self.data_bytes, "written_bytes": self.written_bytes,
                "allocated_bytes": self.allocated_bytes, "direct_bytes": self.direct_bytes,
                "cache": self.cache,
                "cache_phases": [{"mode": mode, "after_bytes_written": start}
                                 for mode, start in self.cache_phases],
                "unique_id": self.unique_id,
                "seconds": round(self.seconds, 3),
                "findings": [f.to_dict() for f in self.findings]}


def target_size(source_size: int, size: int | None) -> int:
    """The fixed VHD's virtual size: the source's (or ``size``) rounded up to a whole MiB."""
    if size is not None and size < source_size:
        raise InvalidSizeError(
            f"requested size {size} is smaller than the source's virtual size {source_size}; "
            f"expected at least {source_size} (azlift never cuts data)")
    target = azure_virtual_size(max(source_size, size or 0))
    if target > MAX_DATA_DISK_SIZE:
        raise InvalidSizeError(
            f"the fixed VHD would be {target} bytes, above the largest disk Azure accepts "
            f"({MAX_DATA_DISK_SIZE} bytes, 32767 GiB)")
    return target


def convert(source: DiskImage | str, dest: str, *, size: int | None = None,
            force: bool = False, progress: Progress | None = None,
            format: str | None = None, durable: bool = False,  # noqa: A002
            disk: int | None = None, cache: str = "auto") -> ConvertResult:
    """Write ``source`` as an Azure-ready fixed VHD at ``dest`` (sparse, atomic rename);
    ``disk`` picks one disk of an OVA.

    ``durable`` flushes the data to the device before the rename, so DEST survives a
    power loss too (slower: the whole image is written out before returning).
    ``cache`` says how DEST is written (output.py): "direct" (whole blocks straight to
    the device where the filesystem allows), "buffered" (all through the page cache) or
    "auto" (the page cache while it keeps ahead of the device: cache_policy.py).
    """
    if not isinstance(source, (str, os.PathLike)):
        return _convert_image(source, os.fspath(dest), size, force, progress, durable,
                              cache)
    from .detect import open_image

    with open_image(os.fspath(source), format, disk) as image:
        return _convert_image(image, os.fspath(dest), size, force, progress, durable,
                              cache)


def _convert_image(image: DiskImage, dest: str, size: int | None, force: bool,
                   progress: Progress | None, durable: bool, cache: str) -> ConvertResult:
    started = time.monotonic()
    if cache not in CACHE_MODES:
        raise InvalidOptionError(f"--cache must be one of {', '.join(CACHE_MODES)}, "
                                 f"not {cache!r}")
    _refuse_source_as_dest(image, dest)
    if os.path.lexists(dest) and not force:
        raise exists_error(dest)
    if os.path.isdir(dest):
        raise OutputExistsError(f"{dest} is a directory, expected a file name for the VHD")
    virtual_size = target_size(image.virtual_size, size)
    footer = footer_for(image, virtual_size)
    # loaded here, not with the package: `vhd check` and `inspect` never write an image
    from .cache_policy import AdaptiveCache, choose_cache, fits_easily, machine_room

    adaptive = None
    if cache == "auto":
        room = None if durable else machine_room()
        cache = choose_cache(room, durable)
        if cache == "auto":
            adaptive = AdaptiveCache(buffered_first=fits_easily(_stored_bytes(image), room))
    directory = os.path.dirname(os.path.abspath(dest))
    try:
        fd, temp = create_temporary(directory, f".{os.path.basename(dest)}.azlift-tmp-")
    except OSError as error:
        raise ImageIOError(f"cannot create a file in {directory}: {error.strerror}") from error
    out: Output | None = None
    try:
        try:
            os.ftruncate(fd, virtual_size)
            out = Output(fd, temp, cache)
            if adaptive is not None and not out.direct:  # the filesystem refused O_DIRECT
                cache, adaptive = "buffered", None
            elif adaptive is not None:
                out.set_direct(adaptive.mode == "direct")
            data_bytes, written = _copy_extents(image, out, image.virtual_size, progress,
                                                adaptive)
            direct_bytes = out.direct_bytes
            pwrite_all(fd, footer.pack(), virtual_size)
            os.fchmod(fd, 0o666 & ~umask())
            if durable:
                os.fsync(fd)
            allocated = os.fstat(fd).st_blocks * 512
        finally:
            try:
                if out is not None:
                    out.close()
            finally:
                os.close(fd)
        publish(temp, dest, force)
    except BaseException as error:
        unlink_quietly(temp)
        if isinstance(error, OSError):
            raise ImageIOError(f"cannot write {dest}: {error.strerror or error}") from error
        raise
    if durable:
        fsync_directory(directory)
    return ConvertResult(
        source=image.path, dest=dest, source_format=image.format,
        source_virtual_size=image.virtual_size, virtual_size=virtual_size,
        data_bytes=data_bytes, written_bytes=written, allocated_bytes=allocated,
        unique_id=footer.unique_id_str, seconds=time.monotonic() - started,
        findings=(*source_findings(image), *check_output_rules(virtual_size)),
        direct_bytes=direct_bytes, cache=cache,
        cache_phases=tuple(adaptive.phases) if adaptive else ())


def _stored_bytes(image: DiskImage) -> int:
    """At least what a copy of ``image`` writes: what the files of the image and its
    parents occupy, for formats stored verbatim in that one file (KERNEL_COPY_FORMATS).
    Any other (a device, data in other files as a VMDK's extents, compressed data) counts
    as its whole virtual size."""
    total, node, depth = 0, image, 0
    while node is not None and depth < 64:
        info = _stat(node.path)
        verbatim = (info is not None and stat.S_ISREG(info.st_mode)
                    and getattr(node, "format", None) in KERNEL_COPY_FORMATS)
        total += info.st_blocks * 512 if verbatim else node.virtual_size
        node, depth = getattr(node, "parent", None), depth + 1
    return total


def _refuse_source_as_dest(image: DiskImage, dest: str) -> None:
    """DEST may be neither the source, nor a file it reads (a VMDK's extent files, the OVA
    that holds it), nor any parent in its differencing chain."""
    chain: list[str] = []
    node: Any = image
    for _ in range(64):
        if node is None:
            break
        chain.append(node.path)
        chain.extend(getattr(node, "source_files", tuple)())
        node = getattr(node, "parent", None)
    for path in chain:
        same = os.path.realpath(path) == os.path.realpath(dest)
        if not same and os.path.exists(dest):
            try:
                same = os.path.samefile(path, dest)
            except OSError:
                same = False
        if same and path == image.path:
            raise SameFileError(f"{dest} is the source image ({path}); expected a different "
                                f"destination (`azlift vhd fix` works in place)")
        if same:
            raise SameFileError(f"{dest} is a file the source image {image.path} reads; "
                                f"expected a destination outside the source")


def _clipped_extents(image: DiskImage, limit: int) -> Iterator[tuple[int, int]]:
    return ((offset, min(offset + length, limit) - offset)
            for offset, length in image.extents() if offset < limit)


def _copy_extents(image: DiskImage, out: Output, limit: int, progress: Progress | None,
                  adaptive: AdaptiveCache | None) -> tuple[int, int]:
    """Copy the non-zero blocks of ``image``'s extents; (bytes read, bytes written).

    A small window of worker threads each reads, scans and writes whole chunks (pread
    and pwrite release the GIL, so reading, zero-scanning and device writes overlap);
    progress is reported, and ``adaptive`` fed, from the calling thread, in order. A
    chunk copied kernel-side into the page cache runs in the calling thread instead:
    there is nothing to overlap (buffered writers to one file take its lock in turn),
    and handing 4 MiB chunks to threads made that copy about a third slower.
    """
    # Chunks are made as they are submitted: a disk of many TiB costs no job list.
    jobs = (chunk for offset, length in _clipped_extents(image, limit)
            for chunk in _chunks(offset, length))
    total = 0
    if progress:  # a second walk of the extents (SEEK_DATA/SEEK_HOLE), only for the total
        total = sum(length for _, length in _clipped_extents(image, limit))
        progress(0, total)

    def advanced(done: int, written: int) -> None:
        if progress:
            progress(done, total)
        if adaptive is not None and (mode := adaptive.record(written)) is not None:
            out.set_direct(mode == "direct")

    done = written = 0
    if adaptive is not None:
        adaptive.start()

    stored = StoredCopy.for_image(image, out)

    def copy(job: tuple[int, int]) -> int:
        position, count = job
        if stored is not None:
            return stored.copy(position, count)
        return write_nonzero(out, position, image.read(position, count))

    pending: deque[tuple[Future[int], int]] = deque()
    pool: ThreadPoolExecutor | None = None  # made for the first chunk that is not inline
    try:
        for job in jobs:
            if stored is not None and stored.in_kernel():
                while pending:
                    done, written = _collect(pending, done, written, advanced)
                written += copy(job)
                done += job[1]
                advanced(done, written)
                continue
            if pool is None:
                # (with logging: about 15 ms to import, which a kernel-side copy never pays)
                from concurrent.futures import ThreadPoolExecutor

                pool = ThreadPoolExecutor(max_workers=COPY_WORKERS)
            pending.append((pool.submit(copy, job), job[1]))
            while len(pending) >= COPY_WINDOW or (pending and pending[0][0].done()):
                done, written = _collect(pending, done, written, advanced)
        while pending:
            done, written = _collect(pending, done, written, advanced)
    except BaseException:
        for future, _ in pending:
            future.cancel()
        raise
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
        if stored is not None:
            stored.close()
    return done, written


def _collect(pending: deque[tuple[Future[int], int]], done: int, written: int,
             advanced: Callable[[int, int], None]) -> tuple[int, int]:
    future, count = pending.popleft()
    written += future.result()
    done += count
    advanced(done, written)
    return done, written


def _chunks(offset: int, length: int) -> Iterator[tuple[int, int]]:
    """``[offset, offset + length)`` cut at CHUNK boundaries (reads stay block-aligned)."""
    end = offset + length
    while offset < end:
        count = min(CHUNK - offset % CHUNK, end - offset)
        yield offset, count
        offset += count

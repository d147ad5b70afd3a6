"""VHD readers: fixed, dynamic and differencing disks behind one ``read``.

The ``VhdImage`` holds the file and the footer; a layout strategy maps a guest range to
runs (bytes in the file, zeros, or the parent's bytes). ``read`` issues one pread per
contiguous run, and ``extents`` comes from the same map (the file's holes for fixed disks,
the BAT for dynamic and differencing ones).
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, NamedTuple, Protocol

from ._vhd_structs import (
    FOOTER_SIZE,
    SECTOR,
    SHORT_FOOTER_SIZE,
    Footer,
    footer_fields,
    footer_problem,
    parse_footer,
)
from .errors import ChecksumError, ImageFormatError, TruncatedImageError
from .raw import FileImage, align_extents, file_data_extents

# Where a run's bytes come from (see ``Run.source``).
FROM_ZERO = -1
FROM_PARENT = -2


class Run(NamedTuple):
    """A guest range and where its bytes live: a file offset, FROM_ZERO or FROM_PARENT."""

    offset: int
    length: int
    source: int


class Layout(Protocol):
    """How one kind of VHD maps guest bytes to the file."""

    def runs(self, offset: int, length: int) -> Iterator[Run]: ...

    def extents(self) -> Iterator[tuple[int, int]]: ...

    def describe(self) -> dict[str, Any]: ...


class VhdImage(FileImage):
    """A VHD file of any subformat; ``layout`` holds what differs between them."""

    def __init__(self, path: str | os.PathLike[str], *, _depth: int = 0,
                 _seen: frozenset[str] = frozenset()) -> None:
        super().__init__(path)
        try:
            self.footer, self.footer_offset, self.footer_state = locate_footer(self)
            self.parent: VhdImage | None = None
            self.layout: Layout = self._make_layout(_depth, _seen)
        except BaseException:
            self.close()
            raise

    def _make_layout(self, depth: int, seen: frozenset[str]) -> Layout:
        footer = self.footer
        if footer.disk_type == 2:
            self.format = "vhd-fixed"
            return FixedLayout(self)
        from ._vhd_sparse import sparse_layout  # dynamic and differencing disks
        return sparse_layout(self, depth, seen)

    @property
    def virtual_size(self) -> int:
        return self.footer.current_size

    @property
    def data_size(self) -> int:
        """Bytes before the footer (for a fixed disk: the guest data as stored)."""
        return self.footer_offset

    def read(self, offset: int, length: int) -> bytes:
        """Guest bytes ``[offset, offset + length)``, one pread per contiguous run."""
        self.check_range(offset, length)
        runs = list(self.layout.runs(offset, length))
        if len(runs) == 1 and runs[0].source >= 0:
            return self.pread(runs[0].source, length)
        out = bytearray(length)
        for run in runs:
            start = run.offset - offset
            if run.source >= 0:
                out[start:start + run.length] = self.pread(run.source, run.length)
            elif run.source == FROM_PARENT and self.parent is not None:
                out[start:start + run.length] = self.parent_read(run.offset, run.length)
        return bytes(out)

    def parent_read(self, offset: int, length: int) -> bytes:
        """The parent's bytes; a parent smaller than the child reads as zeros beyond its end."""
        assert self.parent is not None
        available = max(0, min(length, self.parent.virtual_size - offset))
        data = self.parent.read(offset, available) if available else b""
        return data + bytes(length - available)

    def extents(self) -> Iterator[tuple[int, int]]:
        return self.layout.extents()

    def allocated_bytes(self) -> int:
        return sum(length for _, length in self.extents())

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "path": self.path,
            "format": self.format,
            "virtual_size": self.virtual_size,
            "file_size": self.file_size,
            "allocated_bytes": self.allocated_bytes(),
            "footer": footer_fields(self.footer),
            "footer_state": self.footer_state,
        }
        info.update(self.layout.describe())
        info.setdefault("parents", [])
        return info

    def close(self) -> None:
        parent = getattr(self, "parent", None)
        if parent is not None:
            parent.close()
        super().close()


def locate_footer(image: FileImage) -> tuple[Footer, int, dict[str, str]]:
    """The footer to trust, the offset where guest data ends, and the state of each copy.

    The footer is at the end of the file (512 bytes, or 511 for old tools); dynamic disks
    also keep a copy at offset 0, which is used when the one at the end is damaged.
    """
    size = image.file_size
    state: dict[str, str] = {}
    candidates: list[tuple[Footer, int, str]] = []
    end_footer = None
    for footer_size in (FOOTER_SIZE, SHORT_FOOTER_SIZE):
        if size >= footer_size:
            end_footer = parse_footer(image.pread(size - footer_size, footer_size))
            if end_footer is not None:
                candidates.append((end_footer, size - footer_size, "end"))
                break
    head = parse_footer(image.pread_upto(0, FOOTER_SIZE)) if size >= FOOTER_SIZE else None
    if head is not None and head.disk_type != 2 and (end_footer is None or size >= 2 * FOOTER_SIZE):
        data_end = candidates[0][1] if candidates else size
        candidates.append((head, data_end, "copy"))
    if not candidates:
        raise ImageFormatError(
            f"{image.path}: expected a VHD footer (cookie 'conectix') at the end of the "
            f"file, found none (file size {size})")
    problems = []
    chosen = None
    for footer, data_end, where in candidates:
        problem = footer_problem(footer)
        state[where] = "ok" if problem is None else "bad"
        if problem is None and chosen is None:
            chosen = (footer, data_end)
        elif problem is not None:
            problems.append(f"{where}: {problem}")
    if "end" not in state:
        state["end"] = "missing"
    if chosen is None:
        error = ChecksumError if all("checksum" in p for p in problems) else ImageFormatError
        raise error(f"{image.path}: " + "; ".join(problems))
    return chosen[0], chosen[1], state


class FixedLayout:
    """A fixed disk: guest byte N is file byte N, the footer follows the data."""

    def __init__(self, image: VhdImage) -> None:
        self.image = image
        size = image.footer.current_size
        if size % SECTOR:
            raise ImageFormatError(
                f"{image.path}: fixed VHD current size {size} is not a multiple of 512")
        if size > image.data_size:
            raise TruncatedImageError(
                f"{image.path}: the footer says the disk holds {size} bytes, the file has "
                f"only {image.data_size} before the footer")

    def runs(self, offset: int, length: int) -> Iterator[Run]:
        yield Run(offset, length, offset)

    def extents(self) -> Iterator[tuple[int, int]]:
        size = self.image.virtual_size
        return align_extents(file_data_extents(self.image.fd, 0, size), size)

    def describe(self) -> dict[str, Any]:
        return {"data_size": self.image.data_size}

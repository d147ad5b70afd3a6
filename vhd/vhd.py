"""VHD readers: fixed, dynamic and differencing disks behind one ``read``.

The ``VhdImage`` holds the file and the footer; a layout strategy maps a guest range to
runs (bytes in the file, zeros, or the parent's bytes). ``read`` issues one pread per
contiguous run, and ``extents`` comes from the same map (the file's holes for fixed disks,
the BAT for dynamic and differencing ones).
"""
from __future__ import annotations

import heapq
import os
from array import array
from collections.abc import Iterator
from typing import Any, Protocol

from . import guids
from ._vhd_structs import (
    DISK_TYPE_DIFFERENCING,
    DISK_TYPE_FIXED,
    DYNAMIC_HEADER_SIZE,
    FOOTER_SIZE,
    LOCATOR_ABSOLUTE,
    LOCATOR_RELATIVE,
    MAX_LOCATOR_LENGTH,
    SECTOR,
    SHORT_FOOTER_SIZE,
    UNALLOCATED,
    DynamicHeader,
    Footer,
    bitmap_size,
    blocks_for,
    dynamic_header_problem,
    footer_fields,
    footer_problem,
    parse_footer,
    vhd_time_iso,
)
from .block_tables import be_u32_table, bit_runs, bit_string, used_entries
from .errors import (
    ChecksumError,
    ImageFormatError,
    ParentChainError,
    ParentMismatchError,
    ParentNotFoundError,
    TruncatedImageError,
)
from .raw import (
    FROM_PARENT,
    FROM_ZERO,
    FileImage,
    Run,
    align_extents,
    block_spans,
    coalesce_runs,
    file_data_extents,
    merge_extents,
    stored_block_extents,
)

# How many parents a differencing chain may have before azlift refuses it.
MAX_CHAIN_DEPTH = 32


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
        if footer.disk_type == DISK_TYPE_FIXED:
            self.format = "vhd-fixed"
            return FixedLayout(self)
        layout = SparseLayout(self)
        if footer.disk_type == DISK_TYPE_DIFFERENCING:
            self.format = "vhd-differencing"
            self.parent = open_parent(self, layout.header, depth, seen)
        else:
            self.format = "vhd-dynamic"
        return layout

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
        return self.read_runs(offset, length, self.layout.runs(offset, length))

    def runs(self, offset: int, length: int) -> Iterator[Run]:
        """Where each part of a guest range lives: this file, zeros, or the parent."""
        return self.layout.runs(offset, length)

    def extents(self) -> Iterator[tuple[int, int]]:
        return self.layout.extents()

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            **self.describe_file(),
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
    if size < SHORT_FOOTER_SIZE:
        raise TruncatedImageError(
            f"{image.path}: {size} bytes is too small for a VHD (its footer alone is 512)")
    state: dict[str, str] = {}
    candidates: list[tuple[Footer, int, str]] = []  # (footer, where data ends, which copy)
    data_end = size
    for footer_size in (FOOTER_SIZE, SHORT_FOOTER_SIZE):
        if size < footer_size:
            continue
        end_footer = parse_footer(image.pread(size - footer_size, footer_size))
        if end_footer is not None:
            data_end = size - footer_size
            candidates.append((end_footer, data_end, "end"))
            break
    head = parse_footer(image.pread_upto(0, FOOTER_SIZE)) if size > FOOTER_SIZE else None
    if head is not None and head.disk_type != DISK_TYPE_FIXED:
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


class SparseLayout:
    """Dynamic and differencing disks: a BAT of blocks, each after its sector bitmap.

    The BAT is read once, bounded by the file size (never by a claimed size). Unallocated
    blocks read as zeros (dynamic) or from the parent (differencing); inside an allocated
    block of a differencing disk the sector bitmap says which sectors are the child's.
    """

    def __init__(self, image: VhdImage) -> None:
        self.image = image
        path = image.path
        footer = image.footer
        offset = footer.data_offset
        if offset < FOOTER_SIZE or offset + DYNAMIC_HEADER_SIZE > image.data_size:
            raise TruncatedImageError(
                f"{path}: the dynamic header offset {offset} is outside the file "
                f"(expected 512 .. {max(image.data_size - DYNAMIC_HEADER_SIZE, 0)})")
        self.header = DynamicHeader.unpack(image.pread(offset, DYNAMIC_HEADER_SIZE))
        problem = dynamic_header_problem(self.header, footer.current_size)
        if problem is not None:
            error = ChecksumError if "checksum" in problem else ImageFormatError
            raise error(f"{path}: {problem}")
        self.block_size = self.header.block_size
        self.bitmap_size = bitmap_size(self.block_size)
        self.block_count = blocks_for(footer.current_size, self.block_size)
        self.differencing = footer.disk_type == DISK_TYPE_DIFFERENCING
        self.bat = self._read_bat()
        self.allocated = used_entries(self.bat, UNALLOCATED)  # block numbers, ascending
        self._check_blocks_in_file()
        self._bitmap_cache: dict[int, str] = {}

    def _read_bat(self) -> array:
        image, header = self.image, self.header
        table_end = header.table_offset + 4 * self.block_count
        if table_end > image.data_size:
            raise TruncatedImageError(
                f"{image.path}: the BAT ends at offset {table_end}, past the end of the "
                f"data ({image.data_size} bytes)")
        return be_u32_table(image.pread(header.table_offset, 4 * self.block_count))

    def _check_blocks_in_file(self) -> None:
        """Every allocated block (bitmap and data) must end inside the file's data; the one
        ending furthest out is named (the lowest, of several). Its entry is the largest
        but for the last block, which may be shorter: judged apart."""
        image, last = self.image, self.block_count - 1
        if last < 0:  # a disk of size zero has no blocks
            return
        ends = []
        entries = set(self.bat[:last])  # C-speed, even for a table of a million entries
        entries.discard(UNALLOCATED)
        if entries:
            entry = max(entries)
            ends.append((entry * SECTOR + self.bitmap_size + self.block_size,
                         self.bat.index(entry)))
        if self.bat[last] != UNALLOCATED:
            ends.append((self.bat[last] * SECTOR + self.bitmap_size + image.virtual_size
                         - last * self.block_size, last))
        if not ends:
            return
        end, block = max(ends, key=lambda pair: (pair[0], -pair[1]))
        if end > image.data_size:
            raise TruncatedImageError(
                f"{image.path}: BAT entry {block} points to a block ending at offset "
                f"{end}, past the end of the data ({image.data_size} bytes)")

    # -- the map ------------------------------------------------------------------------
    def runs(self, offset: int, length: int) -> Iterator[Run]:
        return coalesce_runs(run for span in block_spans(offset, offset + length, self.block_size)
                             for run in self._block_runs(*span))

    def _block_runs(self, block: int, block_start: int, start: int, stop: int) -> Iterator[Run]:
        entry = self.bat[block]
        if entry == UNALLOCATED:
            yield Run(start, stop - start, FROM_PARENT if self.differencing else FROM_ZERO)
            return
        data = entry * SECTOR + self.bitmap_size - block_start
        if not self.differencing:
            yield Run(start, stop - start, data + start)
            return
        bits = self._bitmap(block, entry)
        first, last = (start - block_start) // SECTOR, (stop - block_start - 1) // SECTOR
        for low, high, own in bit_runs(bits, first, last):
            run_start = max(start, block_start + (first + low) * SECTOR)
            run_stop = min(stop, block_start + (first + high) * SECTOR)
            yield Run(run_start, run_stop - run_start, data + run_start if own else FROM_PARENT)

    def _bitmap(self, block: int, entry: int) -> str:
        bits = self._bitmap_cache.get(block)
        if bits is None:
            bits = bit_string(self.image.pread(entry * SECTOR, self.bitmap_size))
            if len(self._bitmap_cache) > 256:
                self._bitmap_cache.clear()
            self._bitmap_cache[block] = bits
        return bits

    def allocated_blocks(self) -> int:
        return len(self.allocated)

    def extents(self) -> Iterator[tuple[int, int]]:
        image = self.image
        offsets = (self.bat[block] * SECTOR + self.bitmap_size for block in self.allocated)
        own = stored_block_extents(image.fd, image.file_size, self.allocated, offsets,
                                   self.block_size, image.virtual_size)
        parent = self.image.parent
        if parent is None:
            return own
        limit = self.image.virtual_size
        inherited = ((o, min(o + n, limit) - o) for o, n in parent.extents() if o < limit)
        return merge_extents(heapq.merge(own, inherited))

    def describe(self) -> dict[str, Any]:
        header = self.header
        info: dict[str, Any] = {
            "dynamic_header": {
                "block_size": header.block_size,
                "max_table_entries": header.max_table_entries,
                "table_offset": header.table_offset,
                "header_version": f"{header.header_version >> 16}.{header.header_version & 0xFFFF}",
                "checksum": "ok" if header.checksum_ok else "bad",
            },
            "bat": {"allocated_blocks": self.allocated_blocks(), "total_blocks": self.block_count},
        }
        parent = self.image.parent
        if parent is not None:
            info["parent"] = {
                "name": header.parent_name,
                "unique_id": guids.text(header.parent_unique_id),
                "timestamp": vhd_time_iso(header.parent_timestamp),
                "locators": [{"platform_code": loc.platform_code.decode("latin-1"),
                              "path": path}
                             for loc, path in read_locators(self.image, header)],
                "path": parent.path,
            }
            info["parents"] = parent_chain(parent)
        return info


def parent_chain(parent: VhdImage) -> list[dict[str, Any]]:
    """The chain from the nearest parent to the base disk, as JSON-ready entries."""
    chain: list[dict[str, Any]] = []
    current: VhdImage | None = parent
    while current is not None:
        chain.append({"path": current.path, "format": current.format,
                      "virtual_size": current.virtual_size,
                      "unique_id": current.footer.unique_id_str})
        current = current.parent
    return chain


def read_locators(image: VhdImage, header: DynamicHeader) -> list[tuple[Any, str]]:
    """(locator, path) for every parent locator whose data lies inside the file."""
    found = []
    for locator in header.locators:
        length = locator.data_length
        if not 0 < length <= MAX_LOCATOR_LENGTH:
            continue
        if locator.data_offset + length > image.file_size:
            continue
        path = locator.decode(image.pread(locator.data_offset, length))
        if path is not None:
            found.append((locator, path))
    return found


def parent_candidates(image: VhdImage, header: DynamicHeader) -> list[str]:
    """Where the parent may be: relative locators (from the child's folder), absolute
    locators, then the parent's name beside the child. Duplicates removed, order kept."""
    folder = os.path.dirname(os.path.abspath(image.path))
    relative, absolute, names = [], [], []
    for locator, path in read_locators(image, header):
        native = path.replace("\\", "/")
        if locator.platform_code in LOCATOR_RELATIVE:
            relative.append(os.path.normpath(os.path.join(folder, native)))
        elif locator.platform_code in LOCATOR_ABSOLUTE and os.path.isabs(native):
            absolute.append(native)  # a Windows drive path is only tried by its name
        names.append(native.rsplit("/", 1)[-1])
    name = header.parent_name.replace("\\", "/").rsplit("/", 1)[-1]
    if name:
        names.insert(0, name)
    beside = [os.path.join(folder, n) for n in names if n not in ("", ".", "..")]
    return list(dict.fromkeys(relative + absolute + beside))


def open_parent(image: VhdImage, header: DynamicHeader, depth: int,
                seen: frozenset[str]) -> VhdImage:
    """Open the parent of a differencing disk and check it is the disk it was made from."""
    here = os.path.realpath(image.path)
    seen = seen | {here}
    if depth + 1 > MAX_CHAIN_DEPTH:
        raise ParentChainError(
            f"{image.path}: the differencing chain is deeper than {MAX_CHAIN_DEPTH} disks")
    candidates = parent_candidates(image, header)
    for candidate in candidates:
        if not os.path.isfile(candidate):
            continue
        if os.path.realpath(candidate) in seen:
            raise ParentChainError(
                f"{image.path}: the parent chain loops back to {candidate}")
        parent = VhdImage(candidate, _depth=depth + 1, _seen=seen)
        if parent.footer.unique_id != header.parent_unique_id:
            parent.close()
            raise ParentMismatchError(
                f"{image.path}: parent {candidate} has unique id "
                f"{guids.text(parent.footer.unique_id)}, the child expects "
                f"{guids.text(header.parent_unique_id)} (the parent was replaced "
                f"or modified)")
        return parent
    tried = ", ".join(candidates) if candidates else "no usable parent locator or name"
    raise ParentNotFoundError(
        f"{image.path}: parent disk {header.parent_name or '(unnamed)'!s} not found; "
        f"looked at: {tried}")

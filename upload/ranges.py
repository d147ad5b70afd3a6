"""Pure range arithmetic for page blobs: 512-byte alignment, 4 MiB limits, coalescing,
zero-sector trimming. No I/O; every function is total and deterministic.

A range is ``(offset, length)`` in bytes. Page-blob rules (Azure, not the emulator):
offsets and lengths are multiples of 512 and one Put Page carries at most 4 MiB.
"""
from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


SECTOR = 512
MAX_PUT_PAGE = 4 * 1024 * 1024
GRID = MAX_PUT_PAGE  # work units never straddle a multiple of this
MAX_MERGED_GAP = 64 * 1024  # zeros sent to save a request: well below one request's cost
GAP_BUDGET = 0.01  # at most this share of a unit's data travels as bridged zeros

Range = tuple[int, int]


def align_down(value: int, multiple: int = SECTOR) -> int:
    """Largest multiple of ``multiple`` that is <= ``value``."""
    return value - value % multiple


def align_up(value: int, multiple: int = SECTOR) -> int:
    """Smallest multiple of ``multiple`` that is >= ``value``."""
    return -(-value // multiple) * multiple


def normalize(extents: Iterable[Range], limit: int, sector: int = SECTOR) -> list[Range]:
    """Sorted, merged, sector-aligned ranges covering ``extents`` and clipped to ``limit``.

    Extents come from image maps that may be unaligned, overlapping or unordered; what
    leaves here never is. Empty extents vanish; ``limit`` must be a multiple of ``sector``.
    """
    if limit % sector:
        raise ValueError(f"limit {limit} is not a multiple of {sector}")
    aligned = []
    for offset, length in extents:
        if length <= 0:
            continue
        start = max(align_down(offset, sector), 0)
        end = min(align_up(offset + length, sector), limit)
        if end > start:
            aligned.append((start, end))
    aligned.sort()
    merged: list[Range] = []
    for start, end in aligned:
        if merged and start <= merged[-1][0] + merged[-1][1]:
            last_start, last_length = merged[-1]
            merged[-1] = (last_start, max(last_start + last_length, end) - last_start)
        else:
            merged.append((start, end - start))
    return merged


def split(offset: int, length: int, max_length: int = MAX_PUT_PAGE,
          grid: int | None = None) -> Iterator[Range]:
    """``(offset, length)`` cut into pieces of at most ``max_length`` bytes.

    With ``grid``, pieces also never cross a multiple of ``grid`` (long extents then travel
    as aligned 4 MiB requests).
    """
    if max_length <= 0:
        raise ValueError("max_length must be positive")
    end = offset + length
    position = offset
    while position < end:
        stop = min(end, position + max_length)
        if grid:
            stop = min(stop, align_down(position, grid) + grid)
        yield position, stop - position
        position = stop


def work_units(extents: Iterable[Range], grid: int = GRID) -> Iterator[Range]:
    """Normalized extents as units of at most ``grid`` bytes: an extent that fits in one
    unit stays whole even across a multiple of ``grid`` (cutting it there would cost a
    second request for the same piece of data); longer extents are cut at every multiple.

    Lazy: a fully allocated multi-TiB disk has millions of units.
    """
    for offset, length in extents:
        if length <= grid:
            yield offset, length
        else:
            yield from split(offset, length, grid, grid)


def crosses_grid(unit: Range, grid: int = GRID) -> bool:
    """True when ``unit`` spans a multiple of ``grid`` (units before journal version 2 never
    did)."""
    offset, length = unit
    return offset // grid != (offset + length - 1) // grid


def coalesce(ranges: Iterable[Range], max_length: int = MAX_PUT_PAGE,
             max_gap: int = 0) -> list[Range]:
    """Join ranges whose gap is at most ``max_gap`` while the result stays ≤ ``max_length``.

    ``ranges`` must be sorted and non-overlapping. Ranges longer than ``max_length`` are
    split first. With ``max_gap`` = 0 only touching ranges join, so no extra byte is sent.
    """
    result: list[Range] = []
    for offset, length in ranges:
        for piece_offset, piece_length in split(offset, length, max_length):
            if result:
                last_offset, last_length = result[-1]
                gap = piece_offset - (last_offset + last_length)
                if gap < 0:
                    raise ValueError("ranges overlap or are not sorted")
                if gap <= max_gap and piece_offset + piece_length - last_offset <= max_length:
                    result[-1] = (last_offset, piece_offset + piece_length - last_offset)
                    continue
            result.append((piece_offset, piece_length))
    return result


def true_runs(flags: Sequence[bool] | np.ndarray) -> list[Range]:
    """``(first_index, count)`` of every run of consecutive true values, in order."""
    import numpy as np
    mask = np.asarray(flags, dtype=bool)
    if mask.size == 0:
        return []
    edges = np.flatnonzero(np.diff(np.concatenate(([False], mask, [False])).view(np.int8)))
    starts, stops = edges[0::2], edges[1::2]
    return [(int(start), int(stop - start)) for start, stop in zip(starts, stops)]


def nonzero_pieces(offset: int, sector_flags: Sequence[bool] | np.ndarray,
                   max_length: int = MAX_PUT_PAGE, sector: int = SECTOR) -> list[Range]:
    """Put Page ranges for a buffer at ``offset`` whose sectors are flagged non-zero.

    Zero sectors are dropped; consecutive non-zero sectors become one range (≤
    ``max_length``). ``offset`` must be sector-aligned.
    """
    if offset % sector:
        raise ValueError(f"offset {offset} is not a multiple of {sector}")
    runs = ((offset + first * sector, count * sector) for first, count in true_runs(sector_flags))
    return coalesce(runs, max_length)


def merge_small_gaps(ranges: Sequence[Range], budget: int, max_gap: int = MAX_MERGED_GAP,
                     max_length: int = MAX_PUT_PAGE) -> list[Range]:
    """Join neighbours across their smallest zero gaps, spending at most ``budget`` bytes.

    One request fewer costs a round trip and the pipeline's CPU; sending a small run of
    zeros costs only its bytes. Gaps of at most ``max_gap`` are bridged, smallest first,
    while their total stays within ``budget`` and no range grows past ``max_length``.
    ``ranges`` must be sorted, disjoint and sector-aligned.
    """
    if len(ranges) < 2 or budget <= 0:
        return list(ranges)
    gaps = sorted((ranges[i + 1][0] - ranges[i][0] - ranges[i][1], i)
                  for i in range(len(ranges) - 1))
    bridged: set[int] = set()
    spent = 0
    for gap, index in gaps:
        if gap > max_gap or spent + gap > budget:
            break
        bridged.add(index)
        spent += gap
    result: list[Range] = []
    for index, (offset, length) in enumerate(ranges):
        if index - 1 in bridged and offset + length - result[-1][0] <= max_length:
            result[-1] = (result[-1][0], offset + length - result[-1][0])
        else:
            result.append((offset, length))
    return result


def total_length(ranges: Iterable[Range]) -> int:
    """Sum of the lengths."""
    return sum(length for _, length in ranges)


def _range_end(item: Range) -> int:
    return item[0] + item[1]


def subtract(ranges: Iterable[Range], holes: Iterable[Range]) -> list[Range]:
    """Parts of sorted, disjoint ``ranges`` not covered by sorted, disjoint ``holes``."""
    hole_list = holes if isinstance(holes, Sequence) else list(holes)
    result: list[Range] = []
    index = 0
    for offset, length in ranges:
        position, end = offset, offset + length
        # First hole ending after ``position`` (hole ends are sorted): a binary search, as
        # the uploader calls this once per unit against a blob's whole page-range list.
        index = bisect_right(hole_list, position, lo=index, key=_range_end)
        probe = index
        while position < end and probe < len(hole_list) and hole_list[probe][0] < end:
            hole_start, hole_length = hole_list[probe]
            if hole_start > position:
                result.append((position, hole_start - position))
            position = max(position, hole_start + hole_length)
            probe += 1
        if position < end:
            result.append((position, end - position))
    return result

"""Block allocation tables and sector bitmaps read with the standard library, so that a
command reading a dynamic or differencing VHD does not import numpy (about 0.1 s of its
start-up). A VHD's BAT has at most about a million entries (2040 GiB in 2 MiB blocks);
VHDX, qcow2 and VMDK tables can hold many millions and stay with numpy.

Tables are long runs of empty or of used entries: ``used_entries`` compares a thousand
entries at a time against an empty stretch (a memcmp) or searches them for one empty
entry, and looks at single entries only where a stretch holds both; the BAT of an empty
2 TiB disk (a million entries) takes a few milliseconds.
"""
from __future__ import annotations

import re
import sys
from array import array
from collections.abc import Iterator, Sequence
from itertools import islice

STRETCH = 1024  # entries judged at once
_BIT_RUN = re.compile(r"0+|1+")


def be_u32_table(raw: bytes) -> array:
    """The big-endian 32-bit entries of ``raw`` (a whole number of them) as integers."""
    table = array("I")
    if table.itemsize != 4:  # pragma: no cover - C int is 4 bytes where CPython runs
        raise RuntimeError("array('I') is not 4 bytes wide on this platform")
    table.frombytes(raw)
    if sys.byteorder == "little":
        table.byteswap()
    return table


def used_entries(table: array, empty: int) -> list[int]:
    """Indices of the entries of ``table`` other than ``empty``, ascending."""
    stretch = array(table.typecode, [empty]) * STRETCH
    used: list[int] = []
    for start in range(0, len(table), STRETCH):
        part = table[start:start + STRETCH]
        if part == stretch[:len(part)]:
            continue
        if empty not in part:
            used.extend(range(start, start + len(part)))
        else:
            used.extend(start + index for index, entry in enumerate(part) if entry != empty)
    return used


def index_extents(indices: Sequence[int], block_size: int,
                  limit: int) -> Iterator[tuple[int, int]]:
    """Guest ranges of the blocks numbered ``indices`` (ascending), consecutive blocks
    merged, clipped to ``limit``."""
    if not indices:
        return
    first = previous = indices[0]
    for index in islice(indices, 1, None):  # no copy of a million-entry list
        if index != previous + 1:
            yield _span(first, previous, block_size, limit)
            first = index
        previous = index
    yield _span(first, previous, block_size, limit)


def _span(first: int, last: int, block_size: int, limit: int) -> tuple[int, int]:
    start = first * block_size
    return start, min((last + 1) * block_size, limit) - start


def bit_string(bitmap: bytes) -> str:
    """``bitmap`` as "0" and "1" characters, each byte's most significant bit first (the
    VHD sector bitmap's order: sector 0 is bit 7 of byte 0)."""
    if not bitmap:
        return ""
    return format(int.from_bytes(bitmap, "big"), f"0{len(bitmap) * 8}b")


def bit_runs(bits: str, first: int, last: int) -> Iterator[tuple[int, int, bool]]:
    """``(low, high, set)`` for each run of equal characters of ``bits[first:last + 1]``
    (a ``bit_string``); ``low`` and ``high`` count from ``first``."""
    for match in _BIT_RUN.finditer(bits, first, last + 1):
        yield match.start() - first, match.end() - first, bits[match.start()] == "1"

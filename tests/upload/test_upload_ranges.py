"""Range arithmetic against a byte-level model, exhaustively with hypothesis."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from azlift.upload.ranges import (
    merge_small_gaps,
    GRID,
    MAX_PUT_PAGE,
    SECTOR,
    align_up,
    coalesce,
    nonzero_pieces,
    normalize,
    split,
    subtract,
    true_runs,
    work_units,
)

SMALL_SECTORS = 64  # model disks of up to 64 sectors, with a scaled-down 4 MiB limit


def covered_sectors(ranges, sector=SECTOR) -> set[int]:
    return {s for offset, length in ranges for s in range(offset // sector,
                                                          (offset + length) // sector)}


def covered_bytes(ranges) -> set[int]:
    return {b for offset, length in ranges for b in range(offset, offset + length)}


extent = st.tuples(st.integers(0, SMALL_SECTORS * SECTOR), st.integers(-5, 6000))


@given(st.lists(extent, max_size=12))
def test_normalize_covers_every_extent_byte_aligned_sorted_disjoint(extents) -> None:
    limit = SMALL_SECTORS * SECTOR
    result = normalize(extents, limit)
    wanted = {b for offset, length in extents if length > 0
              for b in range(offset, min(offset + length, limit))}
    got = covered_bytes(result)
    assert wanted <= got
    # only whole sectors that touch an extent are added
    assert covered_sectors([(b // SECTOR * SECTOR, SECTOR) for b in wanted]) == \
        covered_sectors(result)
    for (a_off, a_len), (b_off, _) in zip(result, result[1:]):
        assert a_off + a_len < b_off  # sorted, disjoint, never touching (merged)
    for offset, length in result:
        assert offset % SECTOR == 0 and length % SECTOR == 0 and length > 0
        assert offset + length <= limit


@given(st.integers(0, 10**7), st.integers(0, 10**7), st.integers(4096, 3 * 10**6),
       st.sampled_from([None, 1 << 20, GRID]))
def test_split_pieces_tile_the_range_within_limits(offset, length, max_length, grid) -> None:
    pieces = list(split(offset, length, max_length, grid))
    position = offset
    for piece_offset, piece_length in pieces:
        assert piece_offset == position
        assert 0 < piece_length <= max_length
        if grid:
            assert piece_offset // grid == (piece_offset + piece_length - 1) // grid
        position += piece_length
    assert position == offset + length
    if grid is None and length:
        assert len(pieces) == -(-length // max_length)  # as few pieces as possible


@given(st.lists(st.tuples(st.integers(0, 200), st.integers(1, 40)), max_size=15),
       st.integers(1, 64), st.integers(0, 8))
def test_coalesce_joins_only_within_gap_and_limit(raw, max_sectors, max_gap_sectors) -> None:
    ranges = [(o * SECTOR, n * SECTOR) for o, n in normalize(
        [(o * SECTOR, n * SECTOR) for o, n in raw], 400 * SECTOR)]
    ranges = [(o // SECTOR, n // SECTOR) for o, n in ranges]
    max_length = max_sectors
    result = coalesce(ranges, max_length, max_gap_sectors)
    original = covered_bytes(ranges)
    got = covered_bytes(result)
    assert original <= got
    # added coverage is only gaps of at most max_gap between original ranges
    for extra in got - original:
        left = max((b for b in original if b < extra), default=None)
        right = min((b for b in original if b > extra), default=None)
        assert left is not None and right is not None and right - left - 1 <= max_gap_sectors
    assert all(0 < length <= max_length for _, length in result)
    for (a_off, a_len), (b_off, b_len) in zip(result, result[1:]):
        gap = b_off - (a_off + a_len)
        assert gap >= 0
        # maximal: had they been joinable, coalesce would have joined them
        assert gap > max_gap_sectors or b_off + b_len - a_off > max_length
    if max_gap_sectors == 0:
        assert got == original


def test_coalesce_refuses_unsorted_input() -> None:
    with pytest.raises(ValueError):
        coalesce([(1024, 512), (0, 512)])


@given(st.lists(st.booleans(), max_size=300))
def test_true_runs_matches_a_plain_loop(flags) -> None:
    expected, start = [], None
    for index, flag in enumerate(flags + [False]):
        if flag and start is None:
            start = index
        elif not flag and start is not None:
            expected.append((start, index - start))
            start = None
    assert true_runs(flags) == expected
    assert true_runs(np.array(flags, dtype=bool)) == expected


@given(st.lists(st.booleans(), min_size=1, max_size=SMALL_SECTORS),
       st.integers(0, 1000), st.integers(1, 16))
def test_nonzero_pieces_cover_exactly_the_nonzero_sectors(flags, base_sector, max_sectors) -> None:
    offset = base_sector * SECTOR
    pieces = nonzero_pieces(offset, flags, max_length=max_sectors * SECTOR)
    expected = {base_sector + i for i, flag in enumerate(flags) if flag}
    assert covered_sectors(pieces) == expected
    assert all(length <= max_sectors * SECTOR and offset % SECTOR == 0
               for offset, length in pieces)
    # no two pieces that touch could have been one request
    for (a_off, a_len), (b_off, b_len) in zip(pieces, pieces[1:]):
        assert a_off + a_len < b_off or a_len + b_len > max_sectors * SECTOR


def test_nonzero_pieces_refuse_unaligned_offset() -> None:
    with pytest.raises(ValueError):
        nonzero_pieces(100, [True])


@given(st.lists(st.tuples(st.integers(0, 40), st.integers(1, 9)), max_size=8),
       st.lists(st.tuples(st.integers(0, 40), st.integers(1, 9)), max_size=8))
def test_subtract_is_set_difference(a, b) -> None:
    ranges = normalize(a, 64, sector=1)
    holes = normalize(b, 64, sector=1)
    result = subtract(ranges, holes)
    assert covered_bytes(result) == covered_bytes(ranges) - covered_bytes(holes)
    assert all(length > 0 for _, length in result)


@settings(max_examples=50)
@given(st.lists(st.tuples(st.integers(0, 3 * GRID), st.integers(1, 2 * GRID)), max_size=5))
def test_work_units_cut_only_extents_longer_than_a_cell(raw) -> None:
    extents = normalize(raw, align_up(5 * GRID, SECTOR))
    units = list(work_units(extents))
    assert sum(length for _, length in units) == sum(length for _, length in extents)
    for offset, length in units:
        assert length <= MAX_PUT_PAGE
        owner = next(e for e in extents if e[0] <= offset < e[0] + e[1])
        if owner[1] <= GRID:  # a short extent is one unit, wherever it lies
            assert (offset, length) == owner
        else:  # a long one is cut at every multiple of the grid, and only there
            assert offset // GRID == (offset + length - 1) // GRID
            assert offset == owner[0] or offset % GRID == 0
            end = offset + length
            assert end == owner[0] + owner[1] or end % GRID == 0


def test_merge_small_gaps_bridges_the_smallest_gaps_within_the_budget() -> None:
    ranges = [(0, 4096), (4608, 4096), (12800, 4096), (20992, 512)]  # gaps 512, 4096, 4096
    assert merge_small_gaps(ranges, budget=512) == [(0, 8704), (12800, 4096), (20992, 512)]
    assert merge_small_gaps(ranges, budget=4608) == [(0, 16896), (20992, 512)]
    assert merge_small_gaps(ranges, budget=0) == ranges
    assert merge_small_gaps(ranges, budget=10**9, max_gap=1024) == \
        [(0, 8704), (12800, 4096), (20992, 512)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 64), st.integers(1, 64)), min_size=1, max_size=30),
       st.integers(0, 200))
def test_merge_small_gaps_covers_everything_and_spends_at_most_the_budget(
        pieces: list[tuple[int, int]], budget_sectors: int) -> None:
    ranges, position = [], 0
    for gap, length in pieces:  # sorted, disjoint, sector-aligned, within one 4 MiB cell
        position += gap * 512
        ranges.append((position, length * 512))
        position += length * 512 + 512
    budget = budget_sectors * 512
    merged = merge_small_gaps(ranges, budget)
    assert sum(length for _, length in merged) - sum(length for _, length in ranges) <= budget
    assert len(merged) <= len(ranges)
    for offset, length in ranges:  # every data byte is inside one merged range
        assert any(start <= offset and offset + length <= start + size for start, size in merged)
    assert all(b[0] > a[0] + a[1] for a, b in zip(merged, merged[1:]))  # still disjoint
    assert all(length <= 4 * 1024 * 1024 for _, length in merged)

"""The standard-library block tables against numpy's (the reader used it before) and plain
loops: entries, used indices, merged extents and sector-bitmap runs."""
from __future__ import annotations

from array import array

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from azlift.vhd.block_tables import (
    STRETCH,
    be_u32_table,
    bit_runs,
    bit_string,
    index_extents,
    used_entries,
)

EMPTY = 0xFFFFFFFF


def table_of(entries: list[int]) -> array:
    return be_u32_table(np.array(entries, dtype=">u4").tobytes())


# Stretches of empty, used and mixed entries, as real BATs are laid out.
runs_of_entries = st.lists(
    st.tuples(st.sampled_from(["empty", "used", "mixed"]), st.integers(1, 2 * STRETCH + 7)),
    max_size=6)


def build(layout: list[tuple[str, int]], seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    entries: list[int] = []
    for kind, count in layout:
        if kind == "empty":
            entries += [EMPTY] * count
        elif kind == "used":
            entries += rng.integers(0, EMPTY, count).tolist()
        else:
            entries += [EMPTY if rng.random() < 0.5 else int(rng.integers(0, EMPTY))
                        for _ in range(count)]
    return entries


@given(runs_of_entries, st.integers(0, 2**32))
@settings(max_examples=150, deadline=None)
def test_entries_and_used_indices_match_numpy(layout, seed) -> None:
    entries = build(layout, seed)
    raw = np.array(entries, dtype=">u4")
    table = be_u32_table(raw.tobytes())
    assert table.tolist() == raw.tolist()
    assert used_entries(table, EMPTY) == np.flatnonzero(raw != EMPTY).tolist()


def test_used_entries_of_an_empty_a_full_and_a_one_entry_table() -> None:
    assert used_entries(table_of([]), EMPTY) == []
    assert used_entries(table_of([EMPTY] * (3 * STRETCH)), EMPTY) == []
    assert used_entries(table_of(list(range(3 * STRETCH + 1))), EMPTY) == list(
        range(3 * STRETCH + 1))
    lone = [EMPTY] * (3 * STRETCH)
    lone[2 * STRETCH - 1] = 0  # the last entry of a stretch
    assert used_entries(table_of(lone), EMPTY) == [2 * STRETCH - 1]


def reference_extents(indices: list[int], block_size: int, limit: int) -> list[tuple[int, int]]:
    """Block by block, merging whatever touches."""
    merged: list[list[int]] = []
    for index in indices:
        start, end = index * block_size, min((index + 1) * block_size, limit)
        if merged and merged[-1][1] == start:
            merged[-1][1] = end
        else:
            merged.append([start, end])
    return [(start, end - start) for start, end in merged]


@given(st.sets(st.integers(0, 200), max_size=80), st.sampled_from([512, 4096, 2 * 1024 * 1024]),
       st.integers(1, 4095))
def test_index_extents_merge_consecutive_blocks_and_clip_the_last(indices, block_size,
                                                                  short) -> None:
    ordered = sorted(indices)
    limit = (ordered[-1] + 1) * block_size - short % block_size if ordered else 0
    assert list(index_extents(ordered, block_size, limit)) == reference_extents(
        ordered, block_size, limit)


@given(st.binary(max_size=600), st.data())
def test_bit_runs_cover_the_window_with_the_bits_numpy_unpacks(bitmap, data) -> None:
    bits = bit_string(bitmap)
    unpacked = np.unpackbits(np.frombuffer(bitmap, dtype=np.uint8)).tolist()
    assert [int(bit) for bit in bits] == unpacked  # sector 0 is bit 7 of byte 0
    if not bitmap:
        return
    first = data.draw(st.integers(0, len(unpacked) - 1))
    last = data.draw(st.integers(first, len(unpacked) - 1))
    runs = list(bit_runs(bits, first, last))
    assert runs[0][0] == 0 and runs[-1][1] == last - first + 1
    for (_, high, state), (low, _, next_state) in zip(runs, runs[1:]):
        assert high == low and state != next_state  # adjacent, and maximal
    for low, high, state in runs:
        assert unpacked[first + low:first + high] == [int(state)] * (high - low)


@pytest.mark.parametrize("bitmap,expected", [
    (b"\x80", [(0, 1, True), (1, 8, False)]),
    (b"\x00\xff", [(0, 8, False), (8, 16, True)]),
    (b"\x0f", [(0, 4, False), (4, 8, True)]),
])
def test_bit_runs_read_the_most_significant_bit_first(bitmap, expected) -> None:
    bits = bit_string(bitmap)
    assert list(bit_runs(bits, 0, len(bits) - 1)) == expected

"""convert --cache auto: the kernel's unthrottled room, and the choice it leads to."""
from __future__ import annotations

from pathlib import Path

import pytest

from azlift.vhd import convert
from azlift.vhd.cache_policy import (
    DirtySettings,
    choose_cache,
    freerun_bytes,
    machine_room,
    parse_meminfo,
    unthrottled_bytes,
)

GIB = 1024 ** 3
MEMINFO = """MemTotal:       24576000 kB
MemFree:        16000000 kB
MemAvailable:   20000000 kB
Active(file):    1000000 kB
Inactive(file):  3000000 kB
Dirty:            200000 kB
Writeback:        100000 kB
HugePages_Total:       0
"""


def test_meminfo_fields_are_bytes_and_unitless_counts_stay_counts() -> None:
    fields = parse_meminfo(MEMINFO)
    assert fields["MemFree"] == 16000000 * 1024
    assert fields["Inactive(file)"] == 3000000 * 1024
    assert fields["HugePages_Total"] == 0


def test_freerun_is_halfway_between_the_background_and_the_foreground_limit() -> None:
    # the defaults (20 % and 10 %) over 100 GiB of dirtyable memory: 15 GiB
    assert freerun_bytes(100 * GIB, DirtySettings()) == 15 * GIB
    # byte settings override their ratios
    assert freerun_bytes(100 * GIB, DirtySettings(bytes=4 * GIB,
                                                  background_bytes=2 * GIB)) == 3 * GIB
    # a background limit at or above the foreground one is taken as half of it
    assert freerun_bytes(100 * GIB, DirtySettings(ratio=10, background_ratio=30)) == \
        (10 * GIB + 5 * GIB) // 2


def test_room_is_freerun_over_free_and_file_memory_less_what_is_dirty() -> None:
    fields = parse_meminfo(MEMINFO)
    dirtyable = (16000000 + 1000000 + 3000000) * 1024
    dirty = (200000 + 100000) * 1024
    assert unthrottled_bytes(fields, DirtySettings()) == \
        (dirtyable * 20 // 100 + dirtyable * 10 // 100) // 2 - dirty
    # a memory cgroup with less room caps the dirtyable memory
    capped = unthrottled_bytes(fields, DirtySettings(), cgroup_headroom=2 * GIB)
    assert capped == (2 * GIB * 20 // 100 + 2 * GIB * 10 // 100) // 2 - dirty
    # more dirty data than the ceiling leaves no room at all
    crowded = dict(fields, Dirty=20 * GIB)
    assert unthrottled_bytes(crowded, DirtySettings()) == 0


def test_choice_goes_buffered_only_for_what_fits_the_room() -> None:
    assert choose_cache(GIB, 2 * GIB) == "buffered"
    assert choose_cache(2 * GIB, 2 * GIB) == "buffered"
    assert choose_cache(2 * GIB + 1, 2 * GIB) == "direct"
    assert choose_cache(1, 0) == "direct"
    assert choose_cache(1, None) == "direct"  # unknown room: the large-write-safe way


def test_this_machine_has_a_room_within_its_memory() -> None:
    room = machine_room()
    assert room is not None
    total = parse_meminfo(Path("/proc/meminfo").read_text())["MemTotal"]
    assert 0 <= room < total


def test_auto_convert_reports_the_mode_it_chose(tmp_path: Path, dynamic_vhd: Path) -> None:
    room = machine_room()
    assert room is not None
    result = convert(str(dynamic_vhd), str(tmp_path / "auto.vhd"))
    expected = choose_cache(result.data_bytes, room)
    assert result.cache == expected, (result.data_bytes, room)
    assert result.to_dict()["cache"] == expected
    if expected == "buffered":
        assert result.direct_bytes == 0


@pytest.mark.parametrize("cache", ["direct", "buffered"])
def test_an_explicit_mode_is_kept(tmp_path: Path, dynamic_vhd: Path, cache: str) -> None:
    result = convert(str(dynamic_vhd), str(tmp_path / f"{cache}.vhd"), cache=cache)
    assert result.cache == cache

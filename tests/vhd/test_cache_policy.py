"""convert --cache auto: the kernel's unthrottled room, the way a copy starts, and the
measured switches between the page cache and direct writes."""
from __future__ import annotations

from pathlib import Path

import pytest

from azlift.vhd.cache_policy import (
    PAGE,
    AdaptiveCache,
    DirtySettings,
    cgroup_room,
    choose_cache,
    fits_easily,
    freerun_bytes,
    machine_room,
    parse_meminfo,
    reserved_bytes,
    unthrottled_bytes,
)
from azlift.vhd import cache_policy  # patched there: convert looks its names up at each call
from azlift.vhd.conversion import convert

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
    reserve = 1000000 * 1024
    dirtyable = (16000000 - 1000000 + 1000000 + 3000000) * 1024
    dirty = (200000 + 100000) * 1024
    ceiling = (dirtyable * 20 // 100 + dirtyable * 10 // 100) // 2
    assert unthrottled_bytes(fields, DirtySettings(), reserve) == ceiling - dirty
    # a memory cgroup with less room scales the ceiling by its share, as the kernel does
    capped = unthrottled_bytes(fields, DirtySettings(), reserve, cgroup_room=dirtyable // 4)
    assert capped == ceiling // 4 - dirty
    # a cgroup with more room than the machine changes nothing
    assert unthrottled_bytes(fields, DirtySettings(), reserve, 10 * dirtyable) == \
        ceiling - dirty
    # more dirty data than the ceiling leaves no room at all
    crowded = dict(fields, Dirty=20 * GIB)
    assert unthrottled_bytes(crowded, DirtySettings(), reserve) == 0


ZONEINFO = """Node 0, zone      DMA
  pages free     3840
        min      7
        high     16
        managed  3840
        protection: (0, 3018, 24090, 24090)
      pagesets
    cpu: 0
              high:  378
Node 0, zone    DMA32
        high     3659
        managed  772798
        protection: (0, 0, 21071, 21071)
Node 0, zone   Normal
        high     25557
        managed  5394258
        protection: (0, 0, 0, 0)
"""


def test_reserve_is_each_zones_high_watermark_and_largest_protection_capped() -> None:
    # DMA: 16 + 24090 capped at its 3840 managed pages; DMA32: 3659 + 21071; Normal: 25557
    assert reserved_bytes(ZONEINFO) == (3840 + 3659 + 21071 + 25557) * PAGE
    assert reserved_bytes("") == 0


def test_auto_starts_measuring_unless_there_is_no_room_or_the_output_is_synced() -> None:
    assert choose_cache(2 * GIB) == "auto"
    assert choose_cache(None) == "auto"  # /proc cannot say: measuring still can
    assert choose_cache(0) == "direct"  # every buffered write would be throttled at once
    assert choose_cache(2 * GIB, durable=True) == "direct"  # --sync writes it out anyway


class Clock:
    """Seconds handed out in the order given (the last one repeats)."""

    def __init__(self, *times: float) -> None:
        self.times = list(times)

    def __call__(self) -> float:
        return self.times.pop(0) if len(self.times) > 1 else self.times[0]


def test_adaptive_probes_direct_then_stays_buffered_while_it_is_faster() -> None:
    # probe: 4 bytes in 1 s; 2 bytes left to settle; windows of 8 bytes in 0.5 s, then 1 s
    policy = AdaptiveCache(Clock(0, 1, 1.2, 1.7, 2.7), probe=4, window=8, settle=2)
    policy.start()
    assert policy.mode == "direct"
    assert policy.record(3) is None
    assert policy.record(4) == "buffered" and policy.direct_rate == 4
    assert policy.record(5) is None  # settling: the clock is not read
    assert policy.record(6) is None  # settled: measuring from here
    assert policy.record(13) is None  # the window is not full yet
    assert policy.record(14) is None  # 8 bytes in 0.5 s
    assert policy.record(22) is None  # 8 bytes in 1 s
    assert policy.phases == [("direct", 0), ("buffered", 4)]


def test_adaptive_goes_direct_when_the_page_cache_falls_behind_and_stays_if_faster() -> None:
    # probe 4 bytes in 1 s (4/s); a window of 8 in 4 s (2/s) is slower: direct again;
    # 2 bytes settle, then 8 bytes direct in 2 s (4/s) beat that window: direct to the end
    policy = AdaptiveCache(Clock(0, 1, 1, 5, 5.5, 7.5), probe=4, window=8, settle=2)
    policy.start()
    policy.record(4)
    policy.record(6)
    assert policy.record(14) == "direct" and policy.buffered_rate == 2
    assert policy.record(16) is None  # settling
    assert policy.record(23) is None  # the direct window is not full yet
    assert policy.record(24) is None  # 8 bytes in 2 s: faster than the page cache went
    assert policy.record(1000) is None  # never back, however fast it would now be
    assert policy.mode == "direct"
    assert policy.phases == [("direct", 0), ("buffered", 4), ("direct", 14)]


def test_adaptive_goes_back_to_the_page_cache_for_good_when_direct_is_slower_still() -> None:
    # the probe ran at 4/s (a device cache taking the first writes), the page cache fell
    # to 2/s, direct again manages 8 bytes in 8 s (1/s): buffered to the end
    policy = AdaptiveCache(Clock(0, 1, 1, 5, 5.5, 13.5, 14), probe=4, window=8, settle=2)
    policy.start()
    policy.record(4)
    policy.record(6)
    assert policy.record(14) == "direct"
    policy.record(16)
    assert policy.record(24) == "buffered"
    assert policy.record(1000) is None and policy.state == "final"
    assert policy.phases == [("direct", 0), ("buffered", 4), ("direct", 14), ("buffered", 24)]


def test_the_probe_clock_starts_with_the_copy() -> None:
    # created at 0, the copy starts at 10: the probe's 4 bytes took 1 s, not 11
    policy = AdaptiveCache(Clock(10, 11), probe=4, window=8, settle=2)
    policy.start()
    policy.record(4)
    assert policy.direct_rate == 4


def test_a_copy_shorter_than_the_probe_is_all_direct() -> None:
    policy = AdaptiveCache(Clock(0, 99), probe=4, window=8)
    policy.start()
    assert policy.record(3) is None
    assert policy.phases == [("direct", 0)]


def test_a_fast_page_cache_trial_keeps_the_copy_there_unmeasured() -> None:
    # the first bytes (2, at 5 s: one-off costs) are not timed; the next 4 take 0.5 s:
    # 8/s is at least ``fast``: buffered to the end
    policy = AdaptiveCache(Clock(0, 5, 5.5, 99), probe=4, window=8, settle=2,
                           buffered_first=True, fast=8)
    policy.start()
    assert policy.mode == "buffered"
    assert policy.record(0) is None and policy.state == "warmup"  # nothing written yet
    assert policy.record(2) is None and policy.state == "trial"
    assert policy.record(5) is None
    assert policy.record(6) is None and policy.trial_rate == 8
    assert policy.state == "final"
    assert policy.record(1000) is None  # however slow the rest would be
    assert policy.phases == [("buffered", 0)]


def test_a_slow_page_cache_trial_settles_then_probes_direct() -> None:
    # warmed up at 1 (0.5 s); 4 bytes to 5 in 1 s (4/s, below fast=8): direct; 2 bytes
    # settle (the clock read at 7 is 2); the probe's 4 bytes to 11 take 0.5 s (8/s); then
    # the usual page-cache windows: settled at 13 (2.75), 8 bytes in 2 s fall behind
    policy = AdaptiveCache(Clock(0, 0.5, 1.5, 2, 2.5, 2.75, 4.75), probe=4, window=8,
                           settle=2, buffered_first=True, fast=8)
    policy.start()
    assert policy.record(1) is None and policy.state == "trial"
    assert policy.record(5) == "direct" and policy.trial_rate == 4
    assert policy.record(6) is None  # settling: the clock is not read
    assert policy.record(7) is None and policy.state == "probe"
    assert policy.record(10) is None
    assert policy.record(11) == "buffered" and policy.direct_rate == 8
    policy.record(13)  # settled at 2.75
    assert policy.record(21) == "direct" and policy.buffered_rate == 4
    assert policy.phases == [("buffered", 0), ("direct", 5), ("buffered", 11), ("direct", 21)]


def test_fits_easily_wants_the_source_in_half_the_room() -> None:
    assert fits_easily(GIB, 2 * GIB)
    assert not fits_easily(GIB + 1, 2 * GIB)
    assert not fits_easily(1, None)  # /proc cannot say: measure from a direct probe
    assert not fits_easily(1, 0)


def write_tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_cgroup_v2_room_is_the_tightest_limit_up_the_tree(tmp_path: Path) -> None:
    proc, mount = tmp_path / "proc", tmp_path / "cgroup"
    write_tree(proc, {"self/cgroup": "0::/slice/job\n"})
    write_tree(mount, {
        "slice/memory.max": f"{8 * GIB}\n", "slice/memory.high": "max\n",
        "slice/memory.current": f"{5 * GIB}\n",
        "slice/job/memory.max": "max\n", "slice/job/memory.high": f"{6 * GIB}\n",
        "slice/job/memory.current": f"{1 * GIB}\n",
        "slice/job/memory.stat": "anon 100\nfile 999999\nactive_file 1024\n"
                                 "inactive_file 2048\n"})
    # the parent leaves 3 GiB, the job's memory.high 5 GiB; plus the job's file cache
    assert cgroup_room(str(proc), str(mount)) == 3 * GIB + 1024 + 2048


def test_cgroup_v2_without_limits_is_unlimited(tmp_path: Path) -> None:
    proc, mount = tmp_path / "proc", tmp_path / "cgroup"
    write_tree(proc, {"self/cgroup": "0::/job\n"})
    write_tree(mount, {"job/memory.max": "max\n", "job/memory.current": "5\n"})
    assert cgroup_room(str(proc), str(mount)) is None


def test_cgroup_v1_uses_the_hierarchical_limit_and_the_mount_root_when_hidden(
        tmp_path: Path) -> None:
    proc, mount = tmp_path / "proc", tmp_path / "cgroup"
    # a container without its own cgroup namespace: /docker/abc is not under the mount,
    # its cgroup is the mount's root; a hybrid system's unified line has no memory
    write_tree(proc, {"self/cgroup": "4:memory:/docker/abc\n3:cpu:/docker/abc\n0::/\n"})
    write_tree(mount, {
        "memory/memory.stat": f"cache 7\nhierarchical_memory_limit {4 * GIB}\n"
                              "total_active_file 100\ntotal_inactive_file 200\n",
        "memory/memory.usage_in_bytes": f"{GIB}\n"})
    assert cgroup_room(str(proc), str(mount)) == 3 * GIB + 300
    # no limit: v1 writes a page-rounded LONG_MAX
    write_tree(mount, {"memory/memory.stat": "hierarchical_memory_limit "
                                           "9223372036854771712\n"})
    assert cgroup_room(str(proc), str(mount)) is None


def test_unreadable_proc_means_unknown(tmp_path: Path) -> None:
    assert machine_room(str(tmp_path / "none"), str(tmp_path / "none")) is None
    assert cgroup_room(str(tmp_path / "none"), str(tmp_path / "none")) is None


def test_this_machine_has_a_room_within_its_memory() -> None:
    room = machine_room()
    assert room is not None
    total = parse_meminfo(Path("/proc/meminfo").read_text())["MemTotal"]
    assert 0 <= room < total


@pytest.mark.parametrize(("room", "expected", "first"), [
    (0, "direct", None), (None, "auto", "direct"), ("tight", "auto", "direct"),
    (1 << 40, "auto", "buffered")])
def test_auto_convert_follows_the_room(tmp_path: Path, dynamic_vhd: Path, monkeypatch,
                                       room: int | str | None, expected: str,
                                       first: str | None) -> None:
    if room == "tight":  # the source's file would take more than half the room
        room = 2 * dynamic_vhd.stat().st_blocks * 512 - 1
    monkeypatch.setattr(cache_policy, "machine_room", lambda: room)
    out = tmp_path / "auto.vhd"
    result = convert(str(dynamic_vhd), str(out))
    assert result.cache == expected and result.to_dict()["cache"] == expected
    # a copy shorter than the probe is written the first way from start to end
    phases = [{"mode": first, "after_bytes_written": 0}] if first else []
    assert result.to_dict()["cache_phases"] == phases
    convert(str(dynamic_vhd), str(tmp_path / "ref.vhd"), cache="buffered")
    assert out.read_bytes() == (tmp_path / "ref.vhd").read_bytes()


def test_auto_with_sync_goes_direct_without_asking(tmp_path: Path, dynamic_vhd: Path,
                                                   monkeypatch) -> None:
    monkeypatch.setattr(cache_policy, "machine_room", lambda: 1 << 40)
    result = convert(str(dynamic_vhd), str(tmp_path / "auto.vhd"), durable=True)
    assert result.cache == "direct" and result.cache_phases == ()


@pytest.mark.parametrize("cache", ["direct", "buffered"])
def test_an_explicit_mode_is_kept(tmp_path: Path, dynamic_vhd: Path, cache: str) -> None:
    result = convert(str(dynamic_vhd), str(tmp_path / f"{cache}.vhd"), cache=cache)
    assert result.cache == cache

"""How ``convert --cache auto`` writes DEST: the page cache while it takes the data faster
than the device does, O_DIRECT otherwise.

Which is quicker depends on the machine, not the image. Below the kernel's "freerun"
ceiling (halfway between the background and the foreground dirty limits) a writer dirties
pages at memory speed and the kernel writes them back later: a small image is converted
fastest through the page cache. Past it the kernel slows writers more and more, down to
the device's pace at the foreground limit, and each page still costs a copy and an
allocation. And on some virtual machines a new page-cache page is itself slow to come by
(the host backs it first: 0.1-0.2 GB/s measured where direct writes ran at 1.2 GB/s). So
``AdaptiveCache`` measures: the first PROBE_BYTES go direct (the device's pace), then the
page cache, window by window, for as long as it keeps ahead of that pace; then one window
direct again, and whichever of those two went faster to the end. Where all the source
holds fits in half the room the kernel leaves before it throttles writers, the first
PROBE_BYTES after the first chunk go through the page cache instead, and if they went at
memory speed (FAST_BUFFERED) the rest follows them there unmeasured: the direct probe
would cost more than any device could win back on so little data (64 MiB direct took
0.08 s of a 0.33 s conversion of 512 MiB). An output with less data than that first
measure is written the way it began throughout (at that size the way hardly matters).
``machine_room`` (the kernel's own formula over /proc/meminfo, /proc/zoneinfo and the
vm.dirty_* settings, scaled to what the process's memory cgroup has left) says when
there is no room to try at all.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import NamedTuple

KIB = 1024
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
UNLIMITED = 1 << 60  # cgroup v1 writes "no limit" as a page-rounded LONG_MAX


class DirtySettings(NamedTuple):
    """The vm.dirty_* sysctls: a byte value, where set (non-zero), overrides its ratio."""

    ratio: int = 20
    background_ratio: int = 10
    bytes: int = 0
    background_bytes: int = 0


def freerun_bytes(dirtyable: int, settings: DirtySettings) -> int:
    """The dirty data the kernel lets writers hold before it throttles them, for
    ``dirtyable`` bytes of memory: domain_dirty_limits' two thresholds and
    dirty_freerun_ceiling halfway between them."""
    limit = settings.bytes or settings.ratio * dirtyable // 100
    background = settings.background_bytes or settings.background_ratio * dirtyable // 100
    if background >= limit:
        background = limit // 2
    return (limit + background) // 2


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo as bytes by field name (unitless counts stay counts)."""
    fields: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        parts = value.split()
        if parts and parts[0].isdigit():
            fields[name] = int(parts[0]) * (KIB if parts[1:] == ["kB"] else 1)
    return fields


def reserved_bytes(zoneinfo: str) -> int:
    """The kernel's totalreserve_pages in bytes: per zone, its largest lowmem reserve plus
    its high watermark, at most the zone's managed pages (memory it never counts as
    dirtyable)."""
    zones: list[dict[str, int]] = []
    for line in zoneinfo.splitlines():
        words = line.split()
        if words[:1] == ["Node"]:
            zones.append({})
        elif zones and len(words) == 2 and words[0] in ("high", "managed") \
                and words[1].isdigit():
            zones[-1][words[0]] = int(words[1])
        elif zones and words[:1] == ["protection:"]:
            numbers = " ".join(words[1:]).strip("()").split(",")
            zones[-1]["protection"] = max((int(n) for n in numbers if n.strip().isdigit()),
                                          default=0)
    pages = sum(min(zone.get("high", 0) + zone.get("protection", 0),
                    zone.get("managed", 1 << 62)) for zone in zones)
    return pages * PAGE


def unthrottled_bytes(meminfo: dict[str, int], settings: DirtySettings, reserve: int = 0,
                      cgroup_room: int | None = None) -> int:
    """How many more bytes a writer may dirty now before the kernel throttles it: the
    freerun ceiling over dirtyable memory (free less ``reserve``, plus the file cache)
    less what is dirty or under writeback already. With ``cgroup_room`` (what the memory
    cgroup may still take plus its file cache) the ceiling is scaled as the kernel scales
    a cgroup's limits, by its share of the dirtyable memory."""
    free = max(0, meminfo.get("MemFree", 0) - reserve)
    dirtyable = free + meminfo.get("Active(file)", 0) + meminfo.get("Inactive(file)", 0)
    ceiling = freerun_bytes(dirtyable, settings)
    if cgroup_room is not None and dirtyable and cgroup_room < dirtyable:
        ceiling = ceiling * cgroup_room // dirtyable
    dirty = meminfo.get("Dirty", 0) + meminfo.get("Writeback", 0)
    return max(0, ceiling - dirty)


def fits_easily(stored: int, room: int | None) -> bool:
    """Whether ``stored`` bytes (what the source holds: more than the copy writes) fit in
    half of ``room`` (unthrottled_bytes): the page cache takes them all at memory speed."""
    return room is not None and stored <= room // 2


def choose_cache(room: int | None, durable: bool = False) -> str:
    """The way ``--cache auto`` starts: "direct" when the output must reach the device
    before returning anyway (``durable``) or when the kernel has no room for more dirty
    data (``room``, unthrottled_bytes, is 0); else "auto" (AdaptiveCache decides)."""
    return "direct" if durable or room == 0 else "auto"


PROBE_BYTES = 64 * 1024 * 1024  # written direct first: the pace of direct writes
FAST_BUFFERED = 1024 * 1024 * 1024  # bytes per second: a page cache at memory speed
SETTLE_BYTES = 32 * 1024 * 1024  # then left unmeasured: writes begun before the switch
WINDOW_BYTES = 128 * 1024 * 1024  # then the page cache's pace, measured this often


class AdaptiveCache:
    """--cache auto during the copy, fed the bytes written so far (``record``) from the
    moment the copy starts (``start``): direct for the first PROBE_BYTES, then buffered
    while each WINDOW_BYTES goes faster than the probe did. At the first window that does
    not, one window goes direct again, measured against that slower page-cache window,
    and the quicker of the two takes the rest of the copy. (The probe's pace is a first
    guess: a device or its host may absorb the first writes faster than it keeps up, and
    a writer the kernel slows past its freerun ceiling can still outrun the device while
    the dirty data stays under the hard limit: 4 GiB went through the page cache in 5.2 s
    where direct took 12.8 s.) The SETTLE_BYTES after each switch are not measured:
    chunks begun before it were still being written the other way.

    ``buffered_first`` (the whole copy fits well below the freerun ceiling) starts in the
    page cache and, once the first bytes are written (the first chunk pays one-off costs:
    imports, threads starting), times the next PROBE_BYTES: at ``fast`` bytes per second
    or more the copy stays there to the end; slower, it settles and goes on as above from
    a direct probe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 probe: int = PROBE_BYTES, window: int = WINDOW_BYTES,
                 settle: int = SETTLE_BYTES, buffered_first: bool = False,
                 fast: float = FAST_BUFFERED) -> None:
        self.clock, self.probe, self.window, self.settle = clock, probe, window, settle
        self.fast = fast
        # ["warmup", "trial", "presettle"], "probe", "settle", "buffered", then
        # "resettle", "recheck" and "final"
        self.state = "warmup" if buffered_first else "probe"
        self.direct_rate = 0.0  # bytes per second of the probe
        self.buffered_rate = 0.0  # of the page-cache window that fell behind it
        self.trial_rate = 0.0  # of the first page-cache window, when it went first
        # (mode, after bytes written)
        self.phases: list[tuple[str, int]] = [("buffered" if buffered_first else "direct", 0)]
        self._mark = (0, 0.0)  # bytes written and the time where the current span began

    @property
    def mode(self) -> str:
        """How writes go now: "direct" or "buffered"."""
        return self.phases[-1][0]

    def start(self) -> None:
        """The copy begins now (the probe's clock starts)."""
        self._mark = (0, self.clock())

    def record(self, written: int) -> str | None:
        """``written`` bytes so far; the new mode when it changes, else None."""
        start, since = self._mark
        span = written - start
        if self.state == "final" or span < {"warmup": 1, "trial": self.probe,
                                             "presettle": self.settle,
                                             "probe": self.probe, "settle": self.settle,
                                             "buffered": self.window,
                                             "resettle": self.settle,
                                             "recheck": self.window}[self.state]:
            return None
        now = self.clock()
        self._mark = (written, now)
        if self.state in ("warmup", "presettle", "settle", "resettle"):
            self.state = {"warmup": "trial", "presettle": "probe", "settle": "buffered",
                          "resettle": "recheck"}[self.state]
            return None
        rate = span / max(now - since, 1e-9)
        if self.state == "trial":
            self.trial_rate = rate
            if rate >= self.fast:
                self.state = "final"
                return None
            self.state = "presettle"
            return self._switch("direct", written)
        if self.state == "probe":
            self.direct_rate, self.state = rate, "settle"
            return self._switch("buffered", written)
        if self.state == "buffered":
            if rate >= self.direct_rate:
                return None
            self.buffered_rate, self.state = rate, "resettle"
            return self._switch("direct", written)
        self.state = "final"  # "recheck": a window direct again, against the buffered one
        return self._switch("buffered", written) if rate < self.buffered_rate else None

    def _switch(self, mode: str, written: int) -> str:
        self.phases.append((mode, written))
        return mode


def machine_room(proc: str = "/proc", cgroups: str = "/sys/fs/cgroup") -> int | None:
    """unthrottled_bytes of this machine and process now; None where /proc cannot say."""
    meminfo = parse_meminfo(_read_text(os.path.join(proc, "meminfo")))
    if "MemFree" not in meminfo:
        return None
    settings = DirtySettings(**{
        name: _read_int(os.path.join(proc, "sys", "vm", f"dirty_{name}"), default)
        for name, default in DirtySettings._field_defaults.items()})
    return unthrottled_bytes(meminfo, settings,
                             reserved_bytes(_read_text(os.path.join(proc, "zoneinfo"))),
                             cgroup_room(proc, cgroups))


def cgroup_room(proc: str = "/proc", cgroups: str = "/sys/fs/cgroup") -> int | None:
    """What the process's memory cgroup may still take plus its file cache: the tightest
    limit on the way up (v2 memory.max and memory.high; v1's hierarchical limit). None
    without a limit or where the cgroup cannot be read."""
    for line in _read_text(os.path.join(proc, "self", "cgroup")).splitlines():
        number, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if number == "0" and not controllers:
            room = _v2_room(cgroups, path)
        elif "memory" in controllers.split(","):
            room = _v1_room(os.path.join(cgroups, "memory"), path)
        else:
            continue
        if room is not None:
            return room
    return None


def _v2_room(root: str, path: str) -> int | None:
    folder = _visible(root, path, "memory.max")
    if folder is None:
        return None
    stat = _stat_fields(os.path.join(folder, "memory.stat"))
    room = None
    while True:  # up to the root: a parent's limit binds the child too
        used = _read_int(os.path.join(folder, "memory.current"), 0) or 0
        for name in ("memory.max", "memory.high"):
            limit = _read_int(os.path.join(folder, name), None)
            if limit is not None and limit < UNLIMITED:
                here = max(0, limit - used)
                room = here if room is None else min(room, here)
        parent = os.path.dirname(folder)
        if os.path.normpath(folder) == os.path.normpath(root) or parent == folder:
            break
        folder = parent
    if room is None:
        return None
    return room + stat.get("active_file", 0) + stat.get("inactive_file", 0)


def _v1_room(root: str, path: str) -> int | None:
    folder = _visible(root, path, "memory.stat")
    if folder is None:
        return None
    stat = _stat_fields(os.path.join(folder, "memory.stat"))
    limit = stat.get("hierarchical_memory_limit")
    if limit is None or limit >= UNLIMITED:
        return None
    used = _read_int(os.path.join(folder, "memory.usage_in_bytes"), 0) or 0
    return (max(0, limit - used) + stat.get("total_active_file", 0)
            + stat.get("total_inactive_file", 0))


def _visible(root: str, path: str, probe: str) -> str | None:
    """The folder of ``path`` under the mount ``root``; the mount's root itself where the
    path is not visible (a container without its own cgroup namespace sees its cgroup
    there); None where neither has ``probe``."""
    for folder in (os.path.join(root, path.lstrip("/")), root):
        if os.path.exists(os.path.join(folder, probe)):
            return folder
    return None


def _stat_fields(path: str) -> dict[str, int]:
    fields = {}
    for line in _read_text(path).splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            fields[key] = int(value)
    return fields


def _read_int(path: str, default: int | None) -> int | None:
    text = _read_text(path).strip()
    return int(text) if text.isdigit() else default


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="ascii") as file:  # (not pathlib: 7 ms of start-up)
            return file.read()
    except (OSError, UnicodeDecodeError, ValueError):
        return ""

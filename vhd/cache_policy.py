"""Which way ``convert --cache auto`` writes DEST: through the page cache when the kernel
takes all of the data without throttling the writer, with O_DIRECT when it would not.

Below its "freerun" ceiling (halfway between the background and the foreground dirty
limits) the kernel lets a writer dirty pages at memory speed and writes them back later:
there a small image is converted fastest through the page cache. Above it every writer is
held to the device's pace and still pays each page's copy and allocation, so a large image
goes faster, and evicts nothing, written direct. The ceiling is the kernel's own formula
(mm/page-writeback.c) over /proc/meminfo, /proc/zoneinfo and the vm.dirty_* settings,
scaled down to what the process's memory cgroup has left.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

KIB = 1024
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
UNLIMITED = 1 << 60  # cgroup v1 writes "no limit" as a page-rounded LONG_MAX


@dataclass(frozen=True)
class DirtySettings:
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


def choose_cache(data_bytes: int, room: int | None, durable: bool = False) -> str:
    """The way to write ``data_bytes``: "buffered" when they fit in ``room``
    (unthrottled_bytes), else "direct"; "direct" as well when the room is unknown (a
    large write through the page cache is the costly mistake) or when the output must
    reach the device before returning anyway (``durable``)."""
    if durable or room is None or data_bytes > room:
        return "direct"
    return "buffered"


def machine_room(proc: str = "/proc", cgroups: str = "/sys/fs/cgroup") -> int | None:
    """unthrottled_bytes of this machine and process now; None where /proc cannot say."""
    meminfo = parse_meminfo(_read_text(os.path.join(proc, "meminfo")))
    if "MemFree" not in meminfo:
        return None
    settings = DirtySettings(**{
        name: _read_int(os.path.join(proc, "sys", "vm", f"dirty_{name}"), default)
        for name, default in vars(DirtySettings()).items()})
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
        return Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError, ValueError):
        return ""

"""Which way ``convert --cache auto`` writes DEST: through the page cache when the kernel
takes all of the data without throttling the writer, with O_DIRECT when it would not.

Below its "freerun" ceiling (halfway between the background and the foreground dirty
limits) the kernel lets a writer dirty pages at memory speed and writes them back later:
there a small image is converted fastest through the page cache. Above it every writer is
held to the device's pace and still pays each page's copy and allocation, so a large image
goes faster, and evicts nothing, written direct. The ceiling is the kernel's own formula
(mm/page-writeback.c) over /proc/meminfo and the vm.dirty_* settings, capped by what the
process's memory cgroup has left.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

KIB = 1024


@dataclass(frozen=True)
class DirtySettings:
    """The vm.dirty_* sysctls: a byte value, where set (non-zero), overrides its ratio."""

    ratio: int = 20
    background_ratio: int = 10
    bytes: int = 0
    background_bytes: int = 0


def freerun_bytes(dirtyable: int, settings: DirtySettings) -> int:
    """The dirty data the kernel lets writers hold before it throttles them, for
    ``dirtyable`` bytes of memory (free plus file cache): domain_dirty_limits' thresholds
    and dirty_freerun_ceiling."""
    limit = settings.bytes or settings.ratio * dirtyable // 100
    background = settings.background_bytes or settings.background_ratio * dirtyable // 100
    if background >= limit:
        background = limit // 2
    return (limit + background) // 2


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo as bytes by field name."""
    fields: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        parts = value.split()
        if parts and parts[0].isdigit():
            fields[name] = int(parts[0]) * (KIB if parts[1:] == ["kB"] else 1)
    return fields


def unthrottled_bytes(meminfo: dict[str, int], settings: DirtySettings,
                      cgroup_headroom: int | None = None) -> int:
    """How many more bytes a writer may dirty now before the kernel throttles it: the
    freerun ceiling less what is dirty or under writeback already. ``cgroup_headroom``
    (memory the process's cgroup may still take, plus its file cache) caps the
    dirtyable memory."""
    dirtyable = (meminfo.get("MemFree", 0) + meminfo.get("Active(file)", 0)
                 + meminfo.get("Inactive(file)", 0))
    if cgroup_headroom is not None:
        dirtyable = min(dirtyable, cgroup_headroom)
    dirty = meminfo.get("Dirty", 0) + meminfo.get("Writeback", 0)
    return max(0, freerun_bytes(dirtyable, settings) - dirty)


def choose_cache(data_bytes: int, room: int | None) -> str:
    """"buffered" when ``data_bytes`` fit in ``room`` (unthrottled_bytes), else "direct";
    "direct" when the room is unknown (a large write is the costly mistake)."""
    return "buffered" if room is not None and data_bytes <= room else "direct"


def machine_room() -> int | None:
    """unthrottled_bytes of this machine and process now; None where /proc cannot say."""
    try:
        meminfo = parse_meminfo(Path("/proc/meminfo").read_text(encoding="ascii"))
    except (OSError, UnicodeDecodeError):
        return None
    if "MemFree" not in meminfo:
        return None
    return unthrottled_bytes(meminfo, _dirty_settings(), _cgroup_headroom())


def _dirty_settings() -> DirtySettings:
    defaults = DirtySettings()
    values = {name: _read_int(f"/proc/sys/vm/dirty_{name}", getattr(defaults, name))
              for name in ("ratio", "background_ratio", "bytes", "background_bytes")}
    return DirtySettings(**values)


def _cgroup_headroom() -> int | None:
    """Memory the process's cgroup may still take plus its file cache (v2 memory.max, or
    v1 memory.limit_in_bytes); None without a limit."""
    for line in _read_text("/proc/self/cgroup").splitlines():
        number, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if number == "0" and not controllers:
            base, limit, usage, stat = "/sys/fs/cgroup", "memory.max", "memory.current", "file"
        elif "memory" in controllers.split(","):
            base, limit, usage, stat = ("/sys/fs/cgroup/memory", "memory.limit_in_bytes",
                                        "memory.usage_in_bytes", "total_cache")
        else:
            continue
        folder = os.path.join(base, path.lstrip("/"))
        maximum = _read_int(os.path.join(folder, limit), None)
        if maximum is None or maximum >= 1 << 60:  # "max", or v1's page-rounded LONG_MAX
            continue
        used = _read_int(os.path.join(folder, usage), 0) or 0
        cached = _stat_field(os.path.join(folder, "memory.stat"), stat)
        return max(0, maximum - used) + cached
    return None


def _stat_field(path: str, name: str) -> int:
    for line in _read_text(path).splitlines():
        key, _, value = line.partition(" ")
        if key == name and value.strip().isdigit():
            return int(value)
    return 0


def _read_int(path: str, default: int | None) -> int | None:
    text = _read_text(path).strip()
    return int(text) if text.isdigit() else default


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return ""

"""What `azlift bulk run` shows while it runs, fed by the coordinator's events.

On a terminal: tqdm bars on stderr. Elsewhere: one plain line per VM that finishes or fails.
"""
from __future__ import annotations

import sys
import threading
from typing import Any

from .common import STATE, say


class Progress:
    """Renders the coordinator's callbacks: one bar on a terminal, else a line per VM."""

    def __init__(self, enabled: bool, lines: bool = True) -> None:
        self.enabled = enabled
        self.lines = lines and not enabled
        self._lock = threading.Lock()
        self._disks: dict[tuple[str, str], tuple[int, int]] = {}
        self.done = self.failed = 0
        self.bar: Any = None

    def __call__(self, message: dict[str, Any]) -> None:
        with self._lock:
            self._handle(message)

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("kind")
        if kind == "progress":
            self._disks[(message["vm"], message["disk"])] = (message["done"], message["total"])
        elif kind == "vm":
            if message["status"] == "done":
                self.done += 1
            else:
                self.failed += 1
            if self.lines or (self.bar is None and not STATE.quiet and message["status"] != "done"):
                error = message.get("error") or {}
                detail = f" ({error.get('code')}: {error.get('message')})" if error else ""
                say(f"azlift: {message['vm']}: {message['status']}{detail}")
        elif kind == "prep" and self.lines:
            say(f"azlift: {message['vm']}: generalizing {message['host']}")
        elif kind == "waiting" and self.lines:
            say(f"azlift: waiting for a worker of source {message['sources']}")
        elif kind == "cancelling":
            say("azlift: interrupted: stopping running uploads (state is kept)")
        if self.enabled:
            self._draw()

    def _draw(self) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=0, unit="B", unit_scale=True, unit_divisor=1024,
                            desc="bulk", file=sys.stderr, dynamic_ncols=True, leave=False)
        total = sum(t for _, t in self._disks.values())
        done = sum(d for d, _ in self._disks.values())
        self.bar.total = total
        self.bar.n = done
        active = [f"{vm}/{disk}" for (vm, disk), (d, t) in self._disks.items() if d < t]
        self.bar.set_postfix_str(f"done {self.done} failed {self.failed} "
                                 f"active {' '.join(active[:4])}", refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

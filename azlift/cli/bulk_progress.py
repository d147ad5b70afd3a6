"""What `azlift bulk run` shows while it runs, fed by the coordinator's events (workers'
progress arrives as Dask events, no polling).

On a terminal (stderr, not --quiet): one overall tqdm bar (bytes of every disk seen so far,
rate, ETA, VMs done and failed) and under it a line per disk being uploaded (its bytes, the
worker), removed when the disk is done; failures and notices print above the bars. Without
a terminal: one plain line per VM that finishes or fails. --json output is not touched
(everything here goes to stderr).
"""
from __future__ import annotations

import sys
import threading
from typing import Any

from ..redact import redact_text
from .common import STATE, say

MAX_DISK_LINES = 8


class Progress:
    """Renders the coordinator's events: bars on a terminal, else a line per VM."""

    def __init__(self, enabled: bool, lines: bool = True) -> None:
        self.enabled = enabled
        self.lines = lines and not enabled
        self._lock = threading.Lock()
        self._disks: dict[tuple[str, str], tuple[int, int]] = {}
        self._bars: dict[tuple[str, str], Any] = {}
        self.planned = 0
        self.done = self.failed = 0
        self.bar: Any = None

    def __call__(self, message: dict[str, Any]) -> None:
        with self._lock:
            self._handle(message)

    # ---- events ---------------------------------------------------------------------------
    def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("kind")
        if kind == "plan":
            self.planned = int(message.get("vms") or 0)
        elif kind == "progress":
            self._progress(message)
        elif kind == "disk":
            self._disk_finished((message["vm"], message["disk"]))
        elif kind == "vm":
            self._vm(message)
        elif kind == "prep":
            if self.lines or self.enabled:
                self._say(f"azlift: {message['vm']}: generalizing {message['host']}")
        elif kind == "waiting":
            if self.lines or self.enabled:
                self._say(f"azlift: waiting for a worker of source {message['sources']}")
        elif kind == "cancelling":
            self._say("azlift: interrupted: stopping running uploads (state is kept)")
        if self.enabled:
            self._draw_overall()

    def _progress(self, message: dict[str, Any]) -> None:
        key = (message["vm"], message["disk"])
        before, _ = self._disks.get(key, (0, 0))
        done, total = int(message["done"]), int(message["total"])
        self._disks[key] = (done, total)
        if not self.enabled:
            return
        self._overall().update(max(0, done - before))
        if done >= total:
            self._disk_finished(key)
            return
        bar = self._bars.get(key)
        where = f"on {message.get('worker_name') or '?'}"
        if bar is None and len(self._bars) < MAX_DISK_LINES:
            bar = self._bars[key] = self._new_bar(f"  {key[0]}/{key[1]}", total, where)
        if bar is not None:
            bar.total = total
            bar.update(max(0, done - bar.n))
            bar.refresh()  # events come at most once a second per disk: draw each one

    def _disk_finished(self, key: tuple[str, str]) -> None:
        bar = self._bars.pop(key, None)
        if bar is not None:
            bar.close()

    def _vm(self, message: dict[str, Any]) -> None:
        if message["status"] == "done":
            self.done += 1
        else:
            self.failed += 1
        for key in [key for key in self._bars if key[0] == message["vm"]]:
            self._disk_finished(key)
        failed = message["status"] != "done"
        if self.lines or (failed and not STATE.quiet):
            error = message.get("error") or {}
            detail = f" ({error.get('code')}: {error.get('message')})" if error else ""
            self._say(f"azlift: {message['vm']}: {message['status']}{detail}")

    # ---- drawing --------------------------------------------------------------------------
    def _new_bar(self, description: str, total: int, postfix: str = "") -> Any:
        from tqdm import tqdm

        return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=description,
                    postfix=postfix or None, file=sys.stderr, dynamic_ncols=True, leave=False,
                    mininterval=0.2)

    def _overall(self) -> Any:
        if self.bar is None:
            self.bar = self._new_bar("bulk", 0)
        return self.bar

    def _draw_overall(self) -> None:
        bar = self._overall()
        bar.total = sum(total for _, total in self._disks.values())
        hidden = sum(1 for key, (done, total) in self._disks.items()
                     if done < total and key not in self._bars)
        more = f", {hidden} more disks" if hidden else ""
        of = f" of {self.planned}" if self.planned else ""
        bar.set_postfix_str(f"VMs {self.done} done, {self.failed} failed{of}{more}",
                            refresh=False)
        bar.refresh()

    def _say(self, text: str) -> None:
        if self.enabled and self.bar is not None:
            from tqdm import tqdm

            tqdm.write(redact_text(text), file=sys.stderr)
        else:
            say(text)

    def close(self) -> None:
        with self._lock:
            for key in list(self._bars):
                self._disk_finished(key)
            if self.bar is not None:
                self.bar.close()

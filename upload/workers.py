"""A bounded set of worker threads fed by one dispatching thread, outcomes back in the
order they finish.

concurrent.futures' submit + wait(FIRST_COMPLETED) builds a future, a work item and a
waiter per item and locks every pending future on each wait: about 0.1 ms of CPU per item
on a small machine, a tenth of the budget of a sparse Put Page. Two C-implemented queues
do the same hand-offs for a third of that. The dispatcher alone submits and collects, so
whatever it owns (counters, the journal, the progress callback) stays single-threaded.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_STOP = object()


@dataclass(frozen=True)
class Outcome:
    """One finished item: the item and the job's result, or the error it raised."""

    item: Any
    result: Any = None
    error: BaseException | None = None


class Workers:
    """Up to ``threads`` threads running ``job(item)``, started as items need them."""

    def __init__(self, job: Callable[[Any], Any], threads: int, name: str) -> None:
        if threads < 1:
            raise ValueError("threads must be at least 1")
        self._job = job
        self._limit = threads
        self._name = name
        self._work: queue.SimpleQueue = queue.SimpleQueue()
        self._done: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self.in_flight = 0  # submitted, not yet collected

    def submit(self, item: Any) -> None:
        """Queue ``item``; a thread is started when every running one has work."""
        self._work.put(item)
        self.in_flight += 1
        if self.in_flight > len(self._threads) and len(self._threads) < self._limit:
            thread = threading.Thread(target=self._serve,
                                      name=f"{self._name}_{len(self._threads)}")
            self._threads.append(thread)  # before it runs: close() must know of it
            thread.start()

    def next_done(self, timeout: float | None) -> Outcome | None:
        """The next finished item, or None when none finished within ``timeout``."""
        if not self.in_flight:
            return None
        try:
            outcome = self._done.get(timeout=timeout)
        except queue.Empty:
            return None
        self.in_flight -= 1
        return outcome

    def close(self) -> list[Outcome]:
        """Let every thread finish what it holds and end; wait for them. Returns the
        outcomes not collected yet (all of them: once the threads are joined, none is on
        the way), so that a failed run can still record what finished."""
        for _ in self._threads:
            self._work.put(_STOP)
        for thread in self._threads:
            if thread.ident is not None:  # started (a failed start leaves none to join)
                thread.join()
        self._threads = []
        left: list[Outcome] = []
        while True:
            try:
                left.append(self._done.get_nowait())
            except queue.Empty:
                break
        self.in_flight = 0
        return left

    def _serve(self) -> None:
        while True:
            item = self._work.get()
            if item is _STOP:
                return
            try:
                outcome = Outcome(item, self._job(item))
            except BaseException as error:  # noqa: BLE001 - handed to the dispatcher
                outcome = Outcome(item, error=error)
            self._done.put(outcome)

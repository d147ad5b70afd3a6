"""Keep a storage account under its request limits.

Cluster-wide, every in-flight Put Page request to an account holds one lease of that
account's semaphore (a Dask ``Semaphore`` shared by every worker, or a local one), so the
account never sees more than ``cap`` requests at once however many machines send.
Leases are taken and given back per upload, not per request: an upload grows its share
one lease at a time while it has work and the semaphore has room, so the scheduler sees a
few calls per disk instead of one per page.

Inside its share an upload sizes its window by AIMD: a throttled request (503 ServerBusy,
500 OperationTimedOut, a timeout: anything the SDK had to retry) halves the window and
hands the surplus leases back to the others; each success grows it by 1/window (one more
request per window of successes). Pure threading, no Dask here.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from azlift.upload.errors import TransientServiceError

GROW_WAIT_S = 0.05  # how long a growing upload waits for one more lease
GROW_RETRY_S = 0.5  # after a miss, how long before it asks again
FIRST_LEASE_WAIT_S = 2.0


class Lease(Protocol):
    """The cluster-wide cap (threading.Semaphore and Dask's Semaphore both fit)."""

    def acquire(self, timeout: float | None = None) -> Any: ...

    def release(self) -> Any: ...


@contextmanager
def leased(lease: Lease) -> Iterator[None]:
    """Hold one of ``lease``'s slots for the block (an ARM write under the cluster's cap)."""
    lease.acquire()
    try:
        yield
    finally:
        lease.release()


class LeasedWindow:
    """One upload's share of an account's cap, sized by AIMD (see module docstring)."""

    def __init__(self, lease: Lease, most: int) -> None:
        if most < 1:
            raise ValueError("most must be at least 1")
        self.lease = lease
        self.most = most
        self.limit = float(most)
        self.held = 0
        self.in_flight = 0
        self.peak = 0
        self.throttled = 0
        self._condition = threading.Condition()
        self._growing = False
        self._next_grow = 0.0

    def _window(self) -> int:
        return max(1, int(self.limit))

    def acquire(self) -> None:
        """Wait for a slot: a held lease not in use, within the window."""
        while True:
            with self._condition:
                while True:
                    if self.in_flight < min(self.held, self._window()):
                        self.in_flight += 1
                        self.peak = max(self.peak, self.in_flight)
                        return
                    if (self.held < self._window() and not self._growing
                            and (self.held == 0 or time.monotonic() >= self._next_grow)):
                        self._growing = True
                        first = self.held == 0
                        break
                    self._condition.wait(0.1)
            got = False
            try:
                got = bool(self.lease.acquire(timeout=FIRST_LEASE_WAIT_S if first else GROW_WAIT_S))
            finally:
                with self._condition:
                    self._growing = False
                    if got:
                        self.held += 1
                    else:
                        self._next_grow = time.monotonic() + GROW_RETRY_S
                    self._condition.notify_all()

    def release(self, throttled: int = 0) -> None:
        """A request ended; ``throttled`` counts the retries it needed."""
        with self._condition:
            self.in_flight -= 1
            if throttled:
                self.throttled += throttled
                self.limit = max(1.0, self.limit / 2)
            else:
                self.limit = min(float(self.most), self.limit + 1.0 / self.limit)
            surplus = min(self.held - self._window(), self.held - self.in_flight)
            surplus = max(0, surplus)
            self.held -= surplus
            self._condition.notify_all()
        for _ in range(surplus):
            self.lease.release()

    def close(self) -> None:
        """Give every lease back (the upload ended)."""
        with self._condition:
            count, self.held = self.held, 0
        for _ in range(count):
            self.lease.release()


class ThrottledTarget:
    """A PageTarget whose Put Page requests go through a LeasedWindow."""

    def __init__(self, target: Any, window: LeasedWindow) -> None:
        self._target = target
        self.window = window

    @property
    def identity(self) -> str:
        return self._target.identity

    @property
    def supports_metadata(self) -> bool:
        return self._target.supports_metadata

    @property
    def throttled(self) -> int:
        return self.window.throttled

    def put_pages(self, offset: int, data: bytes | memoryview, md5: bytes | None, *,
                  crc64: bytes | None = None) -> int:
        self.window.acquire()
        throttled = 0
        try:
            # crc64 only when set, as the uploader does: a target may predate it
            extra = {"crc64": crc64} if crc64 is not None else {}
            attempts = self._target.put_pages(offset, data, md5, **extra)
            throttled = attempts - 1
            return attempts
        except TransientServiceError as error:
            throttled = max(1, getattr(error, "attempts", 1))
            raise
        finally:
            self.window.release(throttled)

    def close(self) -> None:
        self.window.close()
        self._target.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


class ArmThrottles:
    """The 429 TooManyRequests answers one task's ARM client received (the client waits
    each out as its Retry-After asks; the report shows how often ARM pushed back)."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self, status: int) -> None:
        if status == 429:
            with self._lock:
                self.count += 1

"""The engine seam: where tasks run, and what a task may use while it runs.

Two engines offer the same small surface (submit, completed, workers_for, cancel, close):
``DaskEngine`` (an embedded LocalCluster, or a scheduler and its workers on other hosts)
and ``InProcessEngine`` (a thread pool, so unit tests run a plan without Dask).

A task receives a ``TaskContext``: a picklable value holding no secret, which finds the
run's coordination objects where the task runs: Dask's ``Event`` (cancel), ``Semaphore``
(account and ARM caps) and ``log_event`` (progress) on a Dask worker; process-local
stand-ins otherwise. Dask is imported only inside the Dask paths.
"""
from __future__ import annotations

import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .errors import ClusterError
from .throttle import LeasedWindow

EventSink = Callable[[dict[str, Any]], None]
LOOPBACK_ANY_PORT = "127.0.0.1:0"
CANCEL_POLL_S = 0.5

# Process-local stand-ins, keyed by run id (the in-process engine) or by account.
_LOCAL_SINKS: dict[str, EventSink] = {}
_LOCAL_CANCEL: dict[str, threading.Event] = {}
_LOCAL_LEASES: dict[str, threading.BoundedSemaphore] = {}
_DASK_LEASES: dict[str, Any] = {}
_REGISTRY_LOCK = threading.Lock()


def topic(run_id: str) -> str:
    return f"azlift-bulk-{run_id}"


def _dask_worker() -> Any | None:
    """The Dask worker running this task, or None outside Dask."""
    try:
        from distributed import get_worker
    except ImportError:
        return None
    try:
        return get_worker()
    except ValueError:
        return None


class CancelFlag:
    """``is_set()`` / ``set()`` like threading.Event, reading the run's cancel signal at most
    every CANCEL_POLL_S (a Dask Event is a round trip to the scheduler)."""

    def __init__(self, read: Callable[[], bool]) -> None:
        self._read = read
        self._local = threading.Event()
        self._checked = 0.0
        self._lock = threading.Lock()

    def is_set(self) -> bool:
        if self._local.is_set():
            return True
        with self._lock:
            now = time.monotonic()
            if now - self._checked >= CANCEL_POLL_S:
                self._checked = now
                try:
                    if self._read():
                        self._local.set()
                except Exception:  # noqa: BLE001 - a lost scheduler must not look like a cancel
                    pass
        return self._local.is_set()

    def set(self) -> None:
        self._local.set()

    def wait(self, timeout: float | None = None) -> bool:
        deadline = time.monotonic() + (timeout or 0)
        while not self.is_set() and time.monotonic() < deadline:
            time.sleep(min(CANCEL_POLL_S, max(0.0, deadline - time.monotonic())))
        return self.is_set()


@dataclass(frozen=True)
class TaskContext:
    """What a task may use while it runs (picklable, no secrets)."""

    run_id: str
    account_requests: int
    arm_writes: int

    def worker_name(self) -> str:
        worker = _dask_worker()
        if worker is not None and isinstance(worker.name, str):
            return worker.name  # `azlift bulk worker --name`, the host name by default
        return socket.gethostname()  # the embedded cluster numbers its workers

    def emit(self, message: dict[str, Any]) -> None:
        """A progress event for the coordinator (msgpack-able values only)."""
        worker = _dask_worker()
        if worker is not None:
            worker.log_event(topic(self.run_id), message)
            return
        sink = _LOCAL_SINKS.get(self.run_id)
        if sink is not None:
            sink(message)

    def cancel_flag(self) -> CancelFlag:
        if _dask_worker() is not None:
            from distributed import Event

            event = Event(f"azlift-cancel-{self.run_id}")
            return CancelFlag(event.is_set)
        local = _LOCAL_CANCEL.setdefault(self.run_id, threading.Event())
        return CancelFlag(local.is_set)

    def _lease(self, name: str, cap: int) -> Any:
        """The cluster-wide semaphore ``name`` (one client-side object per process)."""
        worker = _dask_worker()
        with _REGISTRY_LOCK:
            if worker is not None:
                # Keyed by scheduler too: an embedded cluster lives as long as one run.
                key = f"{worker.scheduler.address}/{name}"
                lease = _DASK_LEASES.get(key)
                if lease is None:
                    from distributed import Semaphore

                    lease = _DASK_LEASES[key] = Semaphore(max_leases=cap, name=name)
                return lease
            # Per run: another run in this process may have other caps.
            return _LOCAL_LEASES.setdefault(f"{self.run_id}/{name}",
                                            threading.BoundedSemaphore(cap))

    def account_window(self, account: str, most: int) -> LeasedWindow:
        """An upload's share of the cap on in-flight Put Page requests to ``account``."""
        lease = self._lease(f"azlift-account-{account}", self.account_requests)
        return LeasedWindow(lease, min(most, self.account_requests))

    def arm_lease(self) -> Any:
        """The cap on concurrent ARM write operations across the cluster."""
        return self._lease("azlift-arm-writes", self.arm_writes)


# ---- engines --------------------------------------------------------------------------------

Outcome = tuple[str, Any, BaseException | None]  # (key, result, error)


class InProcessEngine:
    """Runs tasks on a thread pool in this process (tests, and runs without Dask)."""

    def __init__(self, run_id: str, *, threads: int = 8, resources: dict[str, float] | None = None,
                 on_event: EventSink | None = None) -> None:
        self.run_id = run_id
        self.resources = dict(resources or {})
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="azlift-bulk")
        self._done: queue.Queue[Outcome] = queue.Queue()
        _LOCAL_CANCEL[run_id] = threading.Event()
        if on_event is not None:
            _LOCAL_SINKS[run_id] = on_event

    @property
    def address(self) -> str:
        return "in-process"

    def submit(self, key: str, function: Callable[..., Any], *args: Any,
               resources: dict[str, float] | None = None, priority: int = 0) -> None:
        def run() -> None:
            try:
                self._done.put((key, function(*args), None))
            except BaseException as error:  # noqa: BLE001 - handed to the coordinator
                self._done.put((key, None, error))
        self._pool.submit(run)

    def completed(self, timeout: float) -> list[Outcome]:
        return _drain_queue(self._done, timeout)

    def workers_for(self, resource: str) -> list[str]:
        return [socket.gethostname()] if resource in self.resources else []

    def cancel(self) -> None:
        _LOCAL_CANCEL[self.run_id].set()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        _LOCAL_SINKS.pop(self.run_id, None)
        _LOCAL_CANCEL.pop(self.run_id, None)
        with _REGISTRY_LOCK:
            for key in [key for key in _LOCAL_LEASES if key.startswith(f"{self.run_id}/")]:
                del _LOCAL_LEASES[key]


def _drain_queue(done: queue.Queue[Outcome], timeout: float) -> list[Outcome]:
    try:
        first = done.get(timeout=timeout)
    except queue.Empty:
        return []
    items = [first]
    while True:
        try:
            items.append(done.get_nowait())
        except queue.Empty:
            return items


def dask_config(no_workers_timeout: float | None = None) -> dict[str, Any]:
    """Dask settings azlift relies on: no dashboard, bounded waits, two worker deaths per
    task, no sampling profiler."""
    config: dict[str, Any] = {
        "distributed.scheduler.allowed-failures": 3,
        "distributed.comm.timeouts.connect": "20s",
        "distributed.worker.daemon": False,
        "distributed.scheduler.work-stealing": True,
        # The statistical profiler samples every thread's stack 100 times a second with
        # sys._current_frames(). Under CPython 3.11 a garbage collection started inside
        # that call which frees a threading.local deadlocks the whole process (the
        # interpreter's head lock is taken twice), and an upload's connections live in
        # thread-locals: a thousand-disk run hung that way. It also costs CPU for a
        # profile nobody reads.
        "distributed.worker.profile.enabled": False,
    }
    if no_workers_timeout is not None:
        config["distributed.scheduler.no-workers-timeout"] = f"{no_workers_timeout}s"
    return config


class DaskEngine:
    """Tasks on Dask: an embedded LocalCluster, or the scheduler at ``address``."""

    def __init__(self, run_id: str, *, address: str | None = None, threads: int = 8,
                 processes: bool = False, resources: dict[str, float] | None = None,
                 on_event: EventSink | None = None, security: Any = None,
                 no_workers_timeout: float | None = None) -> None:
        import dask
        from distributed import Client, Event

        self.run_id = run_id
        self._done: queue.Queue[Outcome] = queue.Queue()
        self._futures: dict[str, Any] = {}
        self.cluster = None
        self._config = dask.config.set(dask_config(no_workers_timeout))
        self._config.__enter__()
        try:
            if address is None:
                from .embedded import embedded_cluster

                self.cluster = embedded_cluster(threads, resources or {}, processes)
                self.client = Client(self.cluster, set_as_default=False)
            else:
                self.client = Client(address, security=security, set_as_default=False,
                                     timeout="30s")
        except (OSError, TimeoutError) as error:
            self._config.__exit__(None, None, None)
            raise ClusterError(f"cannot reach the Dask scheduler at {address}: {error}") from None
        self._cancel = Event(f"azlift-cancel-{run_id}", client=self.client)
        if on_event is not None:
            self.client.subscribe_topic(topic(run_id), lambda event: on_event(event[1]))

    @property
    def address(self) -> str:
        return str(self.client.scheduler.address)

    def submit(self, key: str, function: Callable[..., Any], *args: Any,
               resources: dict[str, float] | None = None, priority: int = 0) -> None:
        future = self.client.submit(function, *args, key=key, pure=False, resources=resources,
                                    priority=priority, retries=0)
        self._futures[key] = future
        future.add_done_callback(lambda done: self._done.put(self._outcome(key, done)))

    def _outcome(self, key: str, future: Any) -> Outcome:
        self._futures.pop(key, None)
        try:
            if future.status == "cancelled":
                return key, None, ClusterError(f"task {key} was cancelled by the scheduler")
            error = future.exception(timeout=30)
            if error is not None:
                return key, None, error
            return key, future.result(timeout=30), None
        except BaseException as error:  # noqa: BLE001 - handed to the coordinator
            return key, None, error

    def completed(self, timeout: float) -> list[Outcome]:
        return _drain_queue(self._done, timeout)

    def workers_for(self, resource: str) -> list[str]:
        info = self.client.scheduler_info(n_workers=-1)
        return [str(worker.get("name", address)) for address, worker in info["workers"].items()
                if worker.get("resources", {}).get(resource, 0) > 0]

    def cancel(self) -> None:
        self._cancel.set()

    def close(self) -> None:
        try:
            if self._futures:
                self.client.cancel(list(self._futures.values()))
            self.client.close(timeout=10)
            if self.cluster is not None:
                self.cluster.close(timeout=10)
        finally:
            self._config.__exit__(None, None, None)


def default_threads() -> int:
    """Task threads of the embedded cluster when the manifest does not say."""
    return max(4, min(32, (os.cpu_count() or 2) * 4))

"""The phases before check for a VM with ``[vm.prep]``: prep, then settle.

prep: the guest's readiness checks, then deprovision (Linux) or Sysprep (Windows), then
the wait until it stops answering. It runs where the guest is reachable: on a worker
started with ``--reach NAME`` (the VM's ``reach``), or in the coordinator's own process
when the VM names none; never more than ``[limits] prep_guests`` guests at once. A guest
that is not ready fails its VM here, with its findings, and nothing of it is uploaded. A
prep that finished is recorded apart from the VM's row and never runs again.

settle: the hypervisor may still be writing the disk files when the guest stops
answering. The coordinator asks a worker of the VM's source for the files' size and
mtime (a light task on the source's probe resource, so it never waits behind uploads)
until two observations ``settle_seconds`` apart agree; past ``settle_timeout`` the VM
fails. Then the VM goes on to check as any other.
"""
from __future__ import annotations

import os
import queue
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .engine import InProcessEngine, TaskContext
from .manifest import Manifest, VmSpec
from .prep_spec import PrepSpec, reach_resource
from .state import DONE, FAILED, RUNNING

PROBE_SLOTS = 64  # settle probes a source's worker answers at once (they take milliseconds)
MAX_FINDINGS = 8


def probe_resource(source: str) -> str:
    """The worker resource for light reads of a source (size and mtime of its files)."""
    return f"probe-{source}"


def prep_resources(manifest: Manifest) -> dict[str, float]:
    """What an embedded cluster adds to its worker: every source's probe resource and every
    reach named in the manifest (the embedded worker stands in for all of them)."""
    resources = {probe_resource(source.name): float(PROBE_SLOTS) for source in manifest.sources}
    for vm in manifest.vms:
        if vm.prep is not None and vm.reach is not None:
            resources[reach_resource(vm.reach)] = float(manifest.limits.prep_guests)
    return resources


# ---- the tasks (run on a worker, or in the coordinator for the default reach) ----------

@dataclass(frozen=True)
class PrepJob:
    """One guest to inspect (``dry_run``) or generalize. No secret: variable names only."""

    vm_id: str
    prep: PrepSpec
    dry_run: bool = False


@dataclass(frozen=True)
class ProbeJob:
    """The disk files of one VM, to stat."""

    vm_id: str
    paths: tuple[tuple[str, str], ...]  # (label, path)


def _base(kind: str, vm_id: str, ctx: TaskContext) -> dict[str, Any]:
    return {"kind": kind, "vm": vm_id, "disk": None, "worker": ctx.worker_name(), "ok": False,
            "error": None}


def prep_guest(job: PrepJob, ctx: TaskContext) -> dict[str, Any]:
    """Check the guest; with ``dry_run`` return its findings and plan, else generalize it
    when it is ready. Errors come back as their stable code and one line."""
    from .guest import GuestPrep
    from .tasks import error_result

    result = _base("plan" if job.dry_run else "prep", job.vm_id, ctx)
    started = time.monotonic()
    guest = GuestPrep(job.prep)
    try:
        guest.inspect()
        summary = guest.summary()
        if not job.dry_run:
            summary.pop("plan")
            summary["findings"] = [f for f in summary["findings"] if f["severity"] != "ok"]
        result.update(summary)
        if job.dry_run:
            result["ok"] = True
            return result
        if not guest.ready:
            blockers = [f for f in summary["findings"] if f["severity"] == "blocker"]
            result["error"] = {"code": "not_ready", "message": (
                f"{job.prep.host} is not ready for Azure: "
                + "; ".join(f"{f['code']}: {f['message']}" for f in blockers[:MAX_FINDINGS])
                + " (fix the guest, then rerun with --retry-failed)")}
            return result

        def progress(message: str) -> None:
            ctx.emit({"kind": "prep-step", "vm": job.vm_id, "message": message})
        result["outcome"] = guest.execute(progress)
        result["ok"] = True
    except Exception as error:  # noqa: BLE001 - a task reports, the coordinator decides
        result["error"] = error_result(error)
    finally:
        guest.close()
        result["seconds"] = round(time.monotonic() - started, 3)
    return result


def probe_disks(job: ProbeJob, ctx: TaskContext) -> dict[str, Any]:
    """Size and mtime (ns) of each disk file; None for a file that is not there (yet)."""
    result = _base("settle", job.vm_id, ctx)
    stats: dict[str, list[int] | None] = {}
    for label, path in job.paths:
        try:
            info = os.stat(path)
            stats[label] = [info.st_size, info.st_mtime_ns]
        except FileNotFoundError:
            stats[label] = None
        except OSError as error:
            result["error"] = {"code": "io_error", "message": f"{path}: cannot read its size "
                                                             f"and time: {error.strerror}"}
            return result
    result.update(ok=True, stats=stats)
    return result


# ---- where default-reach preps run: the coordinator's own threads ----------------------

class LocalRunner(InProcessEngine):
    """The in-process engine's thread pool, without the run's cancel flag and event sink
    (the run's own engine holds those)."""

    def __init__(self, threads: int) -> None:  # noqa: D107 - no registry, on purpose
        self.run_id = ""
        self.resources = {}
        self._pool = ThreadPoolExecutor(max_workers=max(1, threads),
                                        thread_name_prefix="azlift-prep")
        self._done: queue.Queue[tuple[str, Any, BaseException | None]] = queue.Queue()

    def wait(self, timeout: float = 0.0) -> list[tuple[str, Any, BaseException | None]]:
        """What finished, waiting up to ``timeout`` seconds for the first (0: not at all)."""
        return self.completed(timeout)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


# ---- the coordinator's side ----------------------------------------------------------------

@dataclass
class _Settling:
    """One VM's settle phase as the coordinator sees it."""

    started: float
    next_at: float
    last: dict[str, Any] | None = None
    first_seen: float | None = None  # when the current sizes and times were first seen
    submitted_at: float = 0.0
    in_flight: bool = False
    changes: int = 0
    missing: list[str] = field(default_factory=list)


class PrepPhase:
    """Prep and settle for the coordinator: queues, the prep bound, the settle timers."""

    def __init__(self, coordinator: Any) -> None:
        self.c = coordinator
        self.limit = coordinator.manifest.limits.prep_guests
        self.waiting: deque[str] = deque()
        self.running = 0
        self.settling: dict[str, _Settling] = {}
        self.local: LocalRunner | None = None
        self.unserved: set[str] = set()

    # ---- start ----------------------------------------------------------------------
    def needs(self, vm: VmSpec, phase: str) -> bool:
        """Whether a VM starts with prep or settle (its row has not passed settle)."""
        return vm.prep is not None and phase in ("prep", "settle")

    def wait_for_reach(self, vms: list[VmSpec], wait: float) -> None:
        """Note the named reaches no worker serves after ``wait`` seconds (their VMs fail)."""
        names = {vm.reach for vm in vms if vm.prep is not None and vm.reach is not None
                 and not self.c.store.prep_finished(vm.id, vm.prep.identity_key())}
        deadline = time.monotonic() + wait
        while names:
            names = {name for name in names
                     if not self.c.engine.workers_for(reach_resource(name))}
            if not names or time.monotonic() >= deadline:
                break
            self.c.notify({"kind": "waiting", "sources": "reach " + ", ".join(sorted(names))})
            time.sleep(0.5)
        self.unserved = names

    def start(self, state: Any) -> None:
        vm: VmSpec = state.spec
        assert vm.prep is not None
        store = self.c.store
        if store.prep_finished(vm.id, vm.prep.identity_key()):
            store.event(self.c.run_id, vm.id, None, "prep_skipped",
                        {"host": vm.prep.host, "reason": "finished in an earlier run"})
            self._settle(state)
            return
        if vm.reach is not None and vm.reach in self.unserved:
            self.c._fail(vm.id, {"code": "no_worker", "message": (
                f"no worker reaches {vm.reach!r} (waited {self.c.wait_for_workers:g} s); start "
                f"one with `azlift bulk worker SCHEDULER --reach {vm.reach}`")})
            return
        store.set_vm(vm.id, phase="prep")
        store.set_prep(vm.id, vm.prep.identity_key(), RUNNING)
        self.waiting.append(vm.id)

    # ---- the loop's hooks -------------------------------------------------------------
    def busy(self) -> bool:
        return bool(self.waiting) or bool(self.settling) or self.running > 0

    def dispatch(self) -> None:
        c = self.c
        while self.waiting and self.running < self.limit and not c.cancelled:
            vm_id = self.waiting.popleft()
            state = c.vms[vm_id]
            if state.failed:
                continue
            vm = state.spec
            self.running += 1
            job = PrepJob(vm.id, vm.prep)
            c.store.event(c.run_id, vm.id, None, "prep_started",
                          {"host": vm.prep.host, "reach": vm.reach or "coordinator"})
            c.notify({"kind": "prep", "vm": vm.id, "host": vm.prep.host})
            if vm.reach is None:
                self._local_submit(c, "prep", vm, job)
            else:
                c._submit("prep", vm, None, prep_guest, job,
                          resources={reach_resource(vm.reach): 1})
        now = time.monotonic()
        for vm_id, settling in list(self.settling.items()):
            if settling.in_flight or now < settling.next_at or c.cancelled:
                continue
            vm = c.vms[vm_id].spec
            settling.in_flight = True
            settling.submitted_at = now
            c._submit("settle", vm, None, probe_disks,
                      ProbeJob(vm.id, tuple((d.label, d.path) for d in vm.disks)),
                      resources={probe_resource(vm.source): 1})

    def _local_submit(self, c: Any, kind: str, vm: VmSpec, job: Any) -> None:
        if self.local is None:
            self.local = LocalRunner(self.limit)
        key = f"azlift-{c.run_id}-{kind}-{vm.id}"
        c.tasks[key] = (kind, vm.id, None)
        c.vms[vm.id].in_flight += 1
        self.local.submit(key, prep_guest, job, c.ctx)

    def completed(self, timeout: float = 0.0) -> list[tuple[str, Any, BaseException | None]]:
        if self.local is None:
            return []
        return self.local.wait(timeout)

    def cancel(self) -> None:
        self.waiting.clear()
        self.settling.clear()

    def close(self) -> None:
        if self.local is not None:
            self.local.close()

    # ---- results ----------------------------------------------------------------------
    def handle(self, kind: str, state: Any, result: dict[str, Any]) -> None:
        if kind == "prep":
            self._prepped(state, result)
        else:
            self._probed(state, result)

    def _prepped(self, state: Any, result: dict[str, Any]) -> None:
        c = self.c
        vm: VmSpec = state.spec
        self.running -= 1
        record = {key: result.get(key) for key in ("host", "os", "family", "distribution",
                                                    "findings", "outcome", "seconds", "worker")}
        guest = vm.prep.identity_key()
        if not result["ok"]:
            error = result.get("error") or {"code": "prep_failed", "message": "prep failed"}
            record["error"] = error
            c.store.set_prep(vm.id, guest, FAILED, record)
            c.store.event(c.run_id, vm.id, None, "prep_failed", record)
            c._fail(vm.id, error)
            return
        c.store.set_prep(vm.id, guest, DONE, record)
        c.store.event(c.run_id, vm.id, None, "prepped", {"host": vm.prep.host,
                                                         "worker": result.get("worker"),
                                                         "seconds": result.get("seconds")})
        if state.failed or c.cancelled:
            return
        self._settle(state)

    def _settle(self, state: Any) -> None:
        vm: VmSpec = state.spec
        self.c.store.set_vm(vm.id, phase="settle")
        now = time.monotonic()
        self.settling[vm.id] = _Settling(started=now, next_at=now)

    def _interval(self, vm: VmSpec) -> float:
        return min(5.0, max(0.2, vm.prep.settle_seconds / 4))

    def _probed(self, state: Any, result: dict[str, Any]) -> None:
        c = self.c
        vm: VmSpec = state.spec
        settling = self.settling.get(vm.id)
        if settling is None:
            return
        settling.in_flight = False
        now = time.monotonic()
        if not result["ok"]:
            del self.settling[vm.id]
            c._fail(vm.id, result.get("error") or {"code": "settle_failed", "message": ""})
            return
        stats = result["stats"]
        settling.missing = [label for label, value in stats.items() if value is None]
        if settling.missing or stats != settling.last:
            settling.changes += settling.last is not None
            settling.last = stats
            settling.first_seen = None if settling.missing else now
        elif settling.first_seen is not None and \
                settling.submitted_at - settling.first_seen >= vm.prep.settle_seconds:
            del self.settling[vm.id]
            c.store.event(c.run_id, vm.id, None, "settled", {
                "seconds": round(now - settling.started, 3), "changes": settling.changes})
            c._start_checks(state)
            return
        if vm.prep.settle_seconds == 0 and not settling.missing:
            del self.settling[vm.id]
            c.store.event(c.run_id, vm.id, None, "settled", {"seconds": 0, "changes": 0})
            c._start_checks(state)
            return
        if now - settling.started > vm.prep.settle_timeout:
            del self.settling[vm.id]
            c._fail(vm.id, {"code": "not_settled", "message": self._unsettled(vm, settling)})
            return
        settling.next_at = now + self._interval(vm)

    @staticmethod
    def _unsettled(vm: VmSpec, settling: _Settling) -> str:
        paths = {d.label: d.path for d in vm.disks}
        if settling.missing:
            return (f"{', '.join(paths[label] for label in settling.missing)} not found "
                    f"{vm.prep.settle_timeout:g} s after the guest stopped (settle_timeout); "
                    "is the path right?")
        return (f"the disk files still changed in size or time within the last "
                f"{vm.prep.settle_seconds:g} s, {vm.prep.settle_timeout:g} s after the guest "
                f"stopped answering ({settling.changes} change(s) seen; settle_timeout): is "
                "the VM really off in the hypervisor?")


def guests_to_prep(manifest: Manifest, store: Any | None, statuses: tuple[str, ...]) -> list[VmSpec]:
    """The VMs of a run whose guest would be generalized (prep not finished yet)."""
    rows = {row.id: row for row in store.vms()} if store is not None else {}
    chosen = []
    for vm in manifest.vms:
        if vm.prep is None:
            continue
        row = rows.get(vm.id)
        if row is not None and row.status not in statuses:
            continue
        if store is not None and store.prep_finished(vm.id, vm.prep.identity_key()):
            continue
        chosen.append(vm)
    return chosen


def plan_guests(manifest: Manifest, vms: list[VmSpec], engine: Any | None, ctx: TaskContext,
                poll: float = 0.25) -> list[dict[str, Any]]:
    """Each guest's findings and plan (``--dry-run``): read-only, nothing is changed.

    Default-reach guests are inspected from this process; the others on their workers."""
    from .runner import failure_of

    local = LocalRunner(manifest.limits.prep_guests)
    keys: dict[str, VmSpec] = {}
    results: dict[str, dict[str, Any]] = {}
    try:
        for vm in vms:
            key = f"azlift-{ctx.run_id}-plan-{vm.id}"
            keys[key] = vm
            job = PrepJob(vm.id, vm.prep, dry_run=True)
            if vm.reach is None or engine is None:
                local.submit(key, prep_guest, job, ctx)
            else:
                engine.submit(key, prep_guest, job, ctx,
                              resources={reach_resource(vm.reach): 1})
        while len(results) < len(keys):
            outcomes = local.wait(poll) + (engine.completed(poll) if engine is not None else [])
            for key, result, error in outcomes:
                vm = keys[key]
                if error is not None:
                    result = {"kind": "plan", "vm": vm.id, "ok": False, "error": failure_of(error)}
                results[key] = {"reach": vm.reach, **result}
    finally:
        local.close()
    return [results[key] for key in keys]


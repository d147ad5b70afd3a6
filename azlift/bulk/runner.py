"""The coordinator: turns the manifest into tasks, phase by phase, and records every
outcome in the state.

Per VM: check every disk (a not-ready disk fails its VM before any upload) → upload the
disks not yet done (at most ``max_disks`` per source at once, cluster-wide) → register
(its own task: a slow gallery replication never holds an upload slot) → done. Only this
module writes the state; the engine runs the tasks wherever their source is readable.
"""
from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .engine import TaskContext
from .errors import RunInterrupted
from .managed import ManagedDiskJob, upload_managed_disk
from .manifest import DiskSpec, Manifest, VmSpec
from .state import DONE, FAILED, PENDING, RUNNING, StateStore, VmRow
from .tasks import DiskJob, RegisterJob, check_disk, register_vm, upload_disk

Notify = Callable[[dict[str, Any]], None]
POLL_S = 0.25
SOURCE_POLL_S = 0.5
CANCEL_GRACE_S = 60.0
PRIORITY = {"prep": -20, "settle": -10, "check": 0, "upload": 10, "register": 20}


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def task_context(manifest: Manifest, run_id: str) -> TaskContext:
    return TaskContext(run_id=run_id, account_requests=manifest.limits.account_requests,
                       arm_writes=manifest.limits.arm_writes)


def disk_job(vm: VmSpec, disk: DiskSpec) -> DiskJob:
    settings = vm.settings
    return DiskJob(vm_id=vm.id, label=disk.label, path=disk.path, format=disk.format,
                   role=disk.role, target=vm.target_url(disk), emulator=settings.emulator,
                   auth_mode=settings.auth_mode, threads=settings.threads,
                   overwrite=settings.overwrite, verify=settings.verify)


def upload_task(vm: VmSpec, disk: DiskSpec) -> tuple[Any, Any]:
    """The task that uploads ``disk`` and its job: into a blob, or a managed disk."""
    if vm.settings.managed_disk:
        return upload_managed_disk, ManagedDiskJob(
            vm_id=vm.id, label=disk.label, path=disk.path, format=disk.format, role=disk.role,
            name=vm.disk_name(disk), settings=vm.settings)
    return upload_disk, disk_job(vm, disk)


def source_resources(manifest: Manifest) -> dict[str, float]:
    """Worker resources of an embedded cluster: every source, its max_disks slots."""
    return {source.resource: float(source.max_disks) for source in manifest.sources}


def embedded_resources(manifest: Manifest) -> dict[str, float]:
    """Everything the one worker of an embedded cluster serves: sources, their probes and
    the reaches of guests to prepare."""
    from .prep_phase import prep_resources

    return {**source_resources(manifest), **prep_resources(manifest)}


def failure_of(error: BaseException) -> dict[str, str]:
    """A task that raised instead of reporting (a lost worker, a scheduler refusal)."""
    from .tasks import error_result

    name = type(error).__name__
    if name == "KilledWorker":
        return {"code": "worker_lost", "message": f"the workers running this task died "
                                                  f"repeatedly: {error}"}
    if name == "NoValidWorkerError":
        return {"code": "no_worker", "message": f"no worker can run this task (no worker "
                                                f"serves its source): {error}"}
    return error_result(error)


@dataclass
class _Vm:
    """The coordinator's view of one VM in this run."""

    spec: VmSpec
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    uploads_left: set[str] = field(default_factory=set)
    in_flight: int = 0
    failed: bool = False
    interrupted: bool = False
    workers: list[str] = field(default_factory=list)


def sources_served(engine: Any, manifest: Manifest, sources: set[str], wait: float,
                   notify: Notify) -> set[str]:
    """The sources at least one worker serves, waiting up to ``wait`` seconds for the rest."""
    served: set[str] = set()
    deadline = time.monotonic() + wait
    while True:
        served |= {name for name in sources - served
                   if engine.workers_for(manifest.source(name).resource)}
        if served == sources or time.monotonic() >= deadline:
            return served
        notify({"kind": "waiting", "sources": ", ".join(sorted(sources - served))})
        time.sleep(SOURCE_POLL_S)


class Coordinator:
    """Runs one manifest on one engine, recording into one state store."""

    def __init__(self, manifest: Manifest, store: StateStore, engine: Any, run_id: str, *,
                 notify: Notify | None = None, wait_for_workers: float = 60.0) -> None:
        self.manifest = manifest
        self.store = store
        self.engine = engine
        self.run_id = run_id
        self.ctx = task_context(manifest, run_id)
        self.notify = notify or (lambda message: None)
        self.wait_for_workers = wait_for_workers
        self.vms: dict[str, _Vm] = {}
        self.tasks: dict[str, tuple[str, str, str | None]] = {}  # key -> (kind, vm, disk)
        self.queues: dict[str, deque[tuple[str, str]]] = {}
        self.reading: dict[str, int] = {}
        self.cancelled = False
        from .prep_phase import PrepPhase

        self.prep = PrepPhase(self)

    # ---- entry points -----------------------------------------------------------------------
    def run(self, *, retry_failed: bool = False) -> None:
        """Run every VM not done (failed ones too with ``retry_failed``)."""
        self.store.sync(self.manifest)
        self.store.start_run(self.run_id, self.engine.address)
        rows = {row.id: row for row in self.store.vms()}
        wanted = (PENDING, RUNNING, FAILED) if retry_failed else (PENDING, RUNNING)
        todo = [vm for vm in self.manifest.vms if rows[vm.id].status in wanted]
        self.notify({"kind": "plan", "vms": len(todo), "skipped": len(self.manifest.vms) - len(todo)})
        status = "done"
        try:
            served = sources_served(self.engine, self.manifest, {vm.source for vm in todo},
                                    self.wait_for_workers, self.notify)
            self.prep.wait_for_reach(todo, self.wait_for_workers)
            for vm in todo:
                if vm.source in served:
                    self._start(vm, rows[vm.id])
                else:
                    self._begin(vm)
                    self._fail(vm.id, {"code": "no_worker", "message": (
                        f"no worker serves source {vm.source!r} (waited "
                        f"{self.wait_for_workers:g} s); start one with `azlift bulk worker "
                        f"SCHEDULER --source {vm.source}`")})
            self._loop()
        except KeyboardInterrupt:
            status = "interrupted"
            self._cancel()
        finally:
            self.prep.close()
            self.store.end_run(self.run_id, status)
        if status == "interrupted":
            raise RunInterrupted("interrupted: the run stopped and its state is kept; run the "
                                 "same command again to continue")

    # ---- phases -----------------------------------------------------------------------------
    def _begin(self, vm: VmSpec) -> _Vm:
        state = self.vms[vm.id] = _Vm(vm)
        self.store.add_attempt(vm.id)
        self.store.set_vm(vm.id, status=RUNNING, error=None)
        self.store.event(self.run_id, vm.id, None, "start")
        return state

    def _start(self, vm: VmSpec, row: VmRow) -> None:
        state = self._begin(vm)
        if row.phase == "register" and all(d.status == DONE for d in row.disks) and row.hints:
            self._register(state, row.hints)
            return
        if self.prep.needs(vm, row.phase):
            self.prep.start(state)  # prep (unless finished before), settle, then checks
            return
        self._start_checks(state)

    def _start_checks(self, state: _Vm) -> None:
        vm = state.spec
        self.store.set_vm(vm.id, phase="check")
        for disk in vm.disks:
            self._submit("check", vm, disk, check_disk, disk_job(vm, disk),
                         resources={self.manifest.source(vm.source).resource: 1})

    def _submit(self, kind: str, vm: VmSpec, disk: DiskSpec | None, function: Any, job: Any,
                resources: dict[str, float] | None = None) -> None:
        label = disk.label if disk else None
        key = f"azlift-{self.run_id}-{kind}-{vm.id}" + (f"-{label}" if label else "")
        self.tasks[key] = (kind, vm.id, label)
        self.vms[vm.id].in_flight += 1
        self.engine.submit(key, function, job, self.ctx, resources=resources,
                           priority=PRIORITY[kind])

    def _checked(self, state: _Vm, result: dict[str, Any]) -> None:
        vm = state.spec
        state.checks[result["disk"]] = result
        self.store.event(self.run_id, vm.id, result["disk"], "checked",
                         {"ok": result["ok"], "error": result.get("error")})
        if not result["ok"]:
            self._fail(vm.id, result.get("error") or {"code": "not_ready", "message": "not ready"})
            return
        if len(state.checks) < len(vm.disks) or state.failed:
            return
        os_check = next((state.checks[d.label] for d in vm.disks if d.role == "os"), None)
        hints = {key: (os_check or {}).get(key) for key in
                 ("os_type_hint", "generation_hint", "reasons")}
        self.store.set_vm(vm.id, phase="upload", hints=hints)
        row = self.store.vm(vm.id)
        done = {disk.label for disk in row.disks if disk.status == DONE}
        state.uploads_left = {disk.label for disk in vm.disks if disk.label not in done}
        if not state.uploads_left:
            self._uploaded(state, hints)
            return
        queue = self.queues.setdefault(vm.source, deque())
        for disk in vm.disks:
            if disk.label in state.uploads_left:
                queue.append((vm.id, disk.label))

    def _dispatch(self) -> None:
        """Start queued uploads while their source has a free slot (cluster-wide)."""
        for source, queue in self.queues.items():
            limit = self.manifest.source(source).max_disks
            while queue and self.reading.get(source, 0) < limit and not self.cancelled:
                vm_id, label = queue.popleft()
                state = self.vms[vm_id]
                if state.failed:
                    continue
                disk = next(d for d in state.spec.disks if d.label == label)
                self.reading[source] = self.reading.get(source, 0) + 1
                self.store.set_disk(vm_id, label, status=RUNNING)
                function, job = upload_task(state.spec, disk)
                self._submit("upload", state.spec, disk, function, job,
                             resources={self.manifest.source(source).resource: 1})

    def _upload_done(self, state: _Vm, result: dict[str, Any]) -> None:
        vm = state.spec
        self.reading[vm.source] -= 1
        label = result["disk"]
        counters = {name: result.get(name) or 0 for name in
                    ("bytes_sent", "zero_bytes_skipped", "seconds", "throttled", "retries")}
        ok = result["ok"]
        self.store.set_disk(vm.id, label, status=DONE if ok else FAILED,
                            target=result.get("target"), worker=result.get("worker"), **counters)
        self.store.event(self.run_id, vm.id, label, "uploaded" if ok else "upload_failed",
                         {k: result.get(k) for k in ("worker", "bytes_sent", "already",
                                                     "throttled", "arm_throttled", "error",
                                                     "notes")})
        if result.get("worker") and result["worker"] not in state.workers:
            state.workers.append(result["worker"])
        self.notify({"kind": "disk", "vm": vm.id, "disk": label, "ok": ok,
                     "bytes_sent": counters["bytes_sent"]})
        if not ok:
            error = result.get("error") or {}
            if error.get("code") == "interrupted" and self.cancelled:
                state.interrupted = True
                return
            self._fail(vm.id, error)
            return
        state.uploads_left.discard(label)
        if not state.uploads_left and not state.failed:
            self._uploaded(state, self.store.vm(vm.id).hints or {})

    def _uploaded(self, state: _Vm, hints: dict[str, Any]) -> None:
        vm = state.spec
        if state.workers:
            self.store.set_vm(vm.id, worker=",".join(state.workers))
        if vm.settings.managed_disk:
            # The managed disks are resources of their own; register = "disk" is them.
            self.store.set_vm(vm.id, resources=[{"kind": "disk", "id": disk.target}
                                                for disk in self.store.vm(vm.id).disks])
        if vm.settings.register == "none" or (vm.settings.managed_disk
                                              and vm.settings.register == "disk"):
            self._done(vm.id)
            return
        self._register(state, hints)

    def _register(self, state: _Vm, hints: dict[str, Any]) -> None:
        vm = state.spec
        row = self.store.vm(vm.id)
        targets = {disk.label: disk.target for disk in row.disks}
        job = RegisterJob(vm_id=vm.id, settings=vm.settings,
                          disks=tuple((d.label, d.role, d.lun, targets[d.label] or "")
                                      for d in vm.disks),
                          os_type_hint=hints.get("os_type_hint"),
                          generation_hint=hints.get("generation_hint"),
                          reasons=tuple(hints.get("reasons") or ()))
        self.store.set_vm(vm.id, phase="register")
        self._submit("register", vm, None, register_vm, job)

    def _registered(self, state: _Vm, result: dict[str, Any]) -> None:
        vm_id = state.spec.id
        self.store.event(self.run_id, vm_id, None, "registered" if result["ok"] else
                         "register_failed", {"resources": result.get("resources"),
                                             "arm_throttled": result.get("arm_throttled"),
                                             "error": result.get("error")})
        if not result["ok"]:
            self._fail(vm_id, result.get("error") or {})
            return
        known = self.store.vm(vm_id).resources  # a managed-disk VM's disks come first
        self.store.set_vm(vm_id, resources=known + [resource for resource in
                                                    result.get("resources") or []
                                                    if resource not in known])
        self._done(vm_id)

    def _done(self, vm_id: str) -> None:
        self.store.set_vm(vm_id, status=DONE, phase="done", error=None)
        self.store.event(self.run_id, vm_id, None, "done")
        self.notify({"kind": "vm", "vm": vm_id, "status": DONE})

    def _fail(self, vm_id: str, error: dict[str, str]) -> None:
        state = self.vms[vm_id]
        if state.failed:
            return
        state.failed = True
        error = {"code": error.get("code") or "failed", "message": error.get("message") or ""}
        self.store.set_vm(vm_id, status=FAILED, error=error)
        self.store.event(self.run_id, vm_id, None, "failed", error)
        self.notify({"kind": "vm", "vm": vm_id, "status": FAILED, "error": error})

    # ---- the loop ---------------------------------------------------------------------------
    def _busy(self) -> bool:
        return any(state.in_flight for state in self.vms.values()) or any(
            queue for queue in self.queues.values()) or self.prep.busy()

    def _loop(self, deadline: float | None = None) -> None:
        while self._busy():
            self._dispatch()
            self.prep.dispatch()
            if deadline is not None and time.monotonic() > deadline:
                return
            for key, result, error in self.engine.completed(POLL_S) + self.prep.completed():
                self._handle(key, result, error)

    def _handle(self, key: str, result: Any, error: BaseException | None) -> None:
        kind, vm_id, label = self.tasks.pop(key)
        state = self.vms[vm_id]
        state.in_flight -= 1
        if error is not None or not isinstance(result, dict):
            failure = failure_of(error) if error is not None else {
                "code": "internal_error", "message": f"task {kind} returned {result!r}"}
            result = {"kind": kind, "vm": vm_id, "disk": label, "ok": False, "error": failure}
        if kind in ("prep", "settle"):
            self.prep.handle(kind, state, result)
        elif kind == "check":
            self._checked(state, result)
        elif kind == "upload":
            self._upload_done(state, result)
        else:
            self._registered(state, result)

    def _cancel(self) -> None:
        """Ctrl-C: stop queued work, tell running tasks to stop, record what they report."""
        self.cancelled = True
        self.engine.cancel()
        for queue in self.queues.values():
            queue.clear()
        self.prep.cancel()
        self.notify({"kind": "cancelling"})
        try:
            self._loop(deadline=time.monotonic() + CANCEL_GRACE_S)
        except KeyboardInterrupt:
            pass
        for vm_id, state in self.vms.items():
            if not state.failed and self.store.vm(vm_id).status == RUNNING:
                self.store.set_vm(vm_id, status=PENDING)


def check_all(manifest: Manifest, engine: Any, run_id: str, *,
              notify: Notify | None = None, wait_for_workers: float = 60.0) -> list[dict[str, Any]]:
    """Check every disk of the manifest in parallel; nothing is uploaded or recorded."""
    ctx = task_context(manifest, run_id)
    notify = notify or (lambda message: None)
    results: list[dict[str, Any]] = []
    keys: dict[str, tuple[VmSpec, DiskSpec]] = {}
    served = sources_served(engine, manifest, {vm.source for vm in manifest.vms},
                            wait_for_workers, notify)
    for vm in manifest.vms:
        for disk in vm.disks:
            if vm.source not in served:
                results.append({"kind": "check", "vm": vm.id, "disk": disk.label, "ok": False,
                                "worker": None, "error": {"code": "no_worker", "message": (
                                    f"no worker serves source {vm.source!r}")}})
                continue
            key = f"azlift-{run_id}-check-{vm.id}-{disk.label}"
            keys[key] = (vm, disk)
            engine.submit(key, check_disk, disk_job(vm, disk), ctx,
                          resources={manifest.source(vm.source).resource: 1})
    while keys:
        for key, result, error in engine.completed(POLL_S):
            vm, disk = keys.pop(key)
            if error is not None:
                result = {"kind": "check", "vm": vm.id, "disk": disk.label, "ok": False,
                          "worker": None, "error": failure_of(error)}
            result["path"] = disk.path
            results.append(result)
            notify({"kind": "checked", **result})
    order = {(vm.id, disk.label): n for n, (vm, disk) in
             enumerate((vm, disk) for vm in manifest.vms for disk in vm.disks)}
    return sorted(results, key=lambda r: order[(r["vm"], r["disk"])])


def _prep_plan(vm: VmSpec, status: str, finished: bool) -> dict[str, Any]:
    prep = vm.prep
    assert prep is not None
    return {"host": prep.host, "os": prep.os, "reach": vm.reach or "coordinator",
            "action": "skip (finished)" if finished or status == DONE else "generalize",
            "settle_seconds": prep.settle_seconds, "settle_timeout": prep.settle_timeout}


def plan(manifest: Manifest, rows: dict[str, VmRow] | None = None,
         prepped: Callable[[VmSpec], bool] = lambda vm: False) -> list[dict[str, Any]]:
    """What a run would do per VM (``--dry-run``): no file is read, no Azure call made.
    ``prepped(vm)`` says whether its guest was generalized in an earlier run."""
    rows = rows or {}
    entries = []
    for vm in manifest.vms:
        row = rows.get(vm.id)
        status = row.status if row else PENDING
        settings = vm.settings
        name = {"image": settings.image_name or vm.id,
                "gallery-version": f"{settings.gallery}/{settings.gallery_image}/"
                                   f"{settings.gallery_version}",
                "disk": ", ".join(vm.disk_name(d) for d in vm.disks)}.get(settings.register)
        entries.append({
            "id": vm.id, "source": vm.source, "status": status,
            "action": "skip (done)" if status == DONE else "run",
            "disks": [{"path": d.path, "role": d.role, "lun": d.lun,
                       "target": vm.target_url(d)} for d in vm.disks],
            "register": settings.register, "resource": name,
            "resource_group": settings.resource_group, "location": settings.location,
            "prep": _prep_plan(vm, status, prepped(vm)) if vm.prep is not None else None,
        })
    return entries

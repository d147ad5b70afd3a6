"""The run state: one SQLite file, written only by the coordinator.

One row per VM and per disk (status, phase, attempts, bytes, resource ids, last error),
an append-only events table and one row per run. Workers never open it: they report
through task results and progress events, so the file never sits on a network share.
A rerun trusts this file and Azure (blob metadata and page ranges), nothing else.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import StateError
from .manifest import Manifest, VmSpec

PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS vms (
    id TEXT PRIMARY KEY, position INTEGER NOT NULL, spec TEXT NOT NULL,
    status TEXT NOT NULL, phase TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    worker TEXT, error_code TEXT, error_message TEXT, resources TEXT NOT NULL DEFAULT '[]',
    hints TEXT, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS disks (
    vm_id TEXT NOT NULL, label TEXT NOT NULL, position INTEGER NOT NULL, path TEXT NOT NULL,
    target TEXT, status TEXT NOT NULL, bytes_sent INTEGER NOT NULL DEFAULT 0,
    zero_bytes_skipped INTEGER NOT NULL DEFAULT 0, resumed_bytes INTEGER NOT NULL DEFAULT 0,
    seconds REAL NOT NULL DEFAULT 0, throttled INTEGER NOT NULL DEFAULT 0,
    retries INTEGER NOT NULL DEFAULT 0, worker TEXT, PRIMARY KEY (vm_id, label));
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, run_id TEXT, vm_id TEXT,
    disk TEXT, kind TEXT NOT NULL, detail TEXT);
CREATE TABLE IF NOT EXISTS preps (
    vm_id TEXT PRIMARY KEY, guest TEXT NOT NULL, status TEXT NOT NULL, finished REAL,
    result TEXT);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, started REAL NOT NULL, ended REAL, status TEXT NOT NULL,
    scheduler TEXT);
"""


def default_state_path(manifest_path: str | Path, state_root: Path | None = None) -> Path:
    """``<state dir>/bulk/<manifest name>-<hash of its absolute path>.sqlite``."""
    from azlift.upload.journal import state_dir

    path = Path(manifest_path).resolve()
    tag = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    return (state_root or state_dir()) / "bulk" / f"{path.stem}-{tag}.sqlite"


def vm_spec_digest(vm: VmSpec) -> str:
    """What a VM's row was made from: a changed spec starts the VM over."""
    spec = asdict(vm)
    for name in ("prep", "reach"):  # absent keys leave the digests of older rows as they were
        if spec.get(name) is None:
            spec.pop(name, None)
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class DiskRow:
    vm_id: str
    label: str
    path: str
    target: str | None
    status: str
    bytes_sent: int
    zero_bytes_skipped: int
    resumed_bytes: int
    seconds: float
    throttled: int
    retries: int
    worker: str | None


@dataclass(frozen=True)
class VmRow:
    id: str
    status: str
    phase: str
    attempts: int
    worker: str | None
    error_code: str | None
    error_message: str | None
    resources: list[dict[str, str]]
    hints: dict[str, Any] | None
    disks: tuple[DiskRow, ...]

    @property
    def error(self) -> dict[str, str] | None:
        if self.error_code is None:
            return None
        return {"code": self.error_code, "message": self.error_message or ""}


class StateStore:
    """The SQLite file of one manifest's runs."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as error:
            raise StateError(f"cannot open the state file {self.path}: {error}") from None

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def only_run(self) -> Iterator[None]:
        """Hold the state file for one `bulk run`: a second run on it would send every
        disk again and write over the first's records. StateError while another holds it."""
        lock = self._lock(exclusive=True)
        if lock is None:
            raise StateError(f"another `azlift bulk run` is using the state file {self.path}; "
                             f"expected one run at a time (wait for it to end, or give "
                             f"this one its own --state)")
        try:
            yield
        finally:
            os.close(lock)

    def run_in_progress(self) -> bool:
        """True while a `bulk run` holds the state file: status and report then only read
        it (their sync would rewrite rows the run is writing)."""
        lock = self._lock(exclusive=False)
        if lock is None:
            return True
        os.close(lock)
        return False

    def _lock(self, exclusive: bool) -> int | None:
        """A descriptor holding an flock on the lock file beside the state; None when
        another process holds it (no locking where the system has no flock)."""
        try:
            import fcntl
        except ImportError:  # Windows: one run per state file is up to the user
            return os.open(os.devnull, os.O_RDONLY)
        path = self.path.with_name(self.path.name + ".lock")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as error:
            raise StateError(f"cannot open {path}: {error.strerror}") from None
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # ---- the manifest's rows ------------------------------------------------------------
    def sync(self, manifest: Manifest) -> list[str]:
        """Add rows for new VMs, start over the VMs whose spec changed; return those ids."""
        now = time.time()
        changed = []
        with self.transaction() as db:
            known = {row[0]: row[1] for row in db.execute("SELECT id, spec FROM vms")}
            for position, vm in enumerate(manifest.vms):
                spec = vm_spec_digest(vm)
                if known.get(vm.id) == spec:
                    db.execute("UPDATE vms SET position=? WHERE id=?", (position, vm.id))
                    continue
                if vm.id in known:
                    changed.append(vm.id)
                    db.execute("DELETE FROM disks WHERE vm_id=?", (vm.id,))
                    db.execute("DELETE FROM vms WHERE id=?", (vm.id,))
                db.execute("INSERT INTO vms (id, position, spec, status, phase, updated) "
                           "VALUES (?, ?, ?, ?, ?, ?)", (vm.id, position, spec, PENDING,
                                                         "prep" if vm.prep else "check", now))
                for number, disk in enumerate(vm.disks):
                    db.execute("INSERT INTO disks (vm_id, label, position, path, status) "
                               "VALUES (?, ?, ?, ?, ?)", (vm.id, disk.label, number, disk.path,
                                                          PENDING))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('manifest', ?)", (manifest.path,))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        return changed

    # ---- reading ------------------------------------------------------------------------
    def vms(self) -> list[VmRow]:
        return self._rows()

    def vm(self, vm_id: str) -> VmRow:
        """One VM's row, read by key (the coordinator asks once per finished task: reading
        every row each time made a thousand-VM run quadratic)."""
        [row] = self._rows(vm_id)
        return row

    def _rows(self, vm_id: str | None = None) -> list[VmRow]:
        """Every VM's row (or ``vm_id``'s alone) with its disks, in manifest order."""
        vm_where, disk_where, args = (("WHERE id = ?", "WHERE vm_id = ?", (vm_id,))
                                      if vm_id is not None else ("", "", ()))
        rows = self.db.execute(
            "SELECT id, status, phase, attempts, worker, error_code, error_message, resources, "
            f"hints FROM vms {vm_where} ORDER BY position", args).fetchall()
        disks: dict[str, list[DiskRow]] = {}
        for row in self.db.execute(
                "SELECT vm_id, label, path, target, status, bytes_sent, zero_bytes_skipped, "
                "resumed_bytes, seconds, throttled, retries, worker FROM disks "
                f"{disk_where} ORDER BY vm_id, position", args):
            disks.setdefault(row[0], []).append(DiskRow(*row))
        return [_vm_row(r, disks.get(r[0], ())) for r in rows]

    def run_seconds(self) -> float:
        [(total,)] = self.db.execute(
            "SELECT COALESCE(SUM(COALESCE(ended, started) - started), 0) FROM runs").fetchall()
        return float(total)

    def events(self, vm_id: str | None = None,
               kinds: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
        """The events (of ``vm_id``, of ``kinds``), oldest first."""
        query = "SELECT ts, run_id, vm_id, disk, kind, detail FROM events"
        where, args = [], []
        if vm_id is not None:
            where.append("vm_id=?")
            args.append(vm_id)
        if kinds is not None:
            where.append(f"kind IN ({', '.join('?' * len(kinds))})")
            args.extend(kinds)
        if where:
            query += " WHERE " + " AND ".join(where)
        return [{"ts": r[0], "run": r[1], "vm": r[2], "disk": r[3], "kind": r[4],
                 "detail": json.loads(r[5]) if r[5] else None}
                for r in self.db.execute(query + " ORDER BY id", args)]

    # ---- writing ------------------------------------------------------------------------
    def start_run(self, run_id: str, scheduler: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO runs VALUES (?, ?, NULL, 'running', ?)",
                       (run_id, time.time(), scheduler))

    def end_run(self, run_id: str, status: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE runs SET ended=?, status=? WHERE run_id=?",
                       (time.time(), status, run_id))
            db.execute("UPDATE vms SET status=? WHERE status=?", (PENDING, RUNNING))

    def event(self, run_id: str, vm_id: str | None, disk: str | None, kind: str,
              detail: dict[str, Any] | None = None) -> None:
        self.db.execute("INSERT INTO events (ts, run_id, vm_id, disk, kind, detail) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (time.time(), run_id, vm_id, disk, kind,
                         json.dumps(detail, default=str) if detail is not None else None))

    def set_vm(self, vm_id: str, **fields: Any) -> None:
        if "resources" in fields:
            fields["resources"] = json.dumps(fields["resources"])
        if "hints" in fields:
            fields["hints"] = json.dumps(fields["hints"])
        if "error" in fields:
            error = fields.pop("error")
            fields["error_code"] = error["code"] if error else None
            fields["error_message"] = error["message"] if error else None
        fields["updated"] = time.time()
        assignments = ", ".join(f"{name}=?" for name in fields)
        self.db.execute(f"UPDATE vms SET {assignments} WHERE id=?", (*fields.values(), vm_id))

    # ---- the prep phase: kept apart from the VM's row, so a changed spec never makes a
    # generalized guest look unprepared
    def prep(self, vm_id: str) -> dict[str, Any] | None:
        """The last prep of ``vm_id``: guest, status, finished (epoch s), result (dict)."""
        row = self.db.execute("SELECT guest, status, finished, result FROM preps WHERE vm_id=?",
                              (vm_id,)).fetchone()
        if row is None:
            return None
        return {"guest": row[0], "status": row[1], "finished": row[2],
                "result": json.loads(row[3]) if row[3] else None}

    def prep_finished(self, vm_id: str, guest: str) -> bool:
        """Whether ``guest`` (PrepSpec.identity_key) was generalized for ``vm_id``."""
        record = self.prep(vm_id)
        return record is not None and record["guest"] == guest and record["status"] == DONE

    def set_prep(self, vm_id: str, guest: str, status: str,
                 result: dict[str, Any] | None = None) -> None:
        if self.prep_finished(vm_id, guest) and status != DONE:
            return  # a finished prep stays finished
        self.db.execute("INSERT OR REPLACE INTO preps VALUES (?, ?, ?, ?, ?)",
                        (vm_id, guest, status, time.time() if status in (DONE, FAILED) else None,
                         json.dumps(result, default=str) if result is not None else None))

    def add_attempt(self, vm_id: str) -> None:
        self.db.execute("UPDATE vms SET attempts=attempts+1 WHERE id=?", (vm_id,))

    def set_disk(self, vm_id: str, label: str, **fields: Any) -> None:
        """Set disk fields; bytes sent, seconds, throttled and retries are added to what
        earlier attempts recorded (the zeros skipped are the last attempt's)."""
        added = ("bytes_sent", "seconds", "throttled", "retries")
        parts = [f"{name}={name}+?" if name in added else f"{name}=?" for name in fields]
        self.db.execute(f"UPDATE disks SET {', '.join(parts)} WHERE vm_id=? AND label=?",
                        (*fields.values(), vm_id, label))


def _vm_row(row: tuple[Any, ...], disks: Any) -> VmRow:
    return VmRow(row[0], row[1], row[2], row[3], row[4], row[5], row[6], json.loads(row[7]),
                 json.loads(row[8]) if row[8] else None, tuple(disks))

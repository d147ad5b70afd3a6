"""The run report (schema ``azlift.bulk.report/1``) from the state, as JSON or CSV."""
from __future__ import annotations

import csv
import io
from collections.abc import Collection
from typing import Any

from .state import DONE, FAILED, StateStore, VmRow

SCHEMA = "azlift.bulk.report/1"
CSV_COLUMNS = ("vm", "status", "phase", "phases", "prep", "attempts", "worker", "disk", "path",
               "target",
               "bytes_sent", "zero_bytes_skipped", "seconds", "throttled", "arm_throttled",
               "resources", "error_code", "error_message")
# The events whose detail counts the 429 answers ARM gave a VM's tasks.
ARM_EVENTS = ("uploaded", "upload_failed", "registered", "register_failed")


def _vm_status(row: VmRow) -> str:
    return row.status if row.status in (DONE, FAILED) else "pending"


def vm_entry(row: VmRow) -> dict[str, Any]:
    return {
        "id": row.id, "status": _vm_status(row), "phase": row.phase, "attempts": row.attempts,
        "worker": row.worker,
        "disks": [{"path": disk.path, "target": disk.target, "bytes_sent": disk.bytes_sent,
                   "zero_bytes_skipped": disk.zero_bytes_skipped,
                   "seconds": round(disk.seconds, 3), "throttled": disk.throttled,
                   "worker": disk.worker}
                  for disk in row.disks],
        "resources": row.resources,
        "error": row.error,
    }


ORDER = ("prep", "settle", "check", "upload", "verify", "register")


def phases_passed(row: VmRow, prepped: bool) -> list[str]:
    """The phases a VM has passed, in order (an upload is verified before it counts)."""
    if row.status == DONE:
        return [phase for phase in ORDER if (phase not in ("prep", "settle") or prepped)
                and (phase != "register" or row.resources)]
    current = {"done": len(ORDER)}.get(row.phase, ORDER.index(row.phase)
                                        if row.phase in ORDER else 0)
    return [phase for phase in ORDER[:current] if phase not in ("prep", "settle") or prepped]


def prep_entry(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """The prep phase of a VM as the report shows it (None: the VM has no prep)."""
    if record is None:
        return None
    result = record["result"] or {}
    return {"status": record["status"] if record["status"] != "running" else "pending",
            "finished": record["finished"],
            **{key: result.get(key) for key in ("host", "os", "family", "distribution",
                                                "worker", "seconds", "findings", "outcome",
                                                "error")}}


def build_report(store: StateStore, manifest_path: str,
                 vm_ids: Collection[str] | None = None) -> dict[str, Any]:
    """Every VM with its disks, resources and last error, and the run's totals; only the
    VMs of ``vm_ids`` (the manifest's), when given: one taken out of the manifest no
    longer counts (its failure would fail every later run)."""
    arm_throttled: dict[str, int] = {}
    for event in store.events(kinds=ARM_EVENTS):
        count = (event["detail"] or {}).get("arm_throttled") or 0
        arm_throttled[event["vm"]] = arm_throttled.get(event["vm"], 0) + count
    vms = []
    for row in store.vms():
        if vm_ids is not None and row.id not in vm_ids:
            continue
        entry = vm_entry(row)
        entry["arm_throttled"] = arm_throttled.get(row.id, 0)
        record = store.prep(row.id)
        entry["prep"] = prep_entry(record)
        entry["phases"] = phases_passed(row, record is not None and record["status"] == DONE)
        vms.append(entry)
    disks = [disk for vm in vms for disk in vm["disks"]]
    totals = {
        "vms": len(vms),
        "done": sum(vm["status"] == DONE for vm in vms),
        "failed": sum(vm["status"] == FAILED for vm in vms),
        "pending": sum(vm["status"] == "pending" for vm in vms),
        "bytes_sent": sum(disk["bytes_sent"] for disk in disks),
        "zero_bytes_skipped": sum(disk["zero_bytes_skipped"] for disk in disks),
        "throttled": sum(disk["throttled"] for disk in disks),
        "arm_throttled": sum(vm["arm_throttled"] for vm in vms),
        "seconds": round(store.run_seconds(), 3),
    }
    return {"schema": SCHEMA, "manifest": manifest_path, "totals": totals, "vms": vms}


def report_csv(report: dict[str, Any]) -> str:
    """One row per disk (a VM without disks gets one row), for spreadsheets."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for vm in report["vms"]:
        error = vm["error"] or {}
        common = {"vm": vm["id"], "status": vm["status"], "phase": vm["phase"],
                  "phases": " ".join(vm.get("phases") or ()),
                  "prep": (vm.get("prep") or {}).get("status", ""),
                  "attempts": vm["attempts"], "worker": vm["worker"] or "",
                  "arm_throttled": vm.get("arm_throttled", 0),
                  "resources": " ".join(r["id"] for r in vm["resources"]),
                  "error_code": error.get("code", ""), "error_message": error.get("message", "")}
        for index, disk in enumerate(vm["disks"] or [None]):
            row = dict(common)
            if disk is not None:
                row.update(disk=index, path=disk["path"], target=disk["target"] or "",
                           bytes_sent=disk["bytes_sent"],
                           zero_bytes_skipped=disk["zero_bytes_skipped"],
                           seconds=disk["seconds"], throttled=disk["throttled"])
            writer.writerow(row)
    return out.getvalue()

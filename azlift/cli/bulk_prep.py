"""The prep phase's part of `azlift bulk run` (and `azlift lift`): the confirmation that
lists the guests a run will generalize, and the guests' plans for --dry-run."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from . import common
from .common import STATE, say, warn


def pending_guests(manifest: Any, state_path: Path, retry_failed: bool) -> list[Any]:
    """The VMs whose guest this run would generalize. Reads the state only if it exists,
    so a refused run leaves no file behind."""
    from ..bulk import StateStore
    from ..bulk.prep_phase import guests_to_prep

    statuses = ("pending", "running", "failed") if retry_failed else ("pending", "running")
    if not any(vm.prep is not None for vm in manifest.vms):
        return []
    if not state_path.exists():
        return guests_to_prep(manifest, None, statuses)
    store = StateStore(state_path)
    try:
        return guests_to_prep(manifest, store, statuses)
    finally:
        store.close()


def confirm_generalizing(vms: list[Any], yes: bool) -> None:
    """List the guests and the backup reminder; go on with --yes or a yes on the terminal,
    else NotConfirmedError (exit 5) before anything was touched."""
    from azlift.prep.errors import NotConfirmedError
    from azlift.prep.plan import BACKUP_REMINDER

    if not vms:
        return
    say(f"This run generalizes {len(vms)} guest(s) and powers them off:")
    for vm in vms:
        reach = f", from reach {vm.reach}" if vm.reach else ""
        say(f"  {vm.id}: {vm.prep.os} guest {vm.prep.host} as {vm.prep.login}{reach}")
    say(BACKUP_REMINDER)
    if yes:
        return
    if not common.stdin_is_terminal():
        raise NotConfirmedError(f"refusing to generalize {len(vms)} guest(s) without "
                                "confirmation: no terminal to ask on; pass --yes once every "
                                "one of them is backed up")
    if not common.confirm(f"Generalize these {len(vms)} guest(s) and power them off?"):
        raise NotConfirmedError("not confirmed: no guest was touched")


def guest_plans(manifest: Any, vms: list[Any], engine_factory: Any, run_id: str) -> list[dict]:
    """Each guest's findings and plan, read-only (engine only for guests with a reach)."""
    from ..bulk.prep_phase import plan_guests
    from ..bulk.runner import task_context

    if not vms:
        return []
    engine = engine_factory() if any(vm.reach for vm in vms) else None
    try:
        return plan_guests(manifest, vms, engine, task_context(manifest, run_id))
    finally:
        if engine is not None:
            engine.close()


def render_guest_plan(result: dict[str, Any]) -> None:
    """One guest's plan as `azlift prep ... --dry-run` prints it."""
    from azlift.prep.plan import Finding, Severity, Step

    host = result.get("host") or result["vm"]
    if not result.get("ok"):
        error = result.get("error") or {}
        say(f"{result['vm']}: cannot plan the prep of {host}: {error.get('code')}: "
            f"{error.get('message')}", err=False)
        return
    say(f"{result['vm']}: {result['os']} guest {host}"
        + (f" ({result['distribution']}, family {result['family']})"
           if result.get("family") else ""), err=False)
    common.render_findings([Finding(f["code"], Severity(f["severity"]), f["message"],
                                    f.get("remediation", "")) for f in result["findings"]])
    plan = result["plan"]
    steps = [Step(s["description"], s["command"], s["destructive"], s.get("source", ""))
             for s in plan["steps"]]
    detached = plan.get("detached_from")

    def marks(number: int, step: Any) -> str:
        return (" [destructive]" if step.destructive else "") + (
            " [detached, after the session]" if detached is not None and number > detached
            else "")
    common.render_plan(plan["target"] + (f" ({plan['family']})" if plan.get("family") else ""),
                       steps, plan.get("warnings", ()), marks=marks)
    if not result.get("ready"):
        warn(f"{result['vm']}: blocking findings: a real run fails this VM at prep")


def with_guest_plans(entries: list[dict[str, Any]],
                     results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The run plan's entries (``bulk.plan``) with each guest's findings and plan added
    under "prep", for the --json plan document."""
    planned = {result["vm"]: {key: result.get(key) for key in
                              ("host", "os", "reach", "ok", "ready", "family", "distribution",
                               "findings", "plan", "error")}
               for result in results}
    for entry in entries:
        if entry["id"] in planned:
            entry["prep"] = {**entry["prep"], **planned[entry["id"]]}
    return entries


def not_ready(results: list[dict[str, Any]]) -> list[str]:
    """The VMs whose guest could not be planned or has blocking findings."""
    return [result["vm"] for result in results if not (result.get("ok") and result.get("ready"))]


def say_plans(results: list[dict[str, Any]]) -> None:
    if STATE.json:
        return
    for result in results:
        render_guest_plan(result)

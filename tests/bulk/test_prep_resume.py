"""A guest whose prep finished in an earlier run is never contacted again: the coordinator
goes straight to settle, and does not even wait for a worker of the VM's reach."""
from __future__ import annotations

from pathlib import Path

from azlift.bulk import (
    Coordinator,
    InProcessEngine,
    StateStore,
    build_report,
    load_manifest,
    source_resources,
)
from azlift.bulk.prep_phase import probe_resource
from azlift.bulk.state import DONE
from tests.support.azurite import azurite  # noqa: F401
from tests.support.bulk_plans import blob_bytes, converted, manifest
from tests.support.guest_disks import final_os_disk


def test_a_finished_prep_is_skipped_without_waiting_for_its_reach(
        tmp_path: Path, azurite, monkeypatch) -> None:  # noqa: F811
    monkeypatch.setenv("AZLIFT_EMULATOR_ENDPOINT", azurite.endpoint)
    monkeypatch.setenv("AZLIFT_STATE_DIR", str(tmp_path / "state"))
    container = azurite.new_container_name()
    disk = final_os_disk(tmp_path / "a.raw", "linux", seed=1)
    # 192.0.2.1 is TEST-NET-1: any attempt to reach the guest would fail the VM
    plan = load_manifest(manifest(tmp_path / "plan.toml", [
        {"id": "a", "source": "hv01", "reach": "ghost",
         "prep": {"os": "linux", "host": "192.0.2.1", "settle_seconds": 0},
         "disk": [{"path": str(disk), "role": "os"}]}],
        sources={"hv01": 1}, destination=container, emulator=True, threads=2))
    store = StateStore(tmp_path / "run.sqlite")
    store.sync(plan)
    store.set_prep("a", plan.vms[0].prep.identity_key(), DONE, {"host": "192.0.2.1"})
    messages: list[dict] = []
    # no worker serves reach "ghost": only the source and its probe
    engine = InProcessEngine("r1", threads=4, resources={**source_resources(plan),
                                                         probe_resource("hv01"): 64})
    try:
        Coordinator(plan, store, engine, "r1", notify=messages.append,
                    wait_for_workers=3).run()
    finally:
        engine.close()
    [entry] = build_report(store, str(plan.path))["vms"]
    assert (entry["status"], entry["error"]) == ("done", None), entry
    assert entry["phases"] == ["prep", "settle", "check", "upload", "verify"]
    assert [m for m in messages if m["kind"] == "waiting"] == []
    kinds = [event["kind"] for event in store.events("a")]
    assert "prep_skipped" in kinds and "prep_started" not in kinds
    assert kinds.index("prep_skipped") < kinds.index("settled") < kinds.index("checked")
    assert blob_bytes(azurite, container, "a-os.vhd") == converted(disk, tmp_path)
    store.close()

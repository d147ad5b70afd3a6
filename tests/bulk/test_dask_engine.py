"""The embedded Dask engine: workers' progress reaches the coordinator as Dask events."""
from __future__ import annotations

import threading

import psutil

from azlift.bulk import Coordinator, DaskEngine, StateStore, load_manifest, source_resources
from tests.support.azurite import azurite  # noqa: F401
from tests.support.bulk_plans import make_disk, manifest


def test_progress_events_arrive_from_the_workers(tmp_path, azurite, monkeypatch) -> None:  # noqa: F811
    monkeypatch.setenv("AZLIFT_EMULATOR_ENDPOINT", azurite.endpoint)
    monkeypatch.setenv("AZLIFT_STATE_DIR", str(tmp_path / "state"))
    disks = tmp_path / "disks"
    plan = load_manifest(manifest(tmp_path / "plan.toml", [
        {"id": f"vm{n}", "source": "hv01",
         "disk": [{"path": str(make_disk(disks, f"d{n}", "vhdx", seed=n, count=30)), "lun": 0}]}
        for n in range(2)], sources={"hv01": 2}, destination=azurite.new_container_name(),
        emulator=True, threads=2))
    seen: list[dict] = []
    lock = threading.Lock()

    def notify(message: dict) -> None:
        with lock:
            seen.append(message)

    store = StateStore(tmp_path / "state.sqlite")
    engine = DaskEngine("r1", threads=4, resources=source_resources(plan), on_event=notify)
    listening = {c.laddr.ip for c in psutil.Process().net_connections(kind="tcp")
                 if c.status == psutil.CONN_LISTEN}
    assert listening <= {"127.0.0.1"}, listening  # the embedded cluster opens no other port
    try:
        Coordinator(plan, store, engine, "r1", notify=notify, wait_for_workers=5).run()
    finally:
        engine.close()
        store.close()
    progress = [m for m in seen if m.get("kind") == "progress"]
    finished = {(m["vm"], m["disk"]) for m in progress if m["done"] == m["total"] > 0}
    assert finished == {("vm0", "lun0"), ("vm1", "lun0")}, progress
    assert all(m["worker"] for m in progress)
    assert [m["status"] for m in seen if m.get("kind") == "vm"] == ["done", "done"]

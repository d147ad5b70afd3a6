"""The coordinator on the in-process engine (no Dask): the whole plan runs, and no secret
ever appears in what is handed to a task or comes back from one."""
from __future__ import annotations

import pickle
import threading
from pathlib import Path

import pytest

from azlift.bulk import InProcessEngine, StateStore, build_report, load_manifest
from tests.support.azurite import azurite  # noqa: F401
from tests.support.bulk_plans import blob_bytes, converted, make_disk, manifest, run_in_process
from tests.support.fake_arm import fake_arm, fake_arm_server  # noqa: F401

SECRET = "s3cr3t-storage-key-value-do-not-leak"


class RecordingEngine(InProcessEngine):
    """The in-process engine, keeping every task argument and result it carried."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.carried: list[object] = []
        self._lock = threading.Lock()

    def submit(self, key, function, *args, resources=None, priority=0) -> None:
        def recorded(*call_args):
            result = function(*call_args)
            with self._lock:
                self.carried.append(result)
            return result
        with self._lock:
            self.carried.append(args)
        super().submit(key, recorded, *args, resources=resources, priority=priority)


def test_plan_runs_without_dask_and_no_secret_travels(tmp_path: Path, azurite, fake_arm,  # noqa: F811
                                                       monkeypatch) -> None:
    monkeypatch.setenv("AZLIFT_EMULATOR_ENDPOINT", azurite.endpoint)
    monkeypatch.setenv("AZLIFT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("AZURE_STORAGE_KEY", SECRET)  # in the workers' environment only
    container = azurite.new_container_name()
    disks = tmp_path / "disks"
    os_disk = make_disk(disks, "os", "vhdx", os_disk=True, seed=5)
    data = make_disk(disks, "data", "vhd-dynamic", seed=6)
    plan = manifest(tmp_path / "plan.toml", [
        {"id": "app1", "source": "hv01", "disk": [{"path": str(os_disk), "role": "os"},
                                                  {"path": str(data), "lun": 4}]}],
        sources={"hv01": 2}, destination=container, emulator=True, register="disk",
        resource_group="rg", location="westeurope", arm_endpoint=fake_arm.base_url,
        storage_account_id="/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/"
                           "storageAccounts/acct", threads=2)
    loaded = load_manifest(plan)
    store, engine = run_in_process(loaded, tmp_path / "state.sqlite", "run1", RecordingEngine)
    report = build_report(store, str(plan))
    [vm] = report["vms"]
    assert (vm["status"], vm["error"]) == ("done", None), vm
    assert sorted(r["id"].rsplit("/", 1)[-1] for r in vm["resources"]) == ["app1-lun4", "app1-os"]
    disk = fake_arm.get(fake_arm.resource_id("disk", "rg", "app1-os"))
    assert disk["properties"]["osType"] == "Linux"
    assert disk["properties"]["creationData"]["sourceUri"].endswith(f"/{container}/app1-os.vhd")
    assert blob_bytes(azurite, container, "app1-lun4.vhd") == converted(data, tmp_path)
    kinds = [type(item).__name__ for item in engine.carried]
    assert kinds.count("dict") == 2 + 2 + 1  # checks, uploads, register: every result kept
    for item in engine.carried:
        carried = pickle.dumps(item)
        for secret in (SECRET, "fake-arm-test-token", azurite.account_key):
            assert secret.encode() not in carried, item
    events = store.events("app1")
    assert [e["kind"] for e in events][:1] == ["start"] and events[-1]["kind"] == "done"
    store.close()


def test_a_changed_vm_starts_over_and_an_unchanged_one_keeps_its_row(tmp_path: Path) -> None:
    first = manifest(tmp_path / "plan.toml", [
        {"id": "a", "source": "s", "disk": [{"path": "/d/a.raw", "lun": 0}]},
        {"id": "b", "source": "s", "disk": [{"path": "/d/b.raw", "lun": 0}]}],
        sources={"s": 1}, destination="c01", emulator=True)
    store = StateStore(tmp_path / "state.sqlite")
    store.sync(load_manifest(first))
    store.set_vm("a", status="done", phase="done")
    store.set_vm("b", status="done", phase="done")
    second = manifest(tmp_path / "plan.toml", [
        {"id": "a", "source": "s", "disk": [{"path": "/d/a.raw", "lun": 0}]},
        {"id": "b", "source": "s", "disk": [{"path": "/d/b2.raw", "lun": 0}]}],
        sources={"s": 1}, destination="c01", emulator=True)
    assert store.sync(load_manifest(second)) == ["b"]
    assert {row.id: row.status for row in store.vms()} == {"a": "done", "b": "pending"}
    store.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("throttled_every", [0, 3])
def test_leased_window_never_exceeds_the_cap_and_halves_on_throttling(throttled_every) -> None:
    from azlift.bulk import LeasedWindow, ThrottledTarget

    cap = threading.BoundedSemaphore(3)
    state = {"now": 0, "peak": 0, "calls": 0}
    lock = threading.Lock()

    class Target:
        identity = "t"
        supports_metadata = True

        def put_pages(self, offset, data, md5):
            with lock:
                state["now"] += 1
                state["calls"] += 1
                state["peak"] = max(state["peak"], state["now"])
                call = state["calls"]
            threading.Event().wait(0.002)
            with lock:
                state["now"] -= 1
            return 2 if throttled_every and call % throttled_every == 0 else 1

        def close(self):
            pass

    windows = [LeasedWindow(cap, 8) for _ in range(3)]
    targets = [ThrottledTarget(Target(), window) for window in windows]

    def upload(target) -> None:  # six threads putting pages, then the upload ends
        threads = [threading.Thread(target=lambda: [target.put_pages(0, b"", None)
                                                    for _ in range(40)]) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        target.close()

    uploads = [threading.Thread(target=upload, args=(target,)) for target in targets]
    for thread in uploads:
        thread.start()
    for thread in uploads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in uploads)
    assert state["calls"] == 3 * 6 * 40
    assert state["peak"] <= 3  # the cluster-wide cap holds across the three uploads
    throttled = sum(t.throttled for t in targets)
    assert throttled == (3 * 6 * 40 // 3 if throttled_every else 0)
    if throttled_every:
        assert min(w.limit for w in windows) < 8
    for _ in range(3):  # every lease was given back
        assert cap.acquire(timeout=0)

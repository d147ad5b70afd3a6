"""The embedded Dask engine: workers' progress reaches the coordinator as Dask events, and
the run listens on nothing beyond loopback (nothing at all with threads)."""
from __future__ import annotations

import socket
import threading

import pytest

from azlift.bulk import Coordinator, DaskEngine, StateStore, load_manifest, source_resources
from tests.support.azurite import azurite  # noqa: F401
from tests.support.bulk_plans import make_disk, manifest
from tests.support.sockets import listening_sockets


def listening() -> set[tuple[str, int]]:
    """Listening TCP sockets of this process and its children (a worker process)."""
    return listening_sockets(children=True)


@pytest.mark.parametrize("processes", [False, True], ids=["threads", "worker-process"])
def test_progress_events_arrive_from_the_workers(tmp_path, azurite, monkeypatch,
                                                 processes) -> None:  # noqa: F811
    monkeypatch.setenv("AZLIFT_EMULATOR_ENDPOINT", azurite.endpoint)
    monkeypatch.setenv("AZLIFT_STATE_DIR", str(tmp_path / "state"))
    disks = tmp_path / "disks"
    plan = load_manifest(manifest(tmp_path / "plan.toml", [
        {"id": f"vm{n}", "source": "hv01",
         "disk": [{"path": str(make_disk(disks, f"d{n}", "vhdx", seed=n, count=30)), "lun": 0}]}
        for n in range(2)], sources={"hv01": 2}, destination=azurite.new_container_name(),
        emulator=True, threads=2))
    seen: list[dict] = []
    sockets: list[set[tuple[str, int]]] = []
    lock = threading.Lock()

    def notify(message: dict) -> None:
        with lock:
            seen.append(message)
            if message.get("kind") == "progress":
                sockets.append(listening())  # mid-upload

    store = StateStore(tmp_path / "state.sqlite")
    before = listening()
    engine = DaskEngine("r1", threads=4, resources=source_resources(plan), on_event=notify,
                        processes=processes)
    try:
        Coordinator(plan, store, engine, "r1", notify=notify, wait_for_workers=5).run()
        # no sampling profiler on the workers (its stack sampling can deadlock 3.11)
        callbacks = engine.client.run(lambda dask_worker: sorted(dask_worker.periodic_callbacks))
        assert callbacks and all("profile" not in names and "heartbeat" in names
                                 for names in callbacks.values()), callbacks
    finally:
        engine.close()
        store.close()
    progress = [m for m in seen if m.get("kind") == "progress"]
    finished = {(m["vm"], m["disk"]) for m in progress if m["done"] == m["total"] > 0}
    assert finished == {("vm0", "lun0"), ("vm1", "lun0")}, progress
    # The report names the machine, not Dask's number or address for the embedded worker.
    assert {m["worker_name"] for m in progress} == {socket.gethostname()}
    assert [m["status"] for m in seen if m.get("kind") == "vm"] == ["done", "done"]
    assert sockets
    opened = set().union(*sockets) - before
    if processes:  # scheduler, worker and their HTTP servers: on loopback only
        assert opened and {ip for ip, _ in opened} == {"127.0.0.1"}, opened
    else:  # in process: no comm port and no HTTP server at all
        assert opened == set(), opened

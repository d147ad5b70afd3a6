"""Managed-disk uploads in a bulk run keep to the run's ARM write cap and follow ARM's
Retry-After, on the in-process engine against the ARM fake and Azurite."""
from __future__ import annotations

import re
from pathlib import Path

from azlift.bulk import build_report, load_manifest
from azlift.bulk.toml_writer import to_toml
from tests.support.azurite import azurite  # noqa: F401
from tests.support.bulk_plans import converted, make_disk, run_in_process
from tests.support.fake_arm import fake_arm, fake_arm_server  # noqa: F401

WRITES = ("PUT", "POST", "PATCH", "DELETE")


def test_one_arm_write_at_a_time_each_poll_after_retry_after(tmp_path: Path, azurite, fake_arm,  # noqa: F811
                                                              monkeypatch) -> None:
    monkeypatch.setenv("AZLIFT_STATE_DIR", str(tmp_path / "state"))
    fake_arm.azurite = azurite
    fake_arm.retry_after = 1  # whole seconds, as ARM sends it; the client's own interval is 0.05
    disks = tmp_path / "disks"
    sources = [make_disk(disks, f"d{n}", "vhdx", seed=50 + n) for n in range(2)]
    plan = tmp_path / "plan.toml"
    plan.write_text(to_toml({
        "schema": "azlift.bulk/1",
        "defaults": {"destination": "managed-disk", "resource_group": "rg",
                     "location": "westeurope", "arm_endpoint": fake_arm.base_url, "threads": 2},
        "limits": {"arm_writes": 1},
        "source": [{"name": "hv01", "max_disks": 2}],
        "vm": [{"id": f"vm{n}", "source": "hv01", "disk": [{"path": str(path), "lun": 0}]}
               for n, path in enumerate(sources)]}))
    store, _ = run_in_process(load_manifest(plan), tmp_path / "state.sqlite", "arm1")
    vms = {vm["id"]: vm for vm in build_report(store, str(plan))["vms"]}
    store.close()
    assert all((vm["status"], vm["error"]) == ("done", None) for vm in vms.values()), vms
    for n, source in enumerate(sources):
        disk_id = fake_arm.resource_id("disk", "rg", f"vm{n}-lun0")
        assert vms[f"vm{n}"]["resources"] == [{"kind": "disk", "id": disk_id}]
        assert fake_arm.disk_blob_bytes(disk_id) == converted(source, tmp_path)

    # Each write starts a long-running operation (numbered in order by the fake); it lasts
    # until its last poll. With arm_writes = 1 no write arrives while another one lasts.
    requests = list(fake_arm.requests)
    writes = [index for index, r in enumerate(requests) if r.method in WRITES]
    assert len(writes) == 2 * 4  # per disk: create, grant, revoke, tag
    spans = []
    for number, start in enumerate(writes):
        polls = [index for index, r in enumerate(requests)
                 if r.method == "GET" and re.search(rf"/op-{number}-", r.path)]
        assert polls, f"operation {number} was never polled"
        spans.append((start, polls[-1]))
        # Retry-After: 1 is honoured: after the SDK's first look (at once), each status poll
        # comes a second or more after the one before (the result is then fetched at once).
        times = [requests[index].at for index in polls
                 if "/operations/" in requests[index].path]
        assert len(times) >= 2 and all(later - earlier >= 0.95
                                       for earlier, later in zip(times, times[1:])), times
    for start, end in spans:
        assert not [w for w in writes if start < w < end], (start, end, writes)

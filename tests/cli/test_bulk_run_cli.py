"""`azlift bulk check|run|status|report` on the embedded Dask cluster: real disks, Azurite
(behind the counting proxy), the ARM fake. Blobs must equal `vhd convert`'s output."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from tests.support.azurite import azurite  # noqa: F401
from tests.support.bulk_plans import blob_bytes, converted, make_disk, manifest
from tests.support.fake_arm import fake_arm, fake_arm_server  # noqa: F401
from tests.support.fault_proxy import FaultProxy

MIB = 1024 * 1024


@pytest.fixture
def proxy(azurite, monkeypatch, tmp_path):  # noqa: F811
    """Azurite behind the counting proxy; the workers' emulator endpoint points at it."""
    with FaultProxy(upstream=(azurite.host, azurite.port)) as counting:
        monkeypatch.setenv("AZLIFT_EMULATOR_ENDPOINT", counting.url_for(azurite.endpoint))
        monkeypatch.setenv("AZLIFT_STATE_DIR", str(tmp_path / "state"))
        yield counting


def vm(vm_id: str, source: str, *disks: tuple[Path, int | None], **settings) -> dict:
    table = {"id": vm_id, "source": source, **settings, "disk": []}
    for path, lun in disks:
        table["disk"].append({"path": str(path), "role": "os"} if lun is None
                             else {"path": str(path), "lun": lun})
    return table


def test_check_judges_every_disk_and_exits_1_when_one_is_not_ready(run_main, tmp_path) -> None:
    disks = tmp_path / "disks"
    good = [make_disk(disks, f"d{n}", kind, seed=n) for n, kind in
            enumerate(("raw", "vhd-fixed", "vhd-dynamic", "vhdx"))]
    small = make_disk(disks, "small", "raw", size=10 * MIB)
    plan = manifest(tmp_path / "plan.toml", [
        vm("a", "hv01", (good[0], 0), (good[1], 1)),
        vm("b", "nas1", (good[2], 0), (good[3], 1)),
        vm("c", "nas1", (small, 0), (disks / "missing.vhdx", 1)),
    ], sources={"hv01": 2, "nas1": 2}, destination="vhds", emulator=True)
    result = run_main("bulk", "check", plan, "--json")
    assert result.code == 1, result.err
    document = json.loads(result.out)
    verdicts = {(d["vm"], d["disk"]): (d["ok"], (d["error"] or {}).get("code"))
                for d in document["disks"]}
    assert verdicts == {("a", "lun0"): (True, None), ("a", "lun1"): (True, None),
                        ("b", "lun0"): (True, None), ("b", "lun1"): (True, None),
                        ("c", "lun0"): (False, "not_ready"), ("c", "lun1"): (False, "io_error")}
    small_error = next(d["error"]["message"] for d in document["disks"] if d["disk"] == "lun0"
                       and d["vm"] == "c")
    assert "size_too_small" in small_error
    assert document["ready"] is False
    formats = {d["path"]: d["format"] for d in document["disks"] if d["ok"]}
    assert sorted(formats.values()) == ["raw", "vhd-dynamic", "vhd-fixed", "vhdx"]

    ready = manifest(tmp_path / "ready.toml", [vm("a", "hv01", (good[0], 0), (good[1], 1))],
                     sources={"hv01": 2}, destination="vhds", emulator=True)
    result = run_main("bulk", "check", ready)
    assert result.code == 0, result.err
    assert "2 disk(s) checked, all ready" in result.out


def test_dry_run_prints_the_plan_and_touches_nothing(run_main, tmp_path, proxy) -> None:
    plan = manifest(tmp_path / "plan.toml", [
        vm("web01", "hv01", (tmp_path / "nowhere-os.vhdx", None), (tmp_path / "d.vhdx", 2),
           register="image", resource_group="rg", location="westeurope")],
        sources={"hv01": 1}, destination="vhds", emulator=True)
    result = run_main("bulk", "run", plan, "--dry-run", "--json")
    assert result.code == 0, result.err
    [entry] = json.loads(result.out)["vms"]
    assert entry["action"] == "run" and entry["register"] == "image"
    assert entry["resource"] == "web01"
    assert [d["target"] for d in entry["disks"]] == ["vhds/web01-os.vhd", "vhds/web01-lun2.vhd"]
    assert proxy.stats.requests == 0


def test_run_uploads_registers_isolates_failures_resumes_and_retries(
        run_main, tmp_path, proxy, fake_arm, azurite) -> None:  # noqa: F811
    disks = tmp_path / "disks"
    container = azurite.new_container_name()
    kinds = ("raw", "vhd-fixed", "vhd-dynamic", "vhdx")
    vms, expected = [], {}
    for n in range(4):
        os_path = make_disk(disks, f"vm{n}-os", kinds[n], seed=10 + n, os_disk=True)
        data_path = make_disk(disks, f"vm{n}-data", kinds[(n + 1) % 4], seed=20 + n)
        vms.append(vm(f"vm{n}", ("hv01", "nas1")[n % 2], (os_path, None), (data_path, n)))
        expected[f"vm{n}-os.vhd"] = os_path
        expected[f"vm{n}-lun{n}.vhd"] = data_path
    small = make_disk(disks, "small", "raw", size=10 * MIB, seed=3)
    vms.append(vm("bad-missing", "hv01", (make_disk(disks, "m-os", "raw", os_disk=True), None),
                  (disks / "not-there.vhdx", 0)))
    vms.append(vm("bad-small", "nas1", (make_disk(disks, "s-os", "raw", os_disk=True), None),
                  (small, 0)))
    vms.append(vm("bad-arm", "nas1", (make_disk(disks, "a-os", "vhdx", os_disk=True), None)))
    blocker = fake_arm.resource_id("image", "rg", "bad-arm")
    fake_arm.resources[blocker.lower()] = {
        "id": blocker, "name": "bad-arm", "type": "Microsoft.Compute/images",
        "location": "northeurope", "properties": {"provisioningState": "Succeeded"}}
    plan = manifest(tmp_path / "plan.toml", vms, sources={"hv01": 2, "nas1": 2},
                    destination=container, emulator=True, register="image",
                    resource_group="rg", location="westeurope", arm_endpoint=fake_arm.base_url,
                    threads=4)

    first = run_main("bulk", "run", plan, "--json", "-q")
    assert first.code == 1, first.err
    report = json.loads(first.out)
    assert report["schema"] == "azlift.bulk.report/1"
    status = {entry["id"]: entry for entry in report["vms"]}
    for n in range(4):
        entry = status[f"vm{n}"]
        assert (entry["status"], entry["phase"], entry["error"]) == ("done", "done", None)
        assert entry["worker"] and entry["attempts"] == 1
        [resource] = entry["resources"]
        assert resource["kind"] == "image" and resource["id"].endswith(f"/images/vm{n}")
    assert (status["bad-missing"]["status"], status["bad-missing"]["error"]["code"]) == \
        ("failed", "io_error")
    assert (status["bad-small"]["status"], status["bad-small"]["error"]["code"]) == \
        ("failed", "not_ready")
    assert (status["bad-arm"]["status"], status["bad-arm"]["error"]["code"]) == \
        ("failed", "arm_error")
    assert "not-there.vhdx" in status["bad-missing"]["error"]["message"]
    # A not-ready disk fails its VM before any of its disks is uploaded.
    assert all(disk["bytes_sent"] == 0 for disk in status["bad-small"]["disks"])
    totals = report["totals"]
    assert (totals["vms"], totals["done"], totals["failed"], totals["pending"]) == (7, 4, 3, 0)
    assert totals["bytes_sent"] == proxy.stats.put_page_bytes_forwarded > 0

    for name, source in expected.items():
        assert blob_bytes(azurite, container, name) == converted(source, tmp_path), name
    image = fake_arm.get(fake_arm.resource_id("image", "rg", "vm1"))
    profile = image["properties"]["storageProfile"]
    assert profile["osDisk"]["osType"] == "Linux" and profile["osDisk"]["blobUri"].endswith(
        f"/{container}/vm1-os.vhd")
    assert profile["dataDisks"] == [{"lun": 1, "blobUri": profile["osDisk"]["blobUri"].replace(
        "vm1-os.vhd", "vm1-lun1.vhd")}]
    assert image["properties"]["hyperVGeneration"] == "V2"

    # A second run skips what is done (no page byte travels) and leaves the failed alone.
    sent = proxy.stats.put_page_bytes_forwarded
    second = run_main("bulk", "run", plan, "--json", "-q")
    assert second.code == 1
    assert proxy.stats.put_page_bytes_forwarded == sent
    again = {entry["id"]: entry for entry in json.loads(second.out)["vms"]}
    assert again["bad-arm"]["attempts"] == 1 and again["vm0"]["attempts"] == 1

    # Fix the three causes; --retry-failed completes them.
    missing_fixed = make_disk(disks, "not-there", "vhdx", seed=99)
    assert missing_fixed == disks / "not-there.vhdx"
    with open(small, "r+b") as grow:
        grow.truncate(24 * MIB)
    del fake_arm.resources[blocker.lower()]
    third = run_main("bulk", "run", plan, "--retry-failed", "--json", "-q")
    assert third.code == 0, third.err
    final = {entry["id"]: entry for entry in json.loads(third.out)["vms"]}
    assert all(entry["status"] == "done" for entry in final.values())
    assert final["bad-arm"]["attempts"] == 2 and final["vm0"]["attempts"] == 1
    assert blob_bytes(azurite, container, "bad-missing-lun0.vhd") == converted(missing_fixed,
                                                                                tmp_path)

    status_run = run_main("bulk", "status", plan)
    assert status_run.code == 0
    assert "7 done, 0 failed, 0 pending of 7 VMs" in status_run.out
    rows = list(csv.DictReader(io.StringIO(run_main("bulk", "report", plan, "--csv").out)))
    assert len(rows) == 4 * 2 + 2 + 2 + 1
    assert {row["status"] for row in rows} == {"done"}
    assert all(row["target"].endswith(".vhd") for row in rows)


def test_one_run_per_state_file_and_status_only_reads_it_meanwhile(
        run_main, tmp_path, proxy, azurite) -> None:  # noqa: F811
    """A second run would send every disk again and write over the first's records; a
    status or report during a run must not rewrite the rows it is writing."""
    import fcntl
    import os

    disks = tmp_path / "disks"
    container = azurite.new_container_name()
    first = vm("a", "hv01", (make_disk(disks, "a-os", "raw", os_disk=True), None))
    plan = manifest(tmp_path / "plan.toml", [first], sources={"hv01": 1},
                    destination=container, emulator=True)
    state = tmp_path / "plan.sqlite"
    assert run_main("bulk", "status", plan, "--state", state, "--json").code == 0
    grown = manifest(tmp_path / "plan.toml", [
        first, vm("b", "hv01", (make_disk(disks, "b-os", "raw", os_disk=True), None))],
        sources={"hv01": 1}, destination=container, emulator=True)
    holder = os.open(f"{state}.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running `bulk run` does
        result = run_main("bulk", "run", grown, "--state", state, "--yes")
        assert result.code == 3, result.err
        assert result.err.strip().splitlines() == [
            f"azlift: error: another `azlift bulk run` is using the state file {state}; "
            f"expected one run at a time (wait for it to end, or give this one its own "
            f"--state)"]
        assert proxy.stats.requests == 0
        during = run_main("bulk", "status", grown, "--state", state, "--json")
        assert [v["id"] for v in json.loads(during.out)["vms"]] == ["a"]
    finally:
        os.close(holder)
    after = run_main("bulk", "status", grown, "--state", state, "--json")
    assert [v["id"] for v in json.loads(after.out)["vms"]] == ["a", "b"]
    result = run_main("bulk", "run", grown, "--state", state, "--yes")
    assert result.code == 0, result.err


def test_a_vm_taken_out_of_the_manifest_no_longer_counts(run_main, tmp_path, proxy,
                                                         azurite) -> None:  # noqa: F811
    """Its failure would otherwise fail every later run, and status would list it."""
    disks = tmp_path / "disks"
    container = azurite.new_container_name()
    good = vm("a", "hv01", (make_disk(disks, "a-os", "raw", os_disk=True), None))
    broken = vm("c", "hv01", (disks / "missing.vhdx", None))
    state = tmp_path / "plan.sqlite"
    both = manifest(tmp_path / "plan.toml", [good, broken], sources={"hv01": 1},
                    destination=container, emulator=True)
    assert run_main("bulk", "run", both, "--state", state, "--yes").code == 1
    one = manifest(tmp_path / "plan.toml", [good], sources={"hv01": 1},
                   destination=container, emulator=True)
    result = run_main("bulk", "run", one, "--state", state, "--yes", "--json")
    assert result.code == 0, result.err
    document = json.loads(result.out)
    assert [v["id"] for v in document["vms"]] == ["a"]
    assert (document["totals"]["vms"], document["totals"]["failed"]) == (1, 0)
    status = json.loads(run_main("bulk", "status", one, "--state", state, "--json").out)
    assert [v["id"] for v in status["vms"]] == ["a"]

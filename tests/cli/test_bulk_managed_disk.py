"""`azlift bulk run` with `destination = "managed-disk"`: direct upload into managed disks
through the ARM fake (HTTPS, real azure-mgmt-compute) and Azurite, next to a VM uploaded to
blobs. The disks hold `vhd convert`'s output, an image is made from them, a failure mid-upload
leaves its disk revoked, `--retry-failed` completes it, a second run does no work, and the
write SAS is nowhere: not in the state, the report or any log line."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from tests.support.azurite import azurite  # noqa: F401
from tests.support.bulk_plans import blob_bytes, converted, make_disk, manifest
from tests.support.fake_arm import fake_arm, fake_arm_server  # noqa: F401
from tests.support.fault_proxy import FaultProxy

MIB = 1024 * 1024
AUTH_FAILURE = (b"HTTP/1.1 403 Server failed to authenticate the request.\r\n"
                b"x-ms-error-code: AuthenticationFailed\r\nContent-Length: 0\r\n"
                b"Connection: close\r\n\r\n")


@pytest.fixture
def storage(fake_arm, azurite, monkeypatch, tmp_path):  # noqa: F811
    """Azurite behind the proxy, for blobs and for the disks' write SAS alike."""
    with FaultProxy(upstream=(azurite.host, azurite.port)) as proxy:
        fake_arm.azurite = azurite
        fake_arm.rewrite_sas_url = proxy.url_for
        monkeypatch.setenv("AZLIFT_EMULATOR_ENDPOINT", proxy.url_for(azurite.endpoint))
        monkeypatch.setenv("AZLIFT_STATE_DIR", str(tmp_path / "state"))
        yield proxy


def plan_of(tmp_path: Path, fake_arm, container: str, **md_settings) -> tuple[Path, dict]:  # noqa: F811
    disks = tmp_path / "disks"
    sources = {"md-os": make_disk(disks, "md-os", "vhdx", os_disk=True, seed=41),
               "md-data": make_disk(disks, "md-data", "vhd-dynamic", seed=42),
               "blob-data": make_disk(disks, "blob-data", "raw", seed=43)}
    plan = manifest(tmp_path / "plan.toml", [
        {"id": "md", "source": "hv01", "destination": "managed-disk", "register": "image",
         "disk_sku": "Premium_LRS", **md_settings,
         "disk": [{"path": str(sources["md-os"]), "role": "os"},
                  {"path": str(sources["md-data"]), "lun": 3}]},
        {"id": "blob", "source": "hv01",
         "disk": [{"path": str(sources["blob-data"]), "lun": 0}]}],
        sources={"hv01": 2}, destination=container, emulator=True, resource_group="rg",
        location="westeurope", arm_endpoint=fake_arm.base_url, threads=2,
        tags={"wave": "1"})
    return plan, sources


def signatures(fake_arm) -> list[str]:  # noqa: F811
    """The signature of every write SAS the fake handed out, as sent and URL-decoded."""
    found = []
    for url in fake_arm.issued_sas:
        [sig] = parse_qs(urlsplit(url).query)["sig"]
        found += [sig, unquote(sig)]
        found.append(urlsplit(url).query.split("sig=")[1].split("&")[0])
    assert found
    return found


def state_bytes(tmp_path: Path) -> bytes:
    directory = tmp_path / "state" / "bulk"
    return b"".join(path.read_bytes() for path in sorted(directory.iterdir()))


def test_managed_disks_and_blobs_in_one_run_then_a_failure_a_retry_and_nothing(
        run_main, tmp_path, fake_arm, azurite, storage, caplog) -> None:  # noqa: F811
    caplog.set_level(logging.DEBUG)
    container = azurite.new_container_name()
    plan, sources = plan_of(tmp_path, fake_arm, container)
    os_id = fake_arm.resource_id("disk", "rg", "md-os")
    data_id = fake_arm.resource_id("disk", "rg", "md-lun3")

    failed_once: list[int] = []

    def refuse_a_put_mid_upload(moment: str, index: int, method: str, target: str):
        """The third Put Page to md-os is refused as an expired SAS would be: a failure in
        the middle of the upload, not before it."""
        if moment == "received" and method == "PUT" and "comp=page" in target \
                and "/md-os.vhd" in target:
            failed_once.append(index)
            if len(failed_once) == 3:
                return AUTH_FAILURE
        return None

    storage.on_request = refuse_a_put_mid_upload
    first = run_main("bulk", "run", plan, "--json", "-q")
    assert first.code == 1, first.err
    vms = {vm["id"]: vm for vm in json.loads(first.out)["vms"]}
    assert (vms["blob"]["status"], vms["blob"]["error"]) == ("done", None)
    assert vms["md"]["status"] == "failed"
    assert vms["md"]["error"]["code"] == "auth_failed", vms["md"]["error"]
    assert len(failed_once) >= 3 and vms["md"]["disks"][0]["bytes_sent"] > 0  # mid-upload
    failed_disk = fake_arm.get(os_id)
    assert failed_disk["properties"]["diskState"] == "Unattached"  # revoked, not ActiveUpload
    assert failed_disk["tags"].get("azlift_state") == "uploading"
    assert len(fake_arm.calls("POST", "/disks/md-os/endGetAccess")) == 1
    assert blob_bytes(azurite, container, "blob-lun0.vhd") == converted(sources["blob-data"],
                                                                       tmp_path)

    storage.on_request = None
    fake_arm.throttle_puts, fake_arm.throttle_retry_after = 1, 1  # ARM pushes back once
    second = run_main("bulk", "run", plan, "--retry-failed", "--json", "-q")
    assert second.code == 0, second.err
    report = json.loads(second.out)
    vms = {vm["id"]: vm for vm in report["vms"]}
    answered_429 = sum(request.status == 429 for request in fake_arm.requests)
    assert answered_429 == 1
    assert report["totals"]["arm_throttled"] == sum(vm["arm_throttled"] for vm in vms.values()) \
        == answered_429
    assert (vms["md"]["status"], vms["md"]["error"], vms["md"]["attempts"]) == ("done", None, 2)
    assert vms["blob"]["attempts"] == 1
    image_id = fake_arm.resource_id("image", "rg", "md")
    assert vms["md"]["resources"] == [{"kind": "disk", "id": os_id},
                                      {"kind": "disk", "id": data_id},
                                      {"kind": "image", "id": image_id}]
    assert [d["target"] for d in vms["md"]["disks"]] == [os_id, data_id]
    # The sealed, incomplete md-os was deleted and uploaded again; md-lun3 was not touched.
    assert len(fake_arm.calls("DELETE", "/disks/md-os")) == 1
    accepted = [put for put in fake_arm.calls("PUT", "/disks/md-os") if put.status != 429]
    assert len(accepted) == 2  # (the 429 above, if it fell here, was sent again)
    assert len(fake_arm.calls("PUT", "/disks/md-lun3")) == 1
    for disk_id, source in ((os_id, sources["md-os"]), (data_id, sources["md-data"])):
        disk = fake_arm.get(disk_id)
        assert disk["properties"]["diskState"] == "Unattached"
        assert disk["sku"] == {"name": "Premium_LRS"}
        assert disk["tags"]["azlift_state"] == "complete" and disk["tags"]["wave"] == "1"
        assert fake_arm.disk_blob_bytes(disk_id) == converted(source, tmp_path)
    os_disk = fake_arm.get(os_id)["properties"]
    assert (os_disk["osType"], os_disk["hyperVGeneration"]) == ("Linux", "V2")
    assert "osType" not in fake_arm.get(data_id)["properties"]
    image = fake_arm.get(image_id)["properties"]["storageProfile"]
    assert image["osDisk"]["managedDisk"] == {"id": os_id}
    assert image["dataDisks"] == [{"lun": 3, "managedDisk": {"id": data_id}}]
    for call in fake_arm.calls("POST", "/beginGetAccess"):
        assert call.body["access"] == "Write"

    arm_writes = len([r for r in fake_arm.requests if r.method != "GET"])
    page_bytes = storage.stats.put_page_bytes_forwarded
    third = run_main("bulk", "run", plan, "--retry-failed", "--json", "-q")
    assert third.code == 0, third.err
    assert storage.stats.put_page_bytes_forwarded == page_bytes
    assert len([r for r in fake_arm.requests if r.method != "GET"]) == arm_writes

    report_text = run_main("bulk", "report", plan, "--json").out
    logged = caplog.text + first.err + second.err + third.err + first.out + second.out
    state = state_bytes(tmp_path)
    for signature in signatures(fake_arm):
        assert signature not in report_text, report_text
        assert signature not in logged, logged[max(0, logged.find(signature) - 300):][:600]
        assert signature.encode() not in state


def test_a_worker_process_uploads_a_managed_disk_next_to_a_blob(
        run_main, tmp_path, fake_arm, azurite, storage) -> None:  # noqa: F811
    container = azurite.new_container_name()
    plan, sources = plan_of(tmp_path, fake_arm, container, register="disk")
    result = run_main("bulk", "run", plan, "--processes", "--json", "-q")
    assert result.code == 0, result.err
    vms = {vm["id"]: vm for vm in json.loads(result.out)["vms"]}
    assert all(vm["status"] == "done" for vm in vms.values()), vms
    os_id = fake_arm.resource_id("disk", "rg", "md-os")
    data_id = fake_arm.resource_id("disk", "rg", "md-lun3")
    # register = "disk" with managed disks: the disks themselves, no import.
    assert vms["md"]["resources"] == [{"kind": "disk", "id": os_id},
                                      {"kind": "disk", "id": data_id}]
    assert len(fake_arm.calls("PUT", "/disks/")) == 2
    assert fake_arm.disk_blob_bytes(os_id) == converted(sources["md-os"], tmp_path)
    assert fake_arm.disk_blob_bytes(data_id) == converted(sources["md-data"], tmp_path)
    assert blob_bytes(azurite, container, "blob-lun0.vhd") == converted(sources["blob-data"],
                                                                       tmp_path)
    assert vms["md"]["worker"]
    for signature in signatures(fake_arm):
        assert signature not in result.out + result.err
        assert signature.encode() not in state_bytes(tmp_path)

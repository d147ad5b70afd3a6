"""A managed disk left in ActiveUpload (its worker died mid-upload, before it could revoke)
is taken up by the next run: access granted again, only the pages its page ranges lack are
sent, then verified and revoked. Nothing is deleted or created again."""
from __future__ import annotations

from pathlib import Path

from azlift import vhd
from azlift.bulk import build_report, load_manifest
from azlift.upload.journal import fingerprint
from azlift.upload.stream import fixed_vhd_layout
from tests.support.azurite import azurite  # noqa: F401
from tests.support.bulk_plans import converted, make_disk, manifest, run_in_process
from tests.support.fake_arm import fake_arm, fake_arm_server  # noqa: F401

MIB = 1024 * 1024
SECTOR = 512


def nonzero_bytes(data: bytes) -> int:
    return sum(SECTOR for at in range(0, len(data), SECTOR) if data[at:at + SECTOR].strip(b"\0"))


def test_a_disk_left_in_active_upload_is_resumed_from_its_page_ranges(
        tmp_path: Path, azurite, fake_arm, monkeypatch) -> None:  # noqa: F811
    monkeypatch.setenv("AZLIFT_STATE_DIR", str(tmp_path / "state"))  # no journal of it here
    fake_arm.azurite = azurite
    source = make_disk(tmp_path / "disks", "data", "vhdx", seed=61, count=40)
    expected = converted(source, tmp_path)
    disk_id = fake_arm.resource_id("disk", "rg", "vm1-lun0")
    with vhd.open_image(str(source)) as image:
        digest = fingerprint(image, fixed_vhd_layout(image), disk_id).digest()
    # What a worker killed mid-upload leaves: the disk it created, granted, half written.
    disk = {"id": disk_id, "name": "vm1-lun0", "type": "Microsoft.Compute/disks",
            "location": "westeurope",
            "tags": {"azlift_fingerprint": digest, "azlift_state": "uploading"},
            "properties": {"diskState": "ActiveUpload", "provisioningState": "Succeeded",
                           "creationData": {"createOption": "Upload",
                                            "uploadSizeBytes": len(expected)}}}
    fake_arm.resources[disk_id.lower()] = disk
    fake_arm._sas_for(disk, "Write")  # creates the disk's hidden blob
    container, name = fake_arm.disk_blobs[disk_id.lower()].split("/", 1)
    blob = azurite.service_client().get_blob_client(container, name)
    half = len(expected) // 2 // (4 * MIB) * (4 * MIB)
    for at in range(0, half, 4 * MIB):
        piece = expected[at:at + 4 * MIB]
        if piece.strip(b"\0"):
            blob.upload_page(piece, offset=at, length=len(piece))
    already = nonzero_bytes(expected[:half])
    assert 0 < already < nonzero_bytes(expected)

    plan = load_manifest(manifest(tmp_path / "plan.toml", [
        {"id": "vm1", "source": "hv01", "disk": [{"path": str(source), "lun": 0}]}],
        sources={"hv01": 1}, destination="managed-disk", resource_group="rg",
        location="westeurope", arm_endpoint=fake_arm.base_url, threads=2))
    store, _ = run_in_process(plan, tmp_path / "state.sqlite", "resume1")
    [vm] = build_report(store, "plan.toml")["vms"]
    store.close()
    assert (vm["status"], vm["error"]) == ("done", None), vm
    assert vm["resources"] == [{"kind": "disk", "id": disk_id}]
    sent = vm["disks"][0]["bytes_sent"]
    assert 0 < sent <= nonzero_bytes(expected) - already + SECTOR  # the footer travels too
    assert fake_arm.disk_blob_bytes(disk_id) == expected
    assert fake_arm.get(disk_id)["properties"]["diskState"] == "Unattached"
    assert fake_arm.get(disk_id)["tags"]["azlift_state"] == "complete"
    assert [r.method for r in fake_arm.requests if r.method != "GET"] == \
        ["POST", "POST", "PATCH"]  # grant, revoke, tag: no create, no delete

"""Registration kinds beyond the managed image: a gallery version (its definition created
when missing) carrying the manifest's tags, on the in-process engine against the ARM fake."""
from __future__ import annotations

from pathlib import Path

from azlift.bulk import build_report, load_manifest
from tests.support.azurite import azurite  # noqa: F401
from tests.support.bulk_plans import make_disk, manifest, run_in_process
from tests.support.fake_arm import fake_arm, fake_arm_server  # noqa: F401

SA = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct"


def test_gallery_version_with_its_definition_and_tags(tmp_path: Path, azurite, fake_arm,  # noqa: F811
                                                      monkeypatch) -> None:
    monkeypatch.setenv("AZLIFT_EMULATOR_ENDPOINT", azurite.endpoint)
    monkeypatch.setenv("AZLIFT_STATE_DIR", str(tmp_path / "state"))
    fake_arm.add_gallery("rg", "gal")
    disks = tmp_path / "disks"
    plan = load_manifest(manifest(tmp_path / "plan.toml", [
        {"id": "web01", "source": "hv01", "gallery_version": "1.0.3",
         "disk": [{"path": str(make_disk(disks, "os", "vhd-dynamic", os_disk=True)), "role": "os"},
                  {"path": str(make_disk(disks, "data", "raw", seed=4)), "lun": 1}]}],
        sources={"hv01": 1}, destination=azurite.new_container_name(), emulator=True,
        register="gallery-version", resource_group="rg", location="westeurope",
        arm_endpoint=fake_arm.base_url, gallery="gal", gallery_image="web",
        storage_account_id=SA, publisher="contoso", offer="web", sku="22",
        target_regions=["northeurope=2"], tags={"wave": "3", "owner": "migration"}))
    store, _ = run_in_process(plan, tmp_path / "state.sqlite", "g1")
    [vm] = build_report(store, "plan.toml")["vms"]
    store.close()
    assert (vm["status"], vm["error"]) == ("done", None), vm
    assert [r["kind"] for r in vm["resources"]] == ["gallery-image-definition",
                                                    "gallery-image-version"]
    definition = fake_arm.get(fake_arm.resource_id("definition", "rg", "gal", "web"))
    assert definition["properties"]["osType"] == "Linux"
    assert definition["properties"]["hyperVGeneration"] == "V2"
    assert definition["properties"]["identifier"] == {"publisher": "contoso", "offer": "web",
                                                      "sku": "22"}
    version = fake_arm.get(fake_arm.resource_id("version", "rg", "gal", "web", "1.0.3"))
    assert version["tags"] == {"owner": "migration", "wave": "3"}
    profile = version["properties"]["storageProfile"]
    assert profile["osDiskImage"]["source"]["uri"].endswith("/web01-os.vhd")
    assert [d["lun"] for d in profile["dataDiskImages"]] == [1]
    regions = version["properties"]["publishingProfile"]["targetRegions"]
    assert {r["name"]: r["regionalReplicaCount"] for r in regions} == {"westeurope": 1,
                                                                        "northeurope": 2}

"""Registration's pure parts: option parsing, hint reconciliation, SDK bodies, dry-run capture."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.azurite import azurite  # noqa: F401
from azlift.upload import register as reg
from azlift.upload.arm import ArmTarget, RecordingTransport, compute_client
from azlift.upload.blob_source import footer_problems
from azlift.upload.errors import HintConflictError, UsageError
from azlift.vhd import Footer, fixed_footer

MIB = 1024 * 1024


def layout(os_hint=None, generation=None, reasons=("why",)):
    return SimpleNamespace(os_type_hint=os_hint, generation_hint=generation, reasons=reasons)


@pytest.mark.parametrize("text, lun, url", [("0=https://a/b.vhd", 0, "https://a/b.vhd"),
                                            ("63=https://a/b?sv=1&sig=x", 63,
                                             "https://a/b?sv=1&sig=x")])
def test_parse_data_disk(text, lun, url):
    assert reg.parse_data_disk(text) == reg.DataDiskSpec(lun, url)


@pytest.mark.parametrize("text", ["https://a/b", "x=https://a", "64=https://a", "1=", "-1=u"])
def test_parse_data_disk_refuses(text):
    with pytest.raises(UsageError):
        reg.parse_data_disk(text)


def test_parse_target_region():
    assert reg.parse_target_region("eastus") == reg.TargetRegionSpec("eastus", 1)
    assert reg.parse_target_region("eastus=3") == reg.TargetRegionSpec("eastus", 3)
    for bad in ("=2", "eastus=", "eastus=x", "eastus=101", "eastus=0"):
        with pytest.raises(UsageError):
            reg.parse_target_region(bad)


@given(st.tuples(*[st.integers(0, 2**31 - 1)] * 3))
def test_versions_of_three_int32_are_accepted(parts):
    reg.check_version_name(".".join(map(str, parts)))


@pytest.mark.parametrize("version", ["1", "1.0", "1.0.0.0", "v1.0.0", "1.0.x", "2147483648.0.0",
                                     "01.0.0", "1..0", ""])
def test_versions_refused(version):
    with pytest.raises(UsageError, match="MAJOR.MINOR.PATCH"):
        reg.check_version_name(version)


def test_source_region_is_added_once():
    regions = [reg.TargetRegionSpec("eastus", 2)]
    assert reg.with_source_region("West Europe", regions) == [
        reg.TargetRegionSpec("West Europe", 1), reg.TargetRegionSpec("eastus", 2)]
    assert reg.with_source_region("eastus", regions) == regions
    assert reg.with_source_region("eastus", []) == []
    with pytest.raises(UsageError):
        reg.with_source_region("x", [reg.TargetRegionSpec("a"), reg.TargetRegionSpec("A")])


@pytest.mark.parametrize("given_os, given_gen, hints, expected_os, expected_gen, notes", [
    (None, None, layout("linux", "V2"), "Linux", "V2", 2),
    ("Linux", None, layout("linux", "V1"), "Linux", "V1", 1),
    ("Windows", "V2", layout("windows", "V2"), "Windows", "V2", 0),
    (None, None, layout(None, None), None, None, 0),
    ("Linux", "V1", None, "Linux", "V1", 0),
])
def test_reconcile_defaults(given_os, given_gen, hints, expected_os, expected_gen, notes):
    decided = reg.reconcile_with_hints(given_os, given_gen, hints)
    assert (decided.os_type, decided.generation) == (expected_os, expected_gen)
    assert len(decided.notes) == notes
    assert decided.overridden == ()


@pytest.mark.parametrize("given_os, given_gen, hints, words", [
    (None, "V1", layout("linux", "V2", ("GPT with an EFI system partition",)),
     ["V1", "V2", "EFI system partition"]),
    (None, "V2", layout(None, "V1", ("MBR with an active partition",)), ["V2", "V1", "MBR"]),
    ("Linux", None, layout("windows", None), ["--os-type linux", "Windows"]),
])
def test_reconcile_refuses_contradictions_unless_forced(given_os, given_gen, hints, words):
    with pytest.raises(HintConflictError) as caught:
        reg.reconcile_with_hints(given_os, given_gen, hints)
    for word in words:
        assert word in str(caught.value)
    assert caught.value.exit_code == 1
    forced = reg.reconcile_with_hints(given_os, given_gen, hints, force=True)
    assert (forced.os_type, forced.generation)[0 if given_os else 1] == (given_os or given_gen)
    assert len(forced.overridden) == 1


def test_no_defaults_for_possible_data_disks():
    decided = reg.reconcile_with_hints(None, None, layout("windows", None), fill_defaults=False)
    assert (decided.os_type, decided.generation, decided.notes) == (None, None, ())
    with pytest.raises(HintConflictError):
        reg.reconcile_with_hints("Linux", None, layout("windows", None), fill_defaults=False)


def test_existing_definition_must_match():
    definition = SimpleNamespace(os_type="Linux", hyper_v_generation=None)  # ARM default V1
    reg.check_definition_matches(definition, reg.Reconciled("Linux", "V1"))
    with pytest.raises(HintConflictError, match="generation V1"):
        reg.check_definition_matches(definition, reg.Reconciled("Linux", "V2"))
    with pytest.raises(HintConflictError, match="Windows"):
        reg.check_definition_matches(definition, reg.Reconciled("Windows", None))
    seen = []
    reg.check_definition_matches(definition, reg.Reconciled("Windows", "V2"), force=True,
                                 on_override=seen.append)
    assert len(seen) == 2


def test_image_body_never_carries_a_sas():
    image = reg.image_model(location="x", os_blob="https://a/c/os.vhd?sv=1&sig=SECRET",
                            os_type="Linux",
                            data_disks=[reg.DataDiskSpec(3, "https://a/c/d.vhd?sig=SECRET")])
    text = json.dumps(image.as_dict())
    assert "SECRET" not in text and "?" not in text


def test_image_with_repeated_lun_is_refused_before_arm():
    with pytest.raises(UsageError, match="LUN 1"):
        reg.image_model(location="x", os_blob="https://a", os_type="Linux",
                        data_disks=[reg.DataDiskSpec(1, "https://a"), reg.DataDiskSpec(1, "https://b")])


@pytest.mark.parametrize("cloud, host", [("AzureCloud", "management.azure.com"),
                                         ("AzureChinaCloud", "management.chinacloudapi.cn"),
                                         ("AzureUSGovernment", "management.usgovcloudapi.net")])
def test_dry_run_records_the_sdk_body_and_cloud_endpoint(cloud, host, monkeypatch):
    monkeypatch.delenv("AZLIFT_ARM_TOKEN", raising=False)  # a dry run needs no sign-in
    recorder = RecordingTransport()
    client = compute_client(ArmTarget.resolve("sub-1", cloud), recorder=recorder)
    model = reg.gallery_version_model(
        location="westeurope", os_blob="https://a/c/os.vhd", storage_account_id="/sa",
        target_regions=[reg.TargetRegionSpec("westeurope", 2)])
    client.gallery_image_versions.begin_create_or_update("rg", "g", "d", "1.0.0", model,
                                                         polling=False).result()
    [request] = recorder.requests
    assert request.method == "PUT"
    assert request.url.startswith(f"https://{host}/subscriptions/sub-1/resourceGroups/rg/"
                                  "providers/Microsoft.Compute/galleries/g/images/d/versions/1.0.0"
                                  "?api-version=")
    assert request.body == model.as_dict()


def test_arm_endpoint_overrides_the_cloud():
    recorder = RecordingTransport()
    client = compute_client(ArmTarget.resolve("s", "AzureCloud", "https://management.local.azurestack.external/"),
                            recorder=recorder)
    client.images.begin_create_or_update("rg", "i", reg.image_model(
        location="local", os_blob="https://a", os_type="Windows"), polling=False).result()
    assert recorder.requests[0].url.startswith("https://management.local.azurestack.external/subscriptions/s/")


@pytest.mark.parametrize("subscription, cloud, endpoint", [
    (None, "AzureCloud", None), ("s", "AzureGermanCloud", None), ("s", "AzureCloud", "http://x")])
def test_arm_target_refusals(subscription, cloud, endpoint, monkeypatch):
    monkeypatch.delenv("AZURE_SUBSCRIPTION_ID", raising=False)
    with pytest.raises(UsageError):
        ArmTarget.resolve(subscription, cloud, endpoint)


def test_footer_problems_name_each_fault():
    size = 30 * MIB
    good = fixed_footer(size).with_checksum()
    assert footer_problems(good, size + 512) == []
    assert "not match" in footer_problems(Footer.unpack(good.pack()[:64] + b"\0\0\0\1"
                                                        + good.pack()[68:]), size + 512)[0]
    assert "holds" in " ".join(footer_problems(good, size + MIB + 512))
    assert "cookie" in footer_problems(Footer.unpack(bytes(512)), size + 512)[0]


def test_blob_disk_image_reads_across_blocks(azurite):  # noqa: F811
    import random

    from azlift.upload.blob_source import READ_BLOCK, BlobDiskImage, open_blob

    data = random.Random(3).randbytes(3 * READ_BLOCK)
    footer = fixed_footer(3 * READ_BLOCK).with_checksum().pack()
    container = azurite.new_container()
    client = azurite.service_client().get_blob_client(container, "x.vhd")
    client.create_page_blob(len(data) + 512)
    client.upload_page(data + footer, offset=0, length=len(data) + 512)
    with BlobDiskImage(open_blob(client.url, credential={
            "account_name": azurite.account_name, "account_key": azurite.account_key}),
            len(data) + 512) as image:
        assert image.virtual_size == len(data)
        assert image.read(READ_BLOCK - 7, 20) == data[READ_BLOCK - 7:READ_BLOCK + 13]
        assert image.read(0, len(data) + 4096) == data  # clipped at the end, footer excluded
        assert image.read(len(data), 10) == b""
        assert list(image.extents()) == [(0, len(data))]


def test_existing_definition_must_hold_the_same_os_state():
    definition = SimpleNamespace(os_type="Linux", hyper_v_generation="V2", os_state="Generalized")
    decided = reg.Reconciled("Linux", "V2")
    reg.check_definition_matches(definition, decided, specialized=False)
    reg.check_definition_matches(definition, decided)  # state not asked about: not checked
    with pytest.raises(HintConflictError, match="holds Generalized images.*Specialized"):
        reg.check_definition_matches(definition, decided, specialized=True)
    seen = []
    reg.check_definition_matches(definition, decided, specialized=True, force=True,
                                 on_override=seen.append)
    assert len(seen) == 1 and "--force" in seen[0]

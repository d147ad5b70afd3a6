"""Direct upload into a managed disk: real SDK → ARM fake (HTTPS) → page blob in Azurite."""
from __future__ import annotations

import json
import random
import subprocess

import pytest

from azlift.cli.main import main
from tests.support import disk_layouts as layouts
from tests.support.azurite import azurite  # noqa: F401
from tests.support.fake_arm import fake_arm, fake_arm_server  # noqa: F401
from tests.support.tools import require_executable
from azlift.upload.errors import NotReadyError
from azlift.upload.managed_disk import check_upload_size, upload_disk_model

MIB = 1024 * 1024
SIZE = 24 * MIB


@pytest.fixture
def arm(fake_arm, azurite, tmp_path, monkeypatch):  # noqa: F811
    fake_arm.azurite = azurite
    monkeypatch.setenv("AZLIFT_STATE_DIR", str(tmp_path / "state"))
    return fake_arm


@pytest.fixture
def source(tmp_path):
    """A 24 MiB Linux MBR disk with scattered random data (and long runs of zeros)."""
    rng = random.Random(7)
    pieces = {0: layouts.mbr([layouts.MbrEntry(0x83, 2048, SIZE // 512 - 2048, bootable=True)],
                             boot_code=True),
              2048 * 512: layouts.ext_superblock("ext4")}
    for _ in range(40):
        offset = rng.randrange(2 * MIB, SIZE - 70_000)
        pieces[offset] = rng.randbytes(rng.randrange(1, 70_000))
    return layouts.write_disk(tmp_path / "disk.raw", SIZE, pieces)


def disk_id(arm, name="d1"):
    return arm.resource_id("disk", "rg", name)


def upload(capsys, arm, src, *extra):
    code = main(["upload", str(src), "--managed-disk", disk_id(arm), "-l", "westeurope",
                 "--arm-endpoint", arm.base_url, "--threads", "4", *extra])
    out, err = capsys.readouterr()
    return code, out, err


def assert_blob_holds(arm, src, tmp_path):
    """qemu-img, the reference reader, sees the same disk in the blob as in the source."""
    qemu_img = require_executable("qemu-img")
    blob = arm.disk_blob_bytes(disk_id(arm))
    assert len(blob) == SIZE + 512
    copy = tmp_path / "blob.vhd"
    copy.write_bytes(blob)
    result = subprocess.run([qemu_img, "compare", "-f", "raw", "-F", "vpc", str(src), str(copy)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_direct_upload_end_to_end_revokes_on_success(capsys, arm, source, tmp_path):
    code, out, err = upload(capsys, arm, source, "--json")
    assert code == 0, err
    document = json.loads(out)
    assert document["diskState"] == "Unattached"
    assert document["created"] is True
    assert document["upload"]["blob_length"] == SIZE + 512
    [put] = arm.calls("PUT", "/disks/d1")
    assert put.body["properties"]["creationData"] == {"createOption": "Upload",
                                                      "uploadSizeBytes": SIZE + 512}
    assert put.body["properties"]["hyperVGeneration"] == "V1"
    assert put.body["properties"]["osType"] == "Linux"
    assert len(arm.calls("POST", "/beginGetAccess")) == 1
    assert len(arm.calls("POST", "/endGetAccess")) == 1
    assert arm.get(disk_id(arm))["properties"]["diskState"] == "Unattached"
    assert_blob_holds(arm, source, tmp_path)
    assert "sig=" not in out + err


def test_injected_failure_still_revokes(capsys, arm, source):
    arm.read_only_sas = True  # the SAS ARM hands out cannot write: every Put Page fails
    code, out, err = upload(capsys, arm, source)
    assert code == 4
    assert len(arm.calls("POST", "/endGetAccess")) == 1
    assert arm.get(disk_id(arm))["properties"]["diskState"] == "Unattached"
    assert "revoked" in err
    assert "incomplete copy" in err and f"az disk delete --ids {disk_id(arm)}" in err
    assert "sig=" not in out + err


def test_keep_open_then_resume_regrants_and_finishes(capsys, arm, source, tmp_path):
    arm.read_only_sas = True
    code, _, err = upload(capsys, arm, source, "--keep-open")
    assert code == 4
    assert arm.calls("POST", "/endGetAccess") == []
    assert arm.get(disk_id(arm))["properties"]["diskState"] == "ActiveUpload"
    assert "--resume" in err and "revoke-access" in err

    code, _, err = upload(capsys, arm, source)  # without --resume: refused, with the way out
    assert code == 5
    assert "ActiveUpload" in err and "--resume" in err and "az disk revoke-access" in err

    arm.read_only_sas = False
    code, out, err = upload(capsys, arm, source, "--resume", "--json")
    assert code == 0, err
    assert json.loads(out)["created"] is False
    assert len(arm.calls("POST", "/beginGetAccess")) == 2
    assert len(arm.calls("PUT", "/disks/d1")) == 1
    assert len(arm.calls("POST", "/endGetAccess")) == 1
    assert arm.get(disk_id(arm))["properties"]["diskState"] == "Unattached"
    assert_blob_holds(arm, source, tmp_path)


def test_existing_finished_disk_is_not_overwritten(capsys, arm, source):
    assert upload(capsys, arm, source)[0] == 0
    code, _, err = upload(capsys, arm, source)
    assert code == 5
    assert "already exists" in err and "Unattached" in err


def test_gpt_esp_source_as_v1_is_refused_before_arm(capsys, arm, tmp_path):
    src = layouts.linux_gpt_disk(tmp_path / "gpt.raw", 24 * MIB)
    code, _, err = upload(capsys, arm, src, "--hyper-v-generation", "V1")
    assert code == 1
    assert "EFI system partition" in err
    assert "leave out --os-type/--hyper-v-generation" in err
    assert "--force" not in err  # the upload command has no --force to offer
    assert arm.requests == []


def test_too_small_for_a_managed_disk_is_refused_before_arm(capsys, arm, tmp_path):
    src = layouts.write_disk(tmp_path / "small.raw", 8 * MIB, {})
    code, _, err = upload(capsys, arm, src)
    assert code == 1
    assert "20 MiB" in err
    assert arm.requests == []


def test_bad_resource_id_is_a_usage_error(capsys, arm, source):
    code = main(["upload", str(source), "--managed-disk", "/subscriptions/s/disks/x",
                 "-l", "westeurope"])
    _, err = capsys.readouterr()
    assert code == 2 and "resource id" in err


@pytest.mark.parametrize("size, ok", [(20 * MIB + 512, True), (20 * MIB, False),
                                      (MIB + 512, False), (21 * MIB + 1024, False),
                                      (32 * 1024 * 1024 * MIB + 512, True),
                                      (32 * 1024 * 1024 * MIB + MIB + 512, False)])
def test_upload_size_rule(size, ok):
    if ok:
        check_upload_size(size)
        body = upload_disk_model(location="x", upload_size=size).as_dict()
        assert body["properties"]["creationData"]["uploadSizeBytes"] == size
    else:
        with pytest.raises(NotReadyError):
            check_upload_size(size)


@pytest.mark.parametrize("failure", [KeyboardInterrupt, RuntimeError])
def test_revoke_runs_on_interrupt_and_on_any_error(arm, failure):
    from azlift.upload.arm import ArmTarget, compute_client
    from azlift.upload.managed_disk import DirectUpload
    from azlift.upload.register import Registrar

    client = compute_client(ArmTarget.resolve(None, arm_endpoint=arm.base_url))
    notes: list[str] = []
    job = DirectUpload(Registrar(client), disk_id(arm, "d9"), on_note=notes.append)
    seen = []

    def send(sas_url: str, resume: bool):
        seen.append((sas_url.split("?")[0], resume))
        raise failure("stop")

    with pytest.raises(failure):
        job.run(upload_disk_model(location="westeurope", upload_size=SIZE + 512), send)
    assert seen and seen[0][1] is False
    assert len(arm.calls("POST", "/d9/endGetAccess")) == 1
    assert arm.get(disk_id(arm, "d9"))["properties"]["diskState"] == "Unattached"
    assert any("revoked" in note for note in notes)


def test_installed_executable_direct_upload(arm, source, tmp_path):
    import os
    from pathlib import Path
    azlift = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "azlift"
    result = subprocess.run(
        [str(azlift), "upload", str(source), "--managed-disk", disk_id(arm), "-l", "westeurope",
         "--arm-endpoint", arm.base_url, "--json"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, **arm.env(), "AZLIFT_STATE_DIR": str(tmp_path / "state")})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["diskState"] == "Unattached"
    assert "sig=" not in result.stdout + result.stderr
    assert_blob_holds(arm, source, tmp_path)


def test_subscription_must_match_the_disk_id(capsys, arm, source):
    code, _, err = upload(capsys, arm, source, "--subscription", "another")
    assert code == 2 and "differs" in err
    assert arm.requests == []


def test_failed_grant_still_revokes(arm):
    """ARM may open the disk and then fail the grant operation: revoke runs after that too."""
    from azlift.upload.arm import ArmTarget, compute_client
    from azlift.upload.errors import ArmError
    from azlift.upload.managed_disk import DirectUpload
    from azlift.upload.register import Registrar

    def fail_the_grant(what: str, state: str) -> None:
        if (what, state) == ("d8", "Succeeded"):  # the disk exists; the next operation fails
            arm.fail_next_operation = ("OperationNotAllowed", "grant failed")

    client = compute_client(ArmTarget.resolve(None, arm_endpoint=arm.base_url))
    notes: list[str] = []
    job = DirectUpload(Registrar(client, on_status=fail_the_grant), disk_id(arm, "d8"),
                       on_note=notes.append)
    sent = []
    with pytest.raises(ArmError, match="grant failed"):
        job.run(upload_disk_model(location="westeurope", upload_size=SIZE + 512),
                lambda sas, resume: sent.append(sas))
    assert sent == []
    assert len(arm.calls("POST", "/d8/beginGetAccess")) == 1
    assert len(arm.calls("POST", "/d8/endGetAccess")) == 1
    assert arm.get(disk_id(arm, "d8"))["properties"]["diskState"] == "Unattached"
    assert any("revoked" in note for note in notes)


def test_direct_upload_takes_the_upload_commands_retry_settings():
    from azlift.cli.managed_disk import _retry_settings
    from azlift.upload.target import RetrySettings

    assert _retry_settings(None, None) == RetrySettings()
    chosen = _retry_settings(2, 7.5)
    assert (chosen.total, chosen.connection_timeout, chosen.read_timeout) == (2, 7.5, 7.5)


def test_dry_run_prints_create_grant_and_revoke_and_sends_nothing(capsys, arm, source):
    """The upload command's --dry-run for a managed disk, through the function it calls."""
    from azlift.cli.managed_disk import send_to_managed_disk

    code = send_to_managed_disk(
        source=str(source), resource_id=disk_id(arm), location="westeurope",
        sku="premium_lrs", os_type=None, hyper_v_generation=None, subscription=None,
        cloud="AzureCloud", arm_endpoint=None, threads=2, resume=False, keep_open=False,
        json_output=True, quiet=True, source_format=None, dry_run=True)
    out, err = capsys.readouterr()
    assert code == 0
    requests = json.loads(out)["requests"]
    assert [(r["method"], r["url"].split("?")[0].rsplit("/", 1)[-1]) for r in requests] == [
        ("GET", "d1"), ("PUT", "d1"), ("POST", "beginGetAccess"), ("POST", "endGetAccess")]
    assert all(r["url"].startswith("https://management.azure.com" + disk_id(arm))
               and "api-version=" in r["url"] for r in requests)
    assert requests[1]["body"] == {"location": "westeurope", "sku": {"name": "Premium_LRS"},
                                   "properties": {"osType": "Linux", "hyperVGeneration": "V1",
                                                  "creationData": {"createOption": "Upload",
                                                                   "uploadSizeBytes": SIZE + 512}}}
    assert requests[2]["body"] == {"access": "Write", "durationInSeconds": 24 * 3600}
    assert "taken from the disk" in err
    assert arm.requests == []


def test_failed_revoke_after_success_says_how_to_close_the_disk(arm):
    from azlift.upload.arm import ArmTarget, compute_client
    from azlift.upload.errors import ArmError
    from azlift.upload.managed_disk import DirectUpload
    from azlift.upload.register import Registrar

    def send(sas_url: str, resume: bool) -> str:
        arm.fail_next_operation = ("InternalError", "revoke failed")  # the next one: revoke
        return "sent"

    client = compute_client(ArmTarget.resolve(None, arm_endpoint=arm.base_url))
    notes: list[str] = []
    job = DirectUpload(Registrar(client), disk_id(arm, "d7"), on_note=notes.append)
    with pytest.raises(ArmError, match="revoke failed"):
        job.run(upload_disk_model(location="westeurope", upload_size=SIZE + 512), send)
    assert len(arm.calls("POST", "/d7/endGetAccess")) == 1
    assert notes == [f"all pages of disk d7 were sent, but its write access is still open; "
                     f"close it with `az disk revoke-access --ids {disk_id(arm, 'd7')}`"]


def test_upload_command_dry_run_sends_nothing_to_arm(capsys, arm, source):
    code, out, err = upload(capsys, arm, source, "--dry-run", "--json")
    assert code == 0, err
    methods = [request["method"] for request in json.loads(out)["requests"]]
    assert methods == ["GET", "PUT", "POST", "POST"]
    assert arm.requests == []


def test_upload_command_dry_run_needs_a_managed_disk(capsys, source):
    code = main(["upload", str(source), "http://127.0.0.1:9/acct/c/d.vhd", "--dry-run"])
    _, err = capsys.readouterr()
    assert code == 2
    assert "--dry-run goes with --managed-disk" in err


@pytest.mark.parametrize("first", [KeyboardInterrupt, None])
def test_ctrl_c_during_the_revoke_says_the_disk_may_be_open(arm, first):
    """A (second) Ctrl-C while access is being revoked: a real SIGINT delivered as the
    revoke request reaches ARM, so the client is waiting for ARM's answer."""
    import os
    import signal

    from azlift.upload.arm import ArmTarget, compute_client
    from azlift.upload.managed_disk import DirectUpload
    from azlift.upload.register import Registrar

    client = compute_client(ArmTarget.resolve(None, arm_endpoint=arm.base_url))
    notes: list[str] = []
    job = DirectUpload(Registrar(client), disk_id(arm, "d5"), on_note=notes.append)

    def interrupt_the_revoke(method: str, path: str) -> None:
        if path.endswith("/d5/endGetAccess"):
            os.kill(os.getpid(), signal.SIGINT)

    def send(sas_url: str, resume: bool) -> str:
        arm.on_request = interrupt_the_revoke
        if first is not None:
            raise first("the first Ctrl-C, during the upload")
        return "sent"

    try:
        with pytest.raises(KeyboardInterrupt):
            job.run(upload_disk_model(location="westeurope", upload_size=SIZE + 512), send)
    finally:
        arm.on_request = None
    assert len(arm.calls("POST", "/d5/endGetAccess")) == 1
    assert notes[-1] == (f"interrupted while revoking access to disk d5: its write access may "
                         f"still be open; close it with `az disk revoke-access --ids "
                         f"{disk_id(arm, 'd5')}`")

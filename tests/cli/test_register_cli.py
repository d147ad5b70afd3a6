"""`azlift register` end to end: real SDK, ARM fake over HTTPS, blobs in Azurite."""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from azlift.cli.main import main
from tests.support import disk_layouts as layouts
from tests.support.azurite import azurite  # noqa: F401
from tests.support.tools import black_hole
from tests.support.fake_arm import fake_arm, fake_arm_server, upload_vhd_blob  # noqa: F401

SA = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct"


@pytest.fixture(scope="module")
def disks(tmp_path_factory, azurite):  # noqa: F811
    """Blob URLs (with read SAS) of fixed VHDs with known partition layouts."""
    root = tmp_path_factory.mktemp("disks")
    size = 32 * layouts.MIB
    linux_mbr = layouts.write_disk(root / "linux-mbr.raw", size, {
        0: layouts.mbr([layouts.MbrEntry(0x83, 2048, size // 512 - 2048, bootable=True)],
                       boot_code=True),
        2048 * 512: layouts.ext_superblock("ext4")})
    blank = layouts.write_disk(root / "data.raw", 24 * layouts.MIB, {})
    return {
        "linux_gpt": upload_vhd_blob(azurite, layouts.linux_gpt_disk(root / "linux-gpt.raw", size)),
        "windows_mbr": upload_vhd_blob(azurite, layouts.windows_mbr_disk(root / "win-mbr.raw", size)),
        "linux_mbr": upload_vhd_blob(azurite, linux_mbr),
        "data": upload_vhd_blob(azurite, blank),
        "block": upload_vhd_blob(azurite, blank, blob_type="block"),
        "truncated": upload_vhd_blob(azurite, blank, truncate_by=512),
    }


def plain(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def run(capsys, fake, *args: str) -> tuple[int, str, str]:
    code = main(["register", *args, "--arm-endpoint", fake.base_url, "-q"])
    out, err = capsys.readouterr()
    return code, out, err


def api_version(url: str) -> str:
    return parse_qs(urlsplit(url).query)["api-version"][0]


# ---- --dry-run --json: the exact requests -----------------------------------------------

def test_dry_run_generalized_image_without_data_disks(capsys, fake_arm, disks):  # noqa: F811
    code, out, err = run(capsys, fake_arm, "image", "web", "-g", "rg", "-l", "westeurope",
                         "--os-blob", disks["linux_gpt"], "--dry-run", "--json")
    assert code == 0, err
    document = json.loads(out)
    assert list(document) == ["requests"]
    [request] = document["requests"]
    assert request["method"] == "PUT"
    url = urlsplit(request["url"])
    assert url.path == ("/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg"
                        "/providers/Microsoft.Compute/images/web")
    assert api_version(request["url"]).count("-") == 2
    body = request["body"]
    assert body["location"] == "westeurope"
    assert body["properties"]["hyperVGeneration"] == "V2"
    os_disk = body["properties"]["storageProfile"]["osDisk"]
    assert os_disk == {"osType": "Linux", "osState": "Generalized",
                       "blobUri": plain(disks["linux_gpt"])}
    assert "dataDisks" not in body["properties"]["storageProfile"]
    assert "zoneResilient" not in body["properties"]["storageProfile"]
    assert "sig=" not in out
    assert fake_arm.requests == []
    assert "V2 taken from the disk" in err and "Linux taken from the disk" in err


def test_dry_run_specialized_vm_image_with_data_disks(capsys, fake_arm, disks):  # noqa: F811
    code, out, err = run(capsys, fake_arm, "image", "vm", "-g", "rg", "-l", "northeurope",
                         "--os-blob", disks["windows_mbr"], "--specialized",
                         "--data-disk", f"2={disks['data']}", "--data-disk", f"0={disks['data']}",
                         "--zone-resilient", "--dry-run", "--json")
    assert code == 0, err
    [request] = json.loads(out)["requests"]
    profile = request["body"]["properties"]["storageProfile"]
    assert profile["osDisk"] == {"osType": "Windows", "osState": "Specialized",
                                 "blobUri": plain(disks["windows_mbr"])}
    assert profile["dataDisks"] == [{"lun": 2, "blobUri": plain(disks["data"])},
                                    {"lun": 0, "blobUri": plain(disks["data"])}]
    assert profile["zoneResilient"] is True
    assert request["body"]["properties"]["hyperVGeneration"] == "V1"
    assert fake_arm.requests == []


def test_dry_run_gallery_version_with_target_regions(capsys, fake_arm, disks):  # noqa: F811
    code, out, err = run(capsys, fake_arm, "gallery-version", "-g", "rg", "-l", "westeurope",
                         "--gallery", "gal", "--definition", "web", "--version", "1.2.3",
                         "--os-blob", disks["linux_gpt"], "--storage-account-id", SA,
                         "--data-disk", f"1={disks['data']}",
                         "--target-region", "northeurope=2", "--target-region", "eastus",
                         "--create-definition", "--publisher", "contoso", "--offer", "web",
                         "--sku", "22", "--dry-run", "--json")
    assert code == 0, err
    requests = json.loads(out)["requests"]
    assert [r["method"] for r in requests] == ["GET", "PUT", "PUT"]
    definition, version = requests[1], requests[2]
    assert urlsplit(definition["url"]).path.endswith("/galleries/gal/images/web")
    assert definition["body"] == {"location": "westeurope", "properties": {
        "hyperVGeneration": "V2", "identifier": {"publisher": "contoso", "offer": "web",
                                                 "sku": "22"},
        "osState": "Generalized", "osType": "Linux"}}
    assert urlsplit(version["url"]).path.endswith("/galleries/gal/images/web/versions/1.2.3")
    properties = version["body"]["properties"]
    assert properties["publishingProfile"]["targetRegions"] == [
        {"name": "westeurope", "regionalReplicaCount": 1},
        {"name": "northeurope", "regionalReplicaCount": 2},
        {"name": "eastus", "regionalReplicaCount": 1}]
    assert properties["storageProfile"]["osDiskImage"] == {
        "source": {"uri": plain(disks["linux_gpt"]), "storageAccountId": SA}}
    assert properties["storageProfile"]["dataDiskImages"] == [
        {"lun": 1, "source": {"uri": plain(disks["data"]), "storageAccountId": SA}}]
    assert "source region westeurope added" in err
    assert fake_arm.requests == []


def test_dry_run_disk_import(capsys, fake_arm, disks):  # noqa: F811
    code, out, err = run(capsys, fake_arm, "disk", "d1", "-g", "rg", "-l", "westeurope",
                         "--blob", disks["data"], "--storage-account-id", SA,
                         "--sku", "premium_lrs", "--dry-run", "--json")
    assert code == 0, err
    [request] = json.loads(out)["requests"]
    assert request["body"] == {"location": "westeurope", "sku": {"name": "Premium_LRS"},
                               "properties": {"creationData": {
                                   "createOption": "Import", "sourceUri": plain(disks["data"]),
                                   "storageAccountId": SA}}}


# ---- against the ARM fake -----------------------------------------------------------------

def test_unreachable_arm_endpoint_fails_fast_in_one_line(capsys, fake_arm, disks):  # noqa: F811
    """ARM black-holing connections: exit 4 in seconds (the bound only rules out minutes
    of default connect retries), one line."""
    with black_hole() as port:
        started = time.monotonic()
        code = main(["register", "image", "web", "-g", "rg", "-l", "westeurope", "--os-blob",
                     disks["linux_gpt"], "--arm-endpoint", f"https://127.0.0.1:{port}", "-q"])
        took = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == 4, err
    [error] = [line for line in err.splitlines() if line.startswith("azlift: error:")]
    assert "ARM could not be reached" in error and "Traceback" not in err
    assert took < 45


def test_image_is_created_and_printed_as_one_document(capsys, fake_arm, disks):  # noqa: F811
    fake_arm.polls_before_done = 2
    code, out, err = run(capsys, fake_arm, "image", "web", "-g", "rg", "-l", "westeurope",
                         "--os-blob", disks["linux_gpt"], "--json")
    assert code == 0, err
    document = json.loads(out)
    [resource] = document["resources"]
    rid = fake_arm.resource_id("image", "rg", "web")
    assert resource == {"kind": "image", "id": rid, "name": "web", "provisioningState": "Succeeded"}
    stored = fake_arm.get(rid)
    assert stored["properties"]["provisioningState"] == "Succeeded"
    assert stored["properties"]["hyperVGeneration"] == "V2"
    assert len(fake_arm.calls("GET", "/operations/")) >= 3


def test_gpt_with_esp_registered_as_v1_is_refused(capsys, fake_arm, disks):  # noqa: F811
    code, out, err = run(capsys, fake_arm, "image", "web", "-g", "rg", "-l", "westeurope",
                         "--os-blob", disks["linux_gpt"], "--hyper-v-generation", "V1")
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert "V1" in lines[0] and "V2" in lines[0] and "EFI system partition" in lines[0]
    assert fake_arm.requests == []  # refused before any ARM call


def test_force_overrides_the_generation_refusal(capsys, fake_arm, disks):  # noqa: F811
    code, out, err = run(capsys, fake_arm, "image", "web", "-g", "rg", "-l", "westeurope",
                         "--os-blob", disks["linux_gpt"], "--hyper-v-generation", "v1", "--force")
    assert code == 0, err
    assert "--force" in err
    assert fake_arm.get(fake_arm.resource_id("image", "rg", "web"))["properties"][
        "hyperVGeneration"] == "V1"


def test_mbr_image_defaults_to_v1(capsys, fake_arm, disks):  # noqa: F811
    code, out, err = run(capsys, fake_arm, "image", "lin", "-g", "rg", "-l", "westeurope",
                         "--os-blob", disks["linux_mbr"], "--os-type", "linux")
    assert code == 0, err
    assert "Hyper-V generation V1 taken from the disk" in err
    stored = fake_arm.get(fake_arm.resource_id("image", "rg", "lin"))
    assert stored["properties"]["hyperVGeneration"] == "V1"


def test_os_type_contradiction_is_refused(capsys, fake_arm, disks):  # noqa: F811
    code, _, err = run(capsys, fake_arm, "image", "w", "-g", "rg", "-l", "westeurope",
                       "--os-blob", disks["windows_mbr"], "--os-type", "linux")
    assert code == 1
    assert "Windows" in err and "--os-type linux" in err
    assert fake_arm.requests == []


@pytest.mark.parametrize("which, expected", [("block", "expected a page blob"),
                                             ("truncated", "whole number of MiB + 512")])
def test_blob_that_is_not_a_fixed_vhd_page_blob_is_refused(capsys, fake_arm, disks, which,
                                                           expected):  # noqa: F811
    code, _, err = run(capsys, fake_arm, "disk", "d", "-g", "rg", "-l", "westeurope",
                       "--blob", disks[which], "--storage-account-id", SA)
    assert code == 1
    assert expected in err
    assert fake_arm.requests == []


def test_missing_blob_is_refused(capsys, fake_arm, disks, azurite, monkeypatch):  # noqa: F811
    monkeypatch.setenv("AZURE_STORAGE_KEY", azurite.account_key)  # no SAS: the key signs
    url = plain(disks["data"]).replace("data.vhd", "nothing.vhd")
    code, _, err = run(capsys, fake_arm, "disk", "d", "-g", "rg", "-l", "westeurope",
                       "--blob", url, "--storage-account-id", SA)
    assert code == 1
    assert "nothing.vhd: blob not found" in err


def test_arm_error_is_one_line_with_code_and_exit_4(capsys, fake_arm, disks):  # noqa: F811
    fake_arm.fail_next_operation = ("InvalidVhd", "The blob is not a valid VHD.")
    code, out, err = run(capsys, fake_arm, "image", "web", "-g", "rg", "-l", "westeurope",
                         "--os-blob", disks["linux_gpt"])
    assert code == 4
    errors = [line for line in err.splitlines() if "error" in line]
    assert errors == ["azlift: error: ARM error InvalidVhd: The blob is not a valid VHD."]


def test_conflicting_create_is_exit_4_with_json_error(capsys, fake_arm, disks):  # noqa: F811
    assert run(capsys, fake_arm, "image", "web", "-g", "rg", "-l", "westeurope",
               "--os-blob", disks["linux_gpt"])[0] == 0
    code, out, err = run(capsys, fake_arm, "image", "web", "-g", "rg", "-l", "westeurope",
                         "--os-blob", disks["linux_gpt"], "--specialized", "--json")
    assert code == 4
    document = json.loads(out)
    assert document["ok"] is False
    assert document["error"]["code"] == "arm_error"
    assert document["error"]["message"].startswith("ARM error PropertyChangeNotAllowed: ")


def test_no_wait_returns_before_the_operation_finishes(capsys, fake_arm, disks):  # noqa: F811
    code, out, err = run(capsys, fake_arm, "disk", "d1", "-g", "rg", "-l", "westeurope",
                         "--blob", disks["data"], "--storage-account-id", SA, "--no-wait",
                         "--json")
    assert code == 0, err
    [resource] = json.loads(out)["resources"]
    assert resource["provisioningState"] == "Creating"
    assert fake_arm.calls("GET", "/operations/") == []


def test_disk_import_reaches_unattached(capsys, fake_arm, disks):  # noqa: F811
    code, out, err = run(capsys, fake_arm, "disk", "d1", "-g", "rg", "-l", "westeurope",
                         "--blob", disks["windows_mbr"], "--storage-account-id", SA)
    assert code == 0, err
    stored = fake_arm.get(fake_arm.resource_id("disk", "rg", "d1"))
    assert stored["properties"]["diskState"] == "Unattached"
    assert stored["properties"]["osType"] == "Windows"
    assert stored["properties"]["hyperVGeneration"] == "V1"
    assert stored["properties"]["creationData"]["sourceUri"] == plain(disks["windows_mbr"])


def test_gallery_version_creates_missing_definition(capsys, fake_arm, disks):  # noqa: F811
    fake_arm.add_gallery("rg", "gal")
    args = ["gallery-version", "-g", "rg", "-l", "westeurope", "--gallery", "gal",
            "--definition", "web", "--os-blob", disks["linux_gpt"], "--storage-account-id", SA]
    code, _, err = run(capsys, fake_arm, *args, "--version", "1.0.0")
    assert code == 2 and "--create-definition" in err
    code, out, err = run(capsys, fake_arm, *args, "--version", "1.0.0", "--create-definition",
                         "--publisher", "p", "--offer", "o", "--sku", "s", "--json")
    assert code == 0, err
    kinds = [(r["kind"], r["provisioningState"]) for r in json.loads(out)["resources"]]
    assert kinds == [("gallery-image-definition", "Succeeded"),
                     ("gallery-image-version", "Succeeded")]
    definition = fake_arm.get(fake_arm.resource_id("definition", "rg", "gal", "web"))
    assert definition["properties"]["hyperVGeneration"] == "V2"
    # A second version into the same (existing) definition: no definition PUT.
    code, out, err = run(capsys, fake_arm, *args, "--version", "1.0.1")
    assert code == 0, err
    assert len(fake_arm.calls("PUT", "/galleries/gal/images/web")) == 3


def test_existing_definition_of_other_generation_refuses(capsys, fake_arm, disks):  # noqa: F811
    fake_arm.add_gallery("rg", "gal")
    base = ["gallery-version", "-g", "rg", "-l", "westeurope", "--gallery", "gal",
            "--definition", "web", "--storage-account-id", SA]
    assert run(capsys, fake_arm, *base, "--os-blob", disks["linux_mbr"], "--version", "1.0.0",
               "--os-type", "linux", "--create-definition", "--publisher", "p", "--offer",
               "o", "--sku", "s")[0] == 0
    code, _, err = run(capsys, fake_arm, *base, "--os-blob", disks["linux_gpt"],
                       "--version", "2.0.0")
    assert code == 1
    assert "generation V1" in err and "V2" in err
    code, _, err = run(capsys, fake_arm, *base, "--os-blob", disks["linux_mbr"],
                       "--version", "3.0.0", "--os-type", "linux", "--specialized")
    assert code == 1
    assert "holds Generalized images" in err and "--specialized given" in err
    assert fake_arm.calls("PUT", "/versions/") and not fake_arm.calls("PUT", "/versions/3.0.0")


@pytest.mark.parametrize("args, expected", [
    (["--version", "1.0"], "MAJOR.MINOR.PATCH"),
    (["--version", "1.0.0", "--data-disk", "0=https://a/b", "--data-disk", "0=https://a/c"],
     "LUN 0"),
    (["--version", "1.0.0", "--data-disk", "x"], "LUN=URL"),
    (["--version", "1.0.0", "--target-region", "eastus=0"], "replicas"),
])
def test_bad_options_are_usage_errors_before_anything(capsys, fake_arm, args, expected):  # noqa: F811
    code, _, err = run(capsys, fake_arm, "gallery-version", "-g", "rg", "-l", "westeurope",
                       "--gallery", "g", "--definition", "d", "--os-blob", "https://a/os.vhd",
                       "--storage-account-id", SA, *args)
    assert code == 2
    assert expected in err and len(err.strip().splitlines()) == 1
    assert fake_arm.requests == []


def test_missing_subscription_is_a_usage_error(capsys, fake_arm, monkeypatch):  # noqa: F811
    monkeypatch.delenv("AZURE_SUBSCRIPTION_ID")
    code, _, err = run(capsys, fake_arm, "image", "x", "-g", "rg", "-l", "westeurope",
                       "--os-blob", "https://a/os.vhd", "--os-type", "linux")
    assert code == 2 and "--subscription" in err


def test_installed_executable_dry_run(fake_arm, disks):  # noqa: F811
    exe = Path(os.environ.get("VIRTUAL_ENV", Path(__file__).resolve().parents[2] / ".venv"))
    azlift = exe / "bin" / "azlift"
    result = subprocess.run(
        [str(azlift), "register", "image", "web", "-g", "rg", "-l", "westeurope",
         "--os-blob", disks["windows_mbr"], "--dry-run", "--json"],
        capture_output=True, text=True, env={**os.environ, **fake_arm.env()}, timeout=60)
    assert result.returncode == 0, result.stderr
    [request] = json.loads(result.stdout)["requests"]
    assert request["url"].startswith("https://management.azure.com/subscriptions/")
    assert request["body"]["properties"]["storageProfile"]["osDisk"]["osType"] == "Windows"


def test_status_lines_on_a_non_terminal(capsys, fake_arm, disks):  # noqa: F811
    fake_arm.polls_before_done = 2
    code = main(["register", "disk", "d1", "-g", "rg", "-l", "westeurope", "--blob",
                 disks["windows_mbr"], "--storage-account-id", SA, "--arm-endpoint",
                 fake_arm.base_url])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = err.splitlines()
    assert "d1: Started" in lines and "d1: InProgress" in lines and "d1: Succeeded" in lines
    assert lines.count("d1: InProgress") == 1  # one line per change, not per poll
    assert out.strip() == f"disk {fake_arm.resource_id('disk', 'rg', 'd1')}: Succeeded"


def test_token_from_the_environment_is_never_printed(capsys, fake_arm, disks):  # noqa: F811
    fake_arm.fail_next_operation = ("InvalidVhd", "bad")
    code = main(["--debug", "register", "image", "web", "-g", "rg", "-l", "westeurope",
                 "--os-blob", disks["linux_gpt"], "--arm-endpoint", fake_arm.base_url, "--json"])
    out, err = capsys.readouterr()
    assert code == 4
    assert "Traceback" in err  # --debug shows it, and even then no token
    assert fake_arm.env()["AZLIFT_ARM_TOKEN"] not in out + err


def test_os_type_needed_when_the_disk_does_not_tell(capsys, fake_arm, disks):  # noqa: F811
    code, _, err = run(capsys, fake_arm, "image", "x", "-g", "rg", "-l", "westeurope",
                       "--os-blob", disks["data"])
    assert code == 2
    assert "OS type" in err and "--os-type" in err
    assert fake_arm.requests == []


def test_spinner_on_a_terminal(monkeypatch):
    import io

    from azlift.cli.register import StatusLine

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    monkeypatch.setattr("sys.stderr", screen)
    status = StatusLine()
    for state in ("Started", "InProgress", "InProgress", "Succeeded"):
        status("web", state)
    text = screen.getvalue()
    assert text.count("\r") == 4
    assert "\r| web: Started" in text and "\r/ web: InProgress" in text
    assert text.endswith("web: Succeeded\x1b[K\n")
    status("access to web", "Granted")
    assert screen.getvalue().endswith("access to web: Granted\x1b[K\n")
    text = screen.getvalue()
    quiet = StatusLine(quiet=True)
    quiet("web", "InProgress")
    assert screen.getvalue() == text


def test_dry_run_without_json_prints_the_requests(capsys, fake_arm, disks):  # noqa: F811
    code, out, err = run(capsys, fake_arm, "disk", "d1", "-g", "rg", "-l", "westeurope",
                         "--blob", disks["data"], "--storage-account-id", SA, "--dry-run")
    assert code == 0, err
    first, *body = out.splitlines()
    assert first.startswith("PUT https://") and "/disks/d1?api-version=" in first
    assert json.loads("\n".join(body))["properties"]["creationData"]["createOption"] == "Import"
    assert "nothing was sent" in err
    assert fake_arm.requests == []


# ---- input refused before any request, and the blob that is checked is the one named -------

@pytest.mark.parametrize("url", ["notaurl", "https://acct.blob.core.windows.net/only-container",
                                 "ftp://acct.blob.core.windows.net/c/os.vhd"])
def test_malformed_blob_url_is_one_usage_line(capsys, fake_arm, url):  # noqa: F811
    code, out, err = run(capsys, fake_arm, "image", "x", "-g", "rg", "-l", "westeurope",
                         "--os-blob", url, "--os-type", "linux")
    assert code == 2
    assert err.strip().splitlines() == [
        f"azlift: error: --os-blob expects a blob URL like https://ACCOUNT.blob.core.windows.net"
        f"/CONTAINER/NAME.vhd, found {url!r}"]
    assert fake_arm.requests == []


def test_bad_os_type_is_refused_before_the_blob_is_read(capsys, fake_arm):  # noqa: F811
    code, _, err = run(capsys, fake_arm, "image", "x", "-g", "rg", "-l", "westeurope",
                       "--os-blob", "https://127.0.0.1:1/devstoreaccount1/c/none.vhd?sig=x",
                       "--os-type", "solaris")
    assert code == 2
    assert "--os-type expects linux or windows, found 'solaris'" in err


def test_connection_string_never_redirects_to_another_host(capsys, fake_arm, disks, azurite,
                                                           monkeypatch):  # noqa: F811
    """The credential comes from the environment; the host always comes from the URL."""
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", fake_arm.ca_bundle)
    here = urlsplit(plain(disks["data"]))
    # Same path on another server (the ARM fake, which knows no blobs): that server answers.
    elsewhere = here._replace(scheme="https", netloc=urlsplit(fake_arm.base_url).netloc)
    code, _, err = run(capsys, fake_arm, "disk", "d", "-g", "rg", "-l", "westeurope",
                       "--blob", elsewhere.geturl(), "--storage-account-id", SA, "--dry-run")
    assert code == 4
    assert err.startswith(f"azlift: error: {elsewhere.geturl()}: storage error 501")
    assert run(capsys, fake_arm, "disk", "d", "-g", "rg", "-l", "westeurope", "--blob",
               plain(disks["data"]), "--storage-account-id", SA, "--dry-run")[0] == 0


def test_http_blob_without_any_credential_says_what_to_set(capsys, fake_arm, disks,
                                                           monkeypatch):  # noqa: F811
    for name in ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_KEY", "AZURE_STORAGE_SAS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    code, _, err = run(capsys, fake_arm, "disk", "d", "-g", "rg", "-l", "westeurope",
                       "--blob", plain(disks["data"]), "--storage-account-id", SA)
    assert code == 2
    [line] = err.strip().splitlines()
    assert "no storage credential" in line and "AZURE_STORAGE_CONNECTION_STRING" in line


# ---- gallery versions: dry run into an existing definition, --no-wait ----------------------

def test_dry_run_version_into_a_definition_it_cannot_read(capsys, fake_arm, disks):  # noqa: F811
    code, out, err = run(capsys, fake_arm, "gallery-version", "-g", "rg", "-l", "westeurope",
                         "--gallery", "gal", "--definition", "web", "--version", "1.0.1",
                         "--os-blob", disks["linux_gpt"], "--storage-account-id", SA,
                         "--dry-run", "--json")
    assert code == 0, err
    requests = json.loads(out)["requests"]
    assert [(r["method"], urlsplit(r["url"]).path.rsplit("/", 2)[-2:]) for r in requests] == [
        ("GET", ["images", "web"]), ("PUT", ["versions", "1.0.1"])]
    assert "not read" in err
    assert fake_arm.requests == []


def test_no_wait_still_waits_for_a_new_definition(capsys, fake_arm, disks):  # noqa: F811
    fake_arm.add_gallery("rg", "gal")
    fake_arm.polls_before_done = 2
    code, out, err = run(capsys, fake_arm, "gallery-version", "-g", "rg", "-l", "westeurope",
                         "--gallery", "gal", "--definition", "web", "--version", "1.0.0",
                         "--os-blob", disks["linux_gpt"], "--storage-account-id", SA,
                         "--create-definition", "--publisher", "p", "--offer", "o", "--sku", "s",
                         "--no-wait", "--json")
    assert code == 0, err
    states = [(r["kind"], r["provisioningState"]) for r in json.loads(out)["resources"]]
    assert states == [("gallery-image-definition", "Succeeded"),
                      ("gallery-image-version", "Creating")]
    version = fake_arm.get(fake_arm.resource_id("version", "rg", "gal", "web", "1.0.0"))
    assert version["properties"]["provisioningState"] == "Creating"


def test_shared_options_follow_the_sub_command(capsys, fake_arm, disks):  # noqa: F811
    """The options every register command shares are declared once and read after it."""
    for command in ("image", "gallery-version", "disk"):
        code = main(["register", command, "--help"])
        out, _ = capsys.readouterr()
        assert code == 0
        for option in ("--subscription", "--cloud", "--arm-endpoint", "--dry-run", "--no-wait",
                       "--force", "--json", "--quiet"):
            assert option in out, (command, option)
    code, out, err = run(capsys, fake_arm, "disk", "d1", "-g", "rg", "-l", "westeurope",
                         "--blob", disks["data"], "--storage-account-id", SA, "--dry-run",
                         "--json", "--subscription", "sub-9", "--cloud", "AzureChinaCloud")
    assert code == 0, err
    [request] = json.loads(out)["requests"]
    assert urlsplit(request["url"]).path.startswith("/subscriptions/sub-9/")


def test_a_failed_operation_ends_its_status_line(capsys, fake_arm, disks):  # noqa: F811
    fake_arm.fail_next_operation = ("InvalidVhd", "The blob is not a valid VHD.")
    code = main(["register", "image", "web", "-g", "rg", "-l", "westeurope", "--os-blob",
                 disks["linux_gpt"], "--arm-endpoint", fake_arm.base_url])
    _, err = capsys.readouterr()
    assert code == 4
    lines = err.splitlines()
    assert lines[-2:] == ["web: Failed",
                          "azlift: error: ARM error InvalidVhd: The blob is not a valid VHD."]


def _blob_ending_in(azurite, footer: bytes, size: int = 24 * layouts.MIB) -> str:  # noqa: F811
    """A page blob of a whole MiB + 512 whose last 512 bytes are ``footer`` (read SAS)."""
    import datetime

    from azure.storage.blob import BlobSasPermissions, generate_blob_sas

    container = azurite.new_container()
    client = azurite.service_client().get_blob_client(container, "odd.vhd")
    client.create_page_blob(size + 512)
    client.upload_page(footer, offset=size, length=512)
    sas = generate_blob_sas(azurite.account_name, container, "odd.vhd",
                            account_key=azurite.account_key,
                            permission=BlobSasPermissions(read=True),
                            expiry=datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1))
    return f"{client.url}?{sas}"


@pytest.mark.parametrize("make_footer, expected", [
    (lambda f: f._replace(checksum=f.checksum ^ 1).pack(), "footer checksum does not match"),
    (lambda f: f._replace(disk_type=3).with_checksum().pack(), "disk type is dynamic, expected fixed"),
    (lambda f: f._replace(current_size=f.current_size - layouts.MIB).with_checksum().pack(),
     "footer says 24117248 bytes, the blob holds 25165824"),
    (lambda f: bytes(512), "no VHD footer in the last 512 bytes"),
])
def test_blob_without_a_valid_fixed_footer_is_refused(capsys, fake_arm, azurite, make_footer,
                                                      expected):  # noqa: F811
    from azlift.vhd import fixed_footer

    url = _blob_ending_in(azurite, make_footer(fixed_footer(24 * layouts.MIB)))
    code, _, err = run(capsys, fake_arm, "image", "x", "-g", "rg", "-l", "westeurope",
                       "--os-blob", url, "--os-type", "linux", "--dry-run")
    assert code == 1
    [line] = err.strip().splitlines()
    assert "not a valid fixed VHD footer" in line or "no VHD footer" in line
    assert expected in line and "sig=" not in line


def test_os_disk_above_4095_gib_is_refused_but_a_data_disk_is_not(capsys, fake_arm,
                                                                 azurite):  # noqa: F811
    from azlift.vhd import fixed_footer

    size = 4096 * 1024 * layouts.MIB  # sparse in the emulator: only the footer is written
    url = _blob_ending_in(azurite, fixed_footer(size).pack(), size)
    code, _, err = run(capsys, fake_arm, "image", "big", "-g", "rg", "-l", "westeurope",
                       "--os-blob", url, "--os-type", "linux", "--dry-run")
    assert code == 1
    assert "os_disk_too_large" in err and "4095 GiB" in err
    code, out, err = run(capsys, fake_arm, "disk", "big", "-g", "rg", "-l", "westeurope",
                         "--blob", url, "--storage-account-id", SA, "--dry-run", "--json")
    assert code == 0, err
    assert json.loads(out)["requests"][0]["body"]["properties"]["creationData"][
        "createOption"] == "Import"
    code, _, err = run(capsys, fake_arm, "disk", "big", "-g", "rg", "-l", "westeurope",
                       "--blob", url, "--storage-account-id", SA, "--os-type", "windows",
                       "--dry-run")
    assert code == 1 and "os_disk_too_large" in err


def test_an_arm_endpoint_that_is_no_url_is_a_usage_error(capsys, fake_arm, disks):  # noqa: F811
    code = main(["register", "image", "web", "-g", "rg", "-l", "westeurope", "--os-blob",
                 disks["linux_gpt"], "--arm-endpoint", "https://[arm.example", "-q"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "'https://[arm.example' is not a URL" in err


def test_an_os_blob_on_a_storage_endpoint_that_is_down_fails_fast(capsys, fake_arm):  # noqa: F811
    """The blob checks' first request gets the first-contact retries: seconds, not the
    SDK's minute and a half of default retries."""
    from tests.support.tools import free_port

    blob = f"http://127.0.0.1:{free_port()}/devstoreaccount1/vhds/os.vhd?sv=2024-01-01&sig=x"
    started = time.monotonic()
    code = main(["register", "image", "web", "-g", "rg", "-l", "westeurope", "--os-blob", blob,
                 "--arm-endpoint", fake_arm.base_url, "-q"])
    took = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == 4, err
    assert "storage could not be reached" in err and "sig=" not in err
    assert took < 20

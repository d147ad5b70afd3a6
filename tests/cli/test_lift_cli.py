"""`azlift lift`: one VM through the embedded bulk engine, against a sandboxed sshd guest,
Azurite (behind the counting proxy) and the ARM fake."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from azlift.cli import common
from tests.prep.linux.conftest import keys, root_tree, start_sshd, trust  # noqa: F401
from tests.support.azurite import azurite  # noqa: F401
from tests.support.bulk_plans import blob_bytes, converted, make_disk
from tests.support.fake_arm import fake_arm, fake_arm_server  # noqa: F401
from tests.support.fake_wsman import (  # noqa: F401
    TEST_PASSWORD,
    TEST_USER,
    FakeWSMan,
    WindowsMachine,
    wsman_certificate,
)
from tests.support.fault_proxy import FaultProxy
from tests.support.guest_disks import PowerOffWriter, final_os_disk, placeholder
from tests.support.rootfs import RECORDED_LOG, read_log


@pytest.fixture
def proxy(azurite, monkeypatch, tmp_path):  # noqa: F811
    with FaultProxy(upstream=(azurite.host, azurite.port)) as counting:
        monkeypatch.setenv("AZLIFT_EMULATOR_ENDPOINT", counting.url_for(azurite.endpoint))
        monkeypatch.setenv("AZLIFT_STATE_DIR", str(tmp_path / "state"))
        monkeypatch.setattr(common, "stdin_is_terminal", lambda: False)
        yield counting


def guest_args(server, keys, known_hosts: Path) -> list[str]:  # noqa: F811
    return ["--linux", server.host, "--port", str(server.port), "--user", "root",
            "--identity", str(keys.client_key), "--known-hosts", str(known_hosts),
            "--timeout", "30", "--settle-seconds", "1", "--settle-timeout", "30"]


def azure_args(container: str, fake_arm) -> list[str]:  # noqa: F811
    return ["--destination", container, "--emulator", "-g", "rg", "-l", "westeurope",
            "--arm-endpoint", fake_arm.base_url, "--threads", "4"]


def test_lift_takes_a_linux_guest_all_the_way_and_a_rerun_does_nothing(
        run_main, tmp_path, proxy, azurite, fake_arm, root_tree, start_sshd,  # noqa: F811
        keys) -> None:  # noqa: F811
    container = azurite.new_container_name()
    server = start_sshd(root_tree("ubuntu"))
    known_hosts = trust(server, tmp_path / "known_hosts")
    final = final_os_disk(tmp_path / "final.raw", "linux", seed=11)
    disk = placeholder(tmp_path / "web01.raw")
    writer = PowerOffWriter(disk, final, server.powered_off.is_set).start()
    args = ["lift", *guest_args(server, keys, known_hosts), "--disk", disk, "--image", "web01",
            *azure_args(container, fake_arm), "--yes", "--json", "-q"]

    result = run_main(*args)
    assert result.code == 0, result.err
    report = json.loads(result.out)
    [entry] = report["vms"]
    assert (entry["id"], entry["status"], entry["error"]) == ("web01", "done", None)
    assert entry["phases"] == ["prep", "settle", "check", "upload", "verify", "register"]
    assert entry["prep"]["family"] == "ubuntu" and entry["prep"]["host"] == server.host
    assert writer.written.is_set() and disk.read_bytes() == final.read_bytes()
    assert blob_bytes(azurite, container, "web01-os.vhd") == converted(disk, tmp_path)
    image = fake_arm.get(fake_arm.resource_id("image", "rg", "web01"))
    assert image["properties"]["storageProfile"]["osDisk"]["osType"] == "Linux"
    assert "waagent [-force] [-deprovision]" in read_log(server.upper, RECORDED_LOG)

    sent, arm_calls = proxy.stats.put_page_bytes_forwarded, len(fake_arm.calls())
    text = run_main(*[a for a in args if a != "--json"])  # the same command: resumes
    assert text.code == 0, text.err
    assert text.out.startswith("web01: done (phases: prep → settle → check → upload → verify"
                               " → register)")
    assert "image: /subscriptions/" in text.out
    assert proxy.stats.put_page_bytes_forwarded == sent and len(fake_arm.calls()) == arm_calls


def test_lift_generalizes_a_windows_guest_and_never_shows_its_password(
        run_main, tmp_path, proxy, azurite, fake_arm, wsman_certificate,  # noqa: F811
        monkeypatch) -> None:
    monkeypatch.setenv("AZLIFT_TEST_WIN_PW", TEST_PASSWORD)
    cert, key = wsman_certificate
    guest = FakeWSMan(WindowsMachine(), user=TEST_USER, password=TEST_PASSWORD,
                      certfile=cert, keyfile=key).start()
    try:
        container = azurite.new_container_name()
        final = final_os_disk(tmp_path / "final.raw", "windows", seed=12)
        disk = placeholder(tmp_path / "win01.raw")
        PowerOffWriter(disk, final, lambda: guest.machine.powered_off).start()
        result = run_main("lift", "--windows", "127.0.0.1", "--port", str(guest.port),
                          "--user", TEST_USER, "--password-env", "AZLIFT_TEST_WIN_PW",
                          "--transport", "basic", "--ca-cert", cert, "--poll-interval", "0.05",
                          "--timeout", "30", "--settle-seconds", "1", "--disk", disk,
                          "--image", "win01", *azure_args(container, fake_arm), "--yes")
    finally:
        guest.stop()
    assert result.code == 0, result.err
    assert result.out.startswith("win01: done (phases: prep → settle → check")
    assert "prep: done windows guest 127.0.0.1" in result.out
    assert guest.machine.sysprep_arguments and guest.machine.powered_off
    image = fake_arm.get(fake_arm.resource_id("image", "rg", "win01"))
    assert image["properties"]["storageProfile"]["osDisk"]["osType"] == "Windows"
    assert blob_bytes(azurite, container, "win01-os.vhd") == converted(disk, tmp_path)
    assert TEST_PASSWORD not in result.out + result.err


def test_lift_without_prep_starts_at_check_with_data_disks(
        run_main, tmp_path, proxy, azurite, fake_arm) -> None:  # noqa: F811
    container = azurite.new_container_name()
    os_disk = make_disk(tmp_path, "os", "vhdx", os_disk=True, seed=2)
    data = make_disk(tmp_path, "data", "vhd-dynamic", seed=3)
    result = run_main("lift", "--no-prep", "--disk", os_disk, "--disk", data, "--lun", "3",
                      "--image", "app", *azure_args(container, fake_arm), "--json", "-q")
    assert result.code == 0, result.err
    [entry] = json.loads(result.out)["vms"]
    assert (entry["status"], entry["prep"]) == ("done", None)
    assert entry["phases"] == ["check", "upload", "verify", "register"]
    assert blob_bytes(azurite, container, "app-lun3.vhd") == converted(data, tmp_path)
    profile = fake_arm.get(fake_arm.resource_id("image", "rg", "app"))["properties"][
        "storageProfile"]
    assert [disk["lun"] for disk in profile["dataDisks"]] == [3]


def test_lift_refuses_without_yes_dry_runs_read_only_and_fails_an_unready_guest(
        run_main, tmp_path, proxy, azurite, fake_arm, root_tree, start_sshd,  # noqa: F811
        keys) -> None:  # noqa: F811
    container = azurite.new_container_name()
    server = start_sshd(root_tree("ubuntu", ready=False))
    known_hosts = trust(server, tmp_path / "known_hosts")
    disk = final_os_disk(tmp_path / "web01.raw", "linux", seed=5)
    base = ["lift", *guest_args(server, keys, known_hosts), "--disk", disk, "--image", "web01",
            *azure_args(container, fake_arm)]

    refused = run_main(*base)
    assert refused.code == 5
    assert "web01: linux guest 127.0.0.1 as root" in refused.err
    assert refused.err_lines[-1].startswith("azlift: error: refusing to generalize 1 guest(s)")
    assert not (tmp_path / "state").exists()

    planned = run_main(*base, "--dry-run", "--json")
    assert planned.code == 1, planned.err  # the guest has blocking findings
    prep = json.loads(planned.out)["vm"]["prep"]
    assert prep["ready"] is False and prep["action"] == "generalize"
    assert any(f["severity"] == "blocker" for f in prep["findings"])
    assert any(step["command"] == "shutdown -h now" for step in prep["plan"]["steps"])
    assert read_log(server.upper, RECORDED_LOG) == []
    assert proxy.stats.requests == 0 and fake_arm.calls() == []

    failed = run_main(*base, "--yes")
    assert failed.code == 1, failed.err
    assert "FAILED at prep: not_ready:" in failed.out and "BLOCKER" in failed.out
    assert read_log(server.upper, RECORDED_LOG) == []
    assert proxy.stats.requests == 0 and fake_arm.calls() == []


@pytest.mark.parametrize("extra, expected", [
    (["--no-prep", "--disk", "a.raw", "--disk", "b.raw", "--image", "x"],
     "expected one --lun for each data disk"),
    (["--disk", "a.raw", "--image", "x"], "give exactly one of --linux HOST"),
    (["--no-prep", "--disk", "a.raw"], "give exactly one of --image NAME"),
    (["--no-prep", "--disk", "a.raw", "--image", "x", "-g", "rg", "-l", "l",
      "--destination", "c", "--emulator", "--hyper-v-generation", "V3"],
     "--hyper-v-generation: expected one of V1, V2, found 'V3'"),
])
def test_usage_errors_are_one_line_exit_2(run_main, extra: list[str], expected: str) -> None:
    result = run_main("lift", *extra)
    assert result.code == 2, result.err
    assert expected in result.err and "Traceback" not in result.err


def test_a_password_in_place_of_a_variable_name_is_refused(run_main) -> None:
    result = run_main("lift", "--windows", "h", "--password-env", "hunter2!", "--disk", "a.raw",
                      "--image", "x", "-g", "rg", "-l", "l", "--destination", "c", "--emulator")
    assert result.code == 2
    assert "--password-env: refused" in result.err and "hunter2" not in result.err

"""`azlift bulk run` with prep phases, end to end: sandboxed sshd guests (Linux) and the
WS-Management fake (Windows) are generalized; their disk files, made by the test, get their
final bytes from the guests' power-off stand-ins; then settle, check, upload to Azurite
(behind the counting proxy) and registration against the ARM fake."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from azlift.bulk import default_state_path
from azlift.cli import common
from tests.cli.conftest import installed_azlift
from tests.prep.linux.conftest import keys, root_tree, start_sshd, trust  # noqa: F401
from tests.support.azurite import azurite  # noqa: F401
from tests.support.bulk_plans import blob_bytes, converted, manifest
from tests.support.fake_arm import fake_arm, fake_arm_server  # noqa: F401
from tests.support.fake_wsman import (  # noqa: F401
    TEST_PASSWORD,
    TEST_USER,
    FakeWSMan,
    WindowsMachine,
    wsman_certificate,
)
from tests.support.fault_proxy import FaultProxy
from tests.support.guest_disks import PowerOffWriter, RestlessDisk, final_os_disk, placeholder
from tests.support.rootfs import RECORDED_LOG, read_log
from tests.support.terminal import answer_on_terminal

PASSWORD_VAR = "AZLIFT_TEST_WIN01_PASSWORD"
ALL_PHASES = ["prep", "settle", "check", "upload", "verify", "register"]


@pytest.fixture
def proxy(azurite, monkeypatch, tmp_path):  # noqa: F811
    """Azurite behind the counting proxy; state in the test's own directory; no terminal."""
    with FaultProxy(upstream=(azurite.host, azurite.port)) as counting:
        monkeypatch.setenv("AZLIFT_EMULATOR_ENDPOINT", counting.url_for(azurite.endpoint))
        monkeypatch.setenv("AZLIFT_STATE_DIR", str(tmp_path / "state"))
        monkeypatch.setenv(PASSWORD_VAR, TEST_PASSWORD)
        monkeypatch.setattr(common, "stdin_is_terminal", lambda: False)
        yield counting


@pytest.fixture
def windows_guest(wsman_certificate):  # noqa: F811
    cert, key = wsman_certificate
    fake = FakeWSMan(WindowsMachine(), user=TEST_USER, password=TEST_PASSWORD,
                     certfile=cert, keyfile=key).start()
    yield fake
    fake.stop()


def linux_vm(vm_id: str, server, keys, known_hosts: Path, disk: Path,  # noqa: F811
             **prep) -> dict:
    return {"id": vm_id, "source": "hv01", "disk": [{"path": str(disk), "role": "os"}],
            "prep": {"os": "linux", "host": server.host, "port": server.port, "user": "root",
                     "identity": str(keys.client_key), "known_hosts": str(known_hosts),
                     "timeout": 30, "settle_seconds": 1, "settle_timeout": 30, **prep}}


def windows_vm(vm_id: str, fake: FakeWSMan, certificate: Path, disk: Path) -> dict:
    return {"id": vm_id, "source": "hv01", "disk": [{"path": str(disk), "role": "os"}],
            "prep": {"os": "windows", "host": "127.0.0.1", "port": fake.port, "user": TEST_USER,
                     "password_env": PASSWORD_VAR, "transport": "basic",
                     "ca_cert": str(certificate), "poll_interval": 0.05, "timeout": 30,
                     "settle_seconds": 1, "settle_timeout": 30}}


def write_plan(tmp_path: Path, vms: list[dict], container: str, fake_arm) -> Path:  # noqa: F811
    return manifest(tmp_path / "plan.toml", vms, sources={"hv01": 2}, destination=container,
                    emulator=True, register="image", resource_group="rg",
                    location="westeurope", arm_endpoint=fake_arm.base_url, threads=4)


def one_of_each(tmp_path: Path, azurite, fake_arm, server, keys, windows_guest,  # noqa: F811
                certificate: Path) -> tuple[object, dict[str, Path], Path]:
    """A manifest with one Linux and one Windows guest whose disks are placeholders."""
    known_hosts = trust(server, tmp_path / "known_hosts")
    disks = {name: placeholder(tmp_path / f"{name}.raw") for name in ("web01", "win01")}
    plan = write_plan(tmp_path, [
        linux_vm("web01", server, keys, known_hosts, disks["web01"]),
        windows_vm("win01", windows_guest, certificate, disks["win01"])],
        azurite.new_container_name(), fake_arm)
    return server, disks, plan


def no_secret(*texts: str) -> None:
    for text in texts:
        assert TEST_PASSWORD not in text


def test_two_linux_guests_and_a_windows_guest_go_all_the_way(
        run_main, tmp_path, proxy, azurite, fake_arm, root_tree, start_sshd, keys,  # noqa: F811
        windows_guest, wsman_certificate) -> None:  # noqa: F811
    container = azurite.new_container_name()
    known_hosts = tmp_path / "known_hosts"
    guests = {"web01": start_sshd(root_tree("ubuntu")), "db01": start_sshd(root_tree("debian"))}
    known_hosts.write_text("".join(server.known_hosts_line for server in guests.values()))
    finals, disks, writers, vms = {}, {}, [], []
    for n, (vm_id, server) in enumerate(guests.items()):
        finals[vm_id] = final_os_disk(tmp_path / "final" / f"{vm_id}.raw", "linux", seed=n)
        disk = disks[vm_id] = placeholder(tmp_path / "hv01" / f"{vm_id}.raw")
        writers.append(PowerOffWriter(disk, finals[vm_id], server.powered_off.is_set).start())
        vms.append(linux_vm(vm_id, server, keys, known_hosts, disk))
    finals["win01"] = final_os_disk(tmp_path / "final" / "win01.raw", "windows", seed=7)
    disk = disks["win01"] = placeholder(tmp_path / "hv01" / "win01.raw")
    writers.append(PowerOffWriter(disk, finals["win01"],
                                  lambda: windows_guest.machine.powered_off).start())
    vms.append(windows_vm("win01", windows_guest, wsman_certificate[0], disk))
    plan = write_plan(tmp_path, vms, container, fake_arm)

    result = run_main("bulk", "run", plan, "--yes", "--json", "-q")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    entries = {entry["id"]: entry for entry in report["vms"]}
    for vm_id, entry in entries.items():
        assert (entry["status"], entry["phases"], entry["error"]) == ("done", ALL_PHASES, None)
        assert entry["prep"]["status"] == "done" and entry["prep"]["worker"]
        # the bytes written after power-off (the footer's time stamp is the file's)
        assert disks[vm_id].read_bytes() == finals[vm_id].read_bytes()
        assert blob_bytes(azurite, container, f"{vm_id}-os.vhd") == \
            converted(disks[vm_id], tmp_path), vm_id
    assert entries["web01"]["prep"]["family"] == "ubuntu"
    assert entries["win01"]["prep"]["outcome"]["image_state"] == \
        "IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE"
    assert all(writer.written.is_set() for writer in writers)
    for server in guests.values():
        recorded = read_log(server.upper, RECORDED_LOG)
        assert "waagent [-force] [-deprovision]" in recorded and "shutdown [-h] [now]" in recorded
    assert windows_guest.machine.sysprep_arguments and windows_guest.machine.powered_off
    for vm_id, os_type in (("web01", "Linux"), ("db01", "Linux"), ("win01", "Windows")):
        image = fake_arm.get(fake_arm.resource_id("image", "rg", vm_id))
        assert image["properties"]["storageProfile"]["osDisk"]["osType"] == os_type
    state = default_state_path(plan)
    no_secret(result.out, result.err, state.read_bytes().decode("latin-1"))

    rows = list(csv.DictReader(io.StringIO(run_main("bulk", "report", plan, "--csv").out)))
    assert {(row["vm"], row["prep"], row["phases"]) for row in rows} == {
        (vm_id, "done", " ".join(ALL_PHASES)) for vm_id in entries}

    # A rerun has nothing left to do: no guest is touched again, no byte is sent.
    sent, scripts = proxy.stats.put_page_bytes_forwarded, list(windows_guest.scripts)
    again = run_main("bulk", "run", plan, "--json", "-q")  # nothing to confirm either
    assert again.code == 0, again.err
    assert proxy.stats.put_page_bytes_forwarded == sent and windows_guest.scripts == scripts


def test_unready_guest_fails_at_prep_restless_disk_at_settle_and_a_rerun_resumes(
        run_main, tmp_path, proxy, azurite, fake_arm, root_tree, start_sshd,  # noqa: F811
        keys) -> None:  # noqa: F811
    container = azurite.new_container_name()
    known_hosts = tmp_path / "known_hosts"
    unready, busy = start_sshd(root_tree("ubuntu", ready=False)), start_sshd(root_tree("debian"))
    known_hosts.write_text(unready.known_hosts_line + busy.known_hosts_line)
    final = final_os_disk(tmp_path / "final" / "busy.raw", "linux", seed=3)
    busy_disk = placeholder(tmp_path / "hv01" / "busy.raw")
    writer = PowerOffWriter(busy_disk, final, busy.powered_off.is_set).start()
    unready_disk = final_os_disk(tmp_path / "hv01" / "unready.raw", "linux", seed=4)
    plan = write_plan(tmp_path, [
        linux_vm("unready", unready, keys, known_hosts, unready_disk),
        linux_vm("busy", busy, keys, known_hosts, busy_disk, settle_timeout=3)],
        container, fake_arm)

    restless = None

    def keep_writing() -> None:
        nonlocal restless
        writer.written.wait(60)
        restless = RestlessDisk(busy_disk).start()
    import threading
    threading.Thread(target=keep_writing, daemon=True).start()

    first = run_main("bulk", "run", plan, "--yes", "--json", "-q")
    assert first.code == 1, first.err
    entries = {entry["id"]: entry for entry in json.loads(first.out)["vms"]}
    bad = entries["unready"]
    assert (bad["status"], bad["phase"], bad["error"]["code"]) == ("failed", "prep", "not_ready")
    assert bad["prep"]["status"] == "failed" and bad["phases"] == []
    blockers = {f["code"] for f in bad["prep"]["findings"] if f["severity"] == "blocker"}
    assert blockers and blockers <= set(bad["error"]["message"].replace(":", " ").split())
    assert read_log(unready.upper, RECORDED_LOG) == []  # checked, never changed
    settle = entries["busy"]
    assert (settle["status"], settle["phase"], settle["error"]["code"]) == \
        ("failed", "settle", "not_settled")
    assert settle["prep"]["status"] == "done" and settle["phases"] == ["prep"]
    assert "still changed" in settle["error"]["message"]
    assert proxy.stats.requests == 0  # nothing of either VM reached storage
    assert fake_arm.calls() == []
    assert restless is not None and restless.writes > 0

    # The fix: the disk stops changing. The rerun settles and finishes `busy` without
    # generalizing it again (its guest is gone: any new prep would fail to connect).
    restless.stop()
    recorded = read_log(busy.upper, RECORDED_LOG)
    second = run_main("bulk", "run", plan, "--retry-failed", "--yes", "--json", "-q")
    assert second.code == 1, second.err  # `unready` is still not ready
    entries = {entry["id"]: entry for entry in json.loads(second.out)["vms"]}
    assert (entries["busy"]["status"], entries["busy"]["phases"]) == ("done", ALL_PHASES)
    assert entries["busy"]["attempts"] == 2
    assert read_log(busy.upper, RECORDED_LOG) == recorded
    assert entries["unready"]["error"]["code"] == "not_ready"
    expected = bytearray(final.read_bytes())
    expected[20 * 1024 * 1024:20 * 1024 * 1024 + 512] = \
        (restless.writes - 1).to_bytes(8, "little") * 64
    assert busy_disk.read_bytes() == expected  # the disk as it settled
    assert blob_bytes(azurite, container, "busy-os.vhd") == converted(busy_disk, tmp_path)
    assert not any(name.startswith("unready") for name in
                   (b.name for b in azurite.service_client().get_container_client(
                       container).list_blobs()))


def test_without_yes_and_without_a_terminal_nothing_is_touched(
        run_main, tmp_path, proxy, azurite, fake_arm, root_tree, start_sshd, keys,  # noqa: F811
        windows_guest, wsman_certificate) -> None:  # noqa: F811
    server, disks, plan = one_of_each(tmp_path, azurite, fake_arm, start_sshd(root_tree("ubuntu")),
                                      keys, windows_guest, wsman_certificate[0])
    result = run_main("bulk", "run", plan)
    assert result.code == 5, result.err
    assert "web01: linux guest 127.0.0.1 as root" in result.err
    assert "win01: windows guest 127.0.0.1 as azureadmin" in result.err
    assert "back the VM up" in result.err  # the backup reminder
    assert result.err_lines[-1].startswith("azlift: error: refusing to generalize 2 guest(s)")
    assert windows_guest.scripts == [] and read_log(server.upper, RECORDED_LOG) == []
    assert not (tmp_path / "state").exists()  # not even a state file
    assert proxy.stats.requests == 0 and fake_arm.calls() == []


def test_dry_run_shows_each_guest_plan_and_changes_nothing(
        run_main, tmp_path, proxy, azurite, fake_arm, root_tree, start_sshd, keys,  # noqa: F811
        windows_guest, wsman_certificate) -> None:  # noqa: F811
    server, disks, plan = one_of_each(tmp_path, azurite, fake_arm, start_sshd(root_tree("ubuntu")),
                                      keys, windows_guest, wsman_certificate[0])
    before = {name: path.stat() for name, path in disks.items()}

    result = run_main("bulk", "run", plan, "--dry-run", "--json")
    assert result.code == 0, result.err
    entries = {entry["id"]: entry for entry in json.loads(result.out)["vms"]}
    linux = entries["web01"]["prep"]
    assert (linux["action"], linux["ready"], linux["family"]) == ("generalize", True, "ubuntu")
    commands = [step["command"] for step in linux["plan"]["steps"]]
    assert "waagent -force -deprovision" in commands and "shutdown -h now" in commands
    windows = entries["win01"]["prep"]
    assert windows["ready"] is True
    assert any("Sysprep" in step["command"] for step in windows["plan"]["steps"])

    text = run_main("bulk", "run", plan, "--dry-run")
    assert text.code == 0, text.err
    assert "Plan for 127.0.0.1 (ubuntu):" in text.out and "[destructive]" in text.out
    assert "no blocking findings" in text.out

    assert read_log(server.upper, RECORDED_LOG) == []
    assert windows_guest.scripts == ["check", "check"]  # read-only, twice
    assert windows_guest.machine.sysprep_arguments is None
    assert not windows_guest.machine.powered_off and not server.powered_off.is_set()
    assert proxy.stats.requests == 0 and fake_arm.calls() == []
    assert {name: path.stat() for name, path in disks.items()} == before
    no_secret(result.out, result.err, text.out, text.err)


def test_no_on_the_terminal_leaves_every_guest_alone(
        tmp_path, proxy, azurite, fake_arm, root_tree, start_sshd, keys,  # noqa: F811
        windows_guest, wsman_certificate) -> None:  # noqa: F811
    server, _, plan = one_of_each(tmp_path, azurite, fake_arm, start_sshd(root_tree("ubuntu")),
                                  keys, windows_guest, wsman_certificate[0])
    code, screen = answer_on_terminal([installed_azlift(), "bulk", "run", str(plan)], "n\n")
    assert code == 5, screen
    assert "Generalize these 2 guest(s) and power them off?" in screen
    assert "back the VM up" in screen  # the reminder comes before the question
    assert windows_guest.scripts == [] and read_log(server.upper, RECORDED_LOG) == []
    assert not (tmp_path / "state").exists()
    assert proxy.stats.requests == 0 and fake_arm.calls() == []

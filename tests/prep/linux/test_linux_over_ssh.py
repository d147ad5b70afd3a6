"""Against a real sshd per family: findings, exact deprovision commands, refusals."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from azlift.cli.main import main
from azlift.prep.linux import inspect
from azlift.prep.plan import Severity
from azlift.prep.ssh import SshRemote, SshTarget
from tests.prep.linux.conftest import FAMILIES, trust
from tests.support.rootfs import QUERIES_LOG, RECORDED_LOG, SUDO_LOG, read_log
from tests.support.sshd import Keys, SandboxSshd

FAMILY_NAME = {"ubuntu": "ubuntu", "debian": "debian", "rhel": "rhel", "rocky": "rocky",
               "suse": "suse", "azurelinux": "azurelinux", "generic": "generic"}
UNREGISTER = {"rhel": ["subscription-manager [unregister]"],
              "suse": ["SUSEConnect [--de-register]", "SUSEConnect [--cleanup]"]}
READ_ONLY_TRACES = {"var", "var/log", QUERIES_LOG}


def connect(server: SandboxSshd, keys: Keys, known_hosts: Path, user: str = "root") -> SshRemote:
    return SshRemote.connect(SshTarget(server.host, server.port, user, identity=keys.client_key,
                                       known_hosts=trust(server, known_hosts), timeout=30))


def cli(server: SandboxSshd, keys: Keys, known_hosts: Path, *extra: str,
        user: str = "root") -> int:
    return main(["prep", "linux", server.host, "--port", str(server.port), "--user", user,
                 "--identity", str(keys.client_key), "--known-hosts", str(known_hosts),
                 "--timeout", "30", *extra])


def whited_out(upper: Path, relative: str) -> bool:
    """Deleted in the overlay: a 0/0 character device in the upper dir."""
    try:
        info = os.lstat(upper / relative)
    except FileNotFoundError:
        return False
    return stat.S_ISCHR(info.st_mode) and info.st_rdev == 0


def changed_paths(upper: Path) -> set[str]:
    return {str(p.relative_to(upper)) for p in upper.rglob("*")}


@pytest.mark.parametrize("family", FAMILIES)
def test_ready_root_has_no_blocking_findings(family: str, root_tree, start_sshd, keys,
                                             known_hosts) -> None:
    server = start_sshd(root_tree(family))
    remote = connect(server, keys, known_hosts)
    try:
        inspection, _ = inspect(remote, timeout=30)
    finally:
        remote.close()
    assert inspection.detection.family.name == FAMILY_NAME[family]
    assert inspection.privilege.value == "root"
    not_ok = {f.code: f.severity for f in inspection.findings if f.severity is not Severity.OK}
    expected = {"rhsm_registered": Severity.INFO} if family == "rhel" else \
        {"scc_registered": Severity.INFO} if family == "suse" else {}
    assert not_ok == expected
    assert inspection.ready
    assert changed_paths(server.upper) <= READ_ONLY_TRACES  # checks wrote nothing


@pytest.mark.parametrize("family", FAMILIES)
def test_unready_root_reports_each_problem(family: str, root_tree, start_sshd, keys,
                                           known_hosts) -> None:
    server = start_sshd(root_tree(family, ready=False))
    remote = connect(server, keys, known_hosts)
    try:
        inspection, _ = inspect(remote, timeout=30)
    finally:
        remote.close()
    by_severity: dict[Severity, set[str]] = {}
    for finding in inspection.findings:
        by_severity.setdefault(finding.severity, set()).add(finding.code)
    assert by_severity[Severity.BLOCKER] == {"hyperv_drivers_missing", "fstab_device_names",
                                             "agent_missing", "sshd_disabled", "udf_disabled"}
    assert by_severity[Severity.WARNING] == {"serial_console_missing", "swap_on_os_disk",
                                             "persistent_net_rules", "cloud_init_datasource",
                                             "reboot_pending"}
    assert not inspection.ready


@pytest.mark.parametrize("family", FAMILIES)
def test_deprovision_runs_the_familys_commands_in_order(family: str, root_tree, start_sshd,
                                                        keys, known_hosts, capsys) -> None:
    server = start_sshd(root_tree(family))
    trust(server, known_hosts)
    code = cli(server, keys, known_hosts, "--yes", "--json", "--delete-user", "admin")
    captured = capsys.readouterr()
    assert code == 0, captured.err
    document = json.loads(captured.out)
    assert document["ok"] is True and document["family"] == FAMILY_NAME[family]
    assert document["result"]["host_gone"] is True
    assert server.wait_for_power_off()
    assert read_log(server.upper, RECORDED_LOG) == [
        *UNREGISTER.get(family, []),
        "cloud-init [clean] [--logs] [--seed]",
        "waagent [-force] [-deprovision+user]",
        "userdel [-f] [-r] [admin]",
        "shutdown [-h] [now]",
    ]
    upper = server.upper
    assert whited_out(upper, "etc/ssh/ssh_host_ed25519_key")
    assert whited_out(upper, "etc/ssh/ssh_host_ed25519_key.pub")
    assert whited_out(upper, "root/.bash_history")
    assert (upper / "etc/machine-id").stat().st_size == 0
    if family == "ubuntu":
        assert whited_out(upper, "etc/netplan/00-installer-config.yaml")
        assert whited_out(upper, "etc/cloud/cloud.cfg.d/99-installer.cfg")
    if family == "rhel":
        assert whited_out(upper, "etc/pki/consumer/cert.pem")  # unregistered for real


def test_connection_drop_at_power_off_reads_as_success(root_tree, start_sshd, keys,
                                                       known_hosts, capsys) -> None:
    server = start_sshd(root_tree("debian"))
    trust(server, known_hosts)
    code = cli(server, keys, known_hosts, "--yes", "--json")
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)["result"]
    assert result == {"steps_run": result["steps_run"], "final_launched": True,
                      "connection_dropped": True, "host_gone": True,
                      "seconds_until_gone": result["seconds_until_gone"]}
    assert server.wait_for_power_off() and server.process.poll() is not None
    assert "error" not in captured.err
    # root login, no --delete-user: nobody is deleted and waagent ran in the session
    assert read_log(server.upper, RECORDED_LOG) == [
        "cloud-init [clean] [--logs] [--seed]", "waagent [-force] [-deprovision]",
        "shutdown [-h] [now]"]


@pytest.mark.parametrize("mode", ["--dry-run", "--check-only"])
def test_dry_run_and_check_only_record_nothing(mode: str, root_tree, start_sshd, keys,
                                               known_hosts, capsys) -> None:
    server = start_sshd(root_tree("rhel"))
    trust(server, known_hosts)
    code = cli(server, keys, known_hosts, mode, "--delete-user", "admin")
    captured = capsys.readouterr()
    out = captured.out
    assert code == 0, captured.err
    assert "rhsm_registered" in out
    assert ("Plan for 127.0.0.1 (rhel)" in out) == (mode == "--dry-run")
    assert ("userdel -f -r admin" in out) == (mode == "--dry-run")
    assert read_log(server.upper, RECORDED_LOG) == []
    assert changed_paths(server.upper) <= READ_ONLY_TRACES
    assert not server.powered_off.is_set() and server.process.poll() is None


def test_check_only_exits_1_on_blockers_with_one_json_document(root_tree, start_sshd, keys,
                                                               known_hosts, capsys) -> None:
    server = start_sshd(root_tree("suse", ready=False))
    trust(server, known_hosts)
    code = cli(server, keys, known_hosts, "--check-only", "--json")
    captured = capsys.readouterr()
    assert code == 1, captured.err
    document = json.loads(captured.out)
    assert document["ok"] is False and document["ready"] is False
    assert document["os"]["id"] == "sles" and document["family"] == "suse"
    assert {"code", "severity", "message", "remediation"} <= set(document["findings"][0])


def test_blockers_refuse_deprovision_without_force(root_tree, start_sshd, keys, known_hosts,
                                                   capsys) -> None:
    server = start_sshd(root_tree("ubuntu", ready=False))
    trust(server, known_hosts)
    code = cli(server, keys, known_hosts, "--yes")
    err = capsys.readouterr().err
    assert code == 1, err
    assert "not ready for Azure" in err and "hyperv_drivers_missing" in err
    assert read_log(server.upper, RECORDED_LOG) == []


def test_no_terminal_and_no_yes_refuses_with_exit_5(root_tree, start_sshd, keys, known_hosts,
                                                    capsys) -> None:
    server = start_sshd(root_tree("ubuntu"))
    trust(server, known_hosts)
    code = cli(server, keys, known_hosts)
    err = capsys.readouterr().err
    assert code == 5, err
    assert "without confirmation" in err and "back the VM up" in err
    assert read_log(server.upper, RECORDED_LOG) == []


def test_unknown_host_key_refused_with_fingerprint_then_accept_new_records_it(
        root_tree, start_sshd, keys, known_hosts, capsys) -> None:
    server = start_sshd(root_tree("debian"))
    expected_fp = keys.host_public.split()[1]
    code = cli(server, keys, known_hosts, "--check-only")
    err = capsys.readouterr().err
    assert code == 4, err
    assert "unknown" in err and "--accept-new-host-key" in err and "SHA256:" in err
    assert not known_hosts.exists()

    code = cli(server, keys, known_hosts, "--check-only", "--accept-new-host-key")
    err = capsys.readouterr().err
    assert code == 0, err
    assert "recorded the new host key" in err
    line = known_hosts.read_text().split()
    assert line == [f"[127.0.0.1]:{server.port}", "ssh-ed25519", expected_fp]
    assert oct(known_hosts.stat().st_mode & 0o777) == "0o600"
    # the recorded key is now simply trusted
    assert cli(server, keys, known_hosts, "--check-only") == 0


def test_changed_host_key_is_refused_even_with_accept_new(root_tree, start_sshd, keys,
                                                          known_hosts, tmp_path, capsys) -> None:
    import subprocess
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")],
                   check=True)
    other = " ".join((tmp_path / "other.pub").read_text().split()[:2])
    server = start_sshd(root_tree("debian"))
    known_hosts.write_text(f"[127.0.0.1]:{server.port} {other}\n")
    code = cli(server, keys, known_hosts, "--check-only", "--accept-new-host-key")
    err = capsys.readouterr().err
    assert code == 4, err
    assert "CHANGED" in err and "ssh-keygen -R" in err
    assert known_hosts.read_text() == f"[127.0.0.1]:{server.port} {other}\n"


def test_known_hosts_read_as_openssh_reads_it(root_tree, start_sshd, keys, known_hosts,
                                             capsys) -> None:
    """@cert-authority lines and lines it cannot parse are skipped (paramiko's own loader
    stopped at them with an internal error); a key marked @revoked is refused, even with
    --accept-new-host-key."""
    server = start_sshd(root_tree("debian"))
    ca_line = f"@cert-authority *.example.com {keys.host_public.split()[0]} AAAAC3Nz\n"
    known_hosts.write_text(ca_line + "garbled line that is no key\n" + server.known_hosts_line)
    code = cli(server, keys, known_hosts, "--check-only")
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    revoked = f"@revoked * {' '.join(keys.host_public.split()[:2])}\n"
    for extra in ((), ("--accept-new-host-key",)):
        known_hosts.write_text(revoked + server.known_hosts_line)
        code = cli(server, keys, known_hosts, "--check-only", *extra)
        err = capsys.readouterr().err
        assert code == 4, err
        assert err.count("\n") == 1 and "is marked @revoked in" in err
    known_hosts.write_text(revoked)
    assert cli(server, keys, known_hosts, "--check-only", "--accept-new-host-key") == 4
    assert "is marked @revoked" in capsys.readouterr().err
    assert known_hosts.read_text() == revoked


def test_unreachable_host_exits_4_quickly(capsys, tmp_path) -> None:
    import time

    from tests.support.tools import free_port
    started = time.monotonic()
    code = main(["prep", "linux", "127.0.0.1", "--port", str(free_port()), "--user", "root",
                 "--known-hosts", str(tmp_path / "kh"), "--timeout", "3", "--check-only"])
    err = capsys.readouterr().err
    assert code == 4, err
    assert time.monotonic() - started < 3
    assert err.count("\n") == 1 and "cannot reach 127.0.0.1" in err


def test_no_shutdown_leaves_the_guest_running_after_the_detached_steps(
        root_tree, start_sshd, keys, known_hosts, capsys) -> None:
    import time
    server = start_sshd(root_tree("azurelinux"))
    trust(server, known_hosts)
    code = cli(server, keys, known_hosts, "--yes", "--json", "--no-shutdown",
               "--delete-user", "builder")
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)["result"]
    assert result["host_gone"] is False and result["connection_dropped"] is False
    expected = ["cloud-init [clean] [--logs] [--seed]", "waagent [-force] [-deprovision+user]",
                "userdel [-f] [-r] [builder]"]
    deadline = time.monotonic() + 30
    while read_log(server.upper, RECORDED_LOG) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert read_log(server.upper, RECORDED_LOG) == expected
    assert server.process.poll() is None and not server.powered_off.is_set()


def test_dry_run_on_an_unready_guest_shows_the_plan_and_exits_1(root_tree, start_sshd, keys,
                                                               known_hosts, capsys) -> None:
    server = start_sshd(root_tree("ubuntu", ready=False))
    trust(server, known_hosts)
    code = cli(server, keys, known_hosts, "--dry-run")
    captured = capsys.readouterr()
    assert code == 1, captured.err
    assert "Plan for 127.0.0.1 (ubuntu)" in captured.out
    assert "a real run would stop" in captured.err
    assert read_log(server.upper, RECORDED_LOG) == []
    assert changed_paths(server.upper) <= READ_ONLY_TRACES

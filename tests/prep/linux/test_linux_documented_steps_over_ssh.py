"""Over a real sshd: the documented cleanup steps and the waagent.conf check act on real files."""
from __future__ import annotations

import json

from tests.prep.linux.conftest import trust
from tests.prep.linux.test_linux_over_ssh import cli, whited_out
from tests.support.rootfs import RECORDED_LOG, read_log

WANTS = "etc/systemd/system/multi-user.target.wants"
NET_RULES = {
    "etc/udev/rules.d/70-persistent-net.rules":
        'SUBSYSTEM=="net", ATTR{address}=="52:54:00:ab:cd:ef", NAME="eth0"\n',
    "etc/udev/rules.d/85-persistent-net-cloud-init.rules":
        'SUBSYSTEM=="net", ATTR{address}=="52:54:00:ab:cd:ef", NAME="eth0"\n',
    "var/log/waagent.log": "2026-11-26T10:00:00Z INFO Daemon Azure Linux Agent\n",
}


def test_sles_deprovision_removes_net_rules_and_the_agent_log(root_tree, start_sshd, keys,
                                                              known_hosts, capsys) -> None:
    server = start_sshd(root_tree("suse", variant="-net-rules", extra_files=NET_RULES))
    trust(server, known_hosts)
    code = cli(server, keys, known_hosts, "--yes", "--json", "--delete-user", "admin")
    captured = capsys.readouterr()
    assert code == 0, captured.err
    findings = {f["code"] for f in json.loads(captured.out)["findings"]}
    assert "persistent_net_rules" in findings  # reported, and then removed by the plan
    assert server.wait_for_power_off()
    for relative in NET_RULES:
        assert whited_out(server.upper, relative), relative
    assert read_log(server.upper, RECORDED_LOG)[-2:] == ["userdel [-f] [-r] [admin]",
                                                         "shutdown [-h] [now]"]


def test_waagent_conf_with_provisioning_disabled_blocks(root_tree, start_sshd, keys,
                                                        known_hosts, capsys) -> None:
    tree = root_tree("debian", variant="-provisioning-disabled", extra_files={
        "etc/waagent.conf": "# migrated as is\nProvisioning.Agent=disabled\n",
        f"{WANTS}/cloud-init-local.service": "[Unit]\n"})
    server = start_sshd(tree)
    trust(server, known_hosts)
    assert cli(server, keys, known_hosts, "--check-only", "--json") == 1
    findings = {f["code"]: f for f in json.loads(capsys.readouterr().out)["findings"]}
    assert findings["waagent_provisioning_disabled"]["severity"] == "blocker"
    assert findings["provisioning_agent"]["severity"] == "ok"
    assert read_log(server.upper, RECORDED_LOG) == []


def test_cloud_init_alone_provisions_so_a_missing_agent_is_a_warning(
        root_tree, start_sshd, keys, known_hosts, capsys) -> None:
    tree = root_tree("debian", variant="-cloud-init-only", extra_files={
        f"{WANTS}/cloud-init-local.service": "[Unit]\n"})
    (tree / "usr/bin/waagent").unlink(missing_ok=True)
    server = start_sshd(tree)
    trust(server, known_hosts)
    assert cli(server, keys, known_hosts, "--check-only", "--json") == 0
    findings = {f["code"]: f for f in json.loads(capsys.readouterr().out)["findings"]}
    assert findings["agent_missing"]["severity"] == "warning"
    assert "waagent_config" not in findings

"""Deprovision plans per family, built from facts before anything runs."""
from __future__ import annotations

import dataclasses
import shlex
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from azlift.prep.errors import PrepUsageError
from azlift.prep.linux import Facts, build_plan
from azlift.prep.linux.families import FAMILIES_BY_ID, Family
from azlift.prep.shell import Privilege, as_root, join, quote

HOSTILE = ["o'brien; touch /pwned", "$(reboot)", "`id`", "a b\tc", "x -rf", "x\ny", "*", "~root"]


def commands(plan) -> list[str]:
    return [s.command for s in plan.steps], [s.command for s in plan.final_steps]


def facts(**changes) -> Facts:
    return dataclasses.replace(Facts(waagent_installed=True, cloud_init_installed=True), **changes)


def test_ubuntu_plan_in_documented_order_with_detached_user_deletion() -> None:
    plan = build_plan("vm1", FAMILIES_BY_ID["ubuntu"](), facts(), login_user="admin",
                      login_home="/home/admin")
    steps, final = commands(plan)
    assert steps[0].startswith("rm -f /etc/cloud/cloud.cfg.d/50-curtin-networking.cfg")
    assert "/etc/netplan/*.yaml" in steps[0]  # the glob stays unquoted for the shell
    assert steps[1:] == ["rm -f /var/log/waagent.log", "cloud-init clean --logs --seed",
                         "rm -f /etc/ssh/ssh_host_*",
                         "truncate -s 0 /etc/machine-id", "rm -f /var/lib/dbus/machine-id",
                         "rm -f /root/.bash_history"]
    assert final == ["waagent -force -deprovision+user", "userdel -f -r admin", "sync",
                     "shutdown -h now"]
    assert plan.deleted_user == "admin" and plan.powers_off
    descriptions = [s.description for s in plan.steps + plan.final_steps]
    assert len(set(descriptions)) == len(descriptions)  # each step says what it does
    assert all(s.source for s in plan.steps + plan.final_steps)
    assert plan.as_plan().destructive


def test_root_login_keeps_users_and_runs_waagent_in_the_session() -> None:
    plan = build_plan("vm1", FAMILIES_BY_ID["debian"](), facts(cloud_init_installed=False),
                      login_user="root", login_home="/root")
    steps, final = commands(plan)
    assert "cloud-init clean --logs --seed" not in steps
    assert steps[-1] == "waagent -force -deprovision"
    assert final == ["sync", "shutdown -h now"]
    assert plan.deleted_user is None


def test_delete_user_overrides_and_login_users_history_is_cleared() -> None:
    plan = build_plan("vm1", FAMILIES_BY_ID["ubuntu"](), facts(), login_user="ops",
                      login_home="/home/ops", delete_user="builder", shutdown=False)
    steps, final = commands(plan)
    assert "rm -f /root/.bash_history /home/ops/.bash_history" in steps
    assert final == ["waagent -force -deprovision+user", "userdel -f -r builder", "sync"]
    assert not plan.powers_off


@pytest.mark.parametrize(("family", "registered", "first"), [
    ("rhel", True, ["subscription-manager unregister"]),
    ("almalinux", False, []),
    ("sles", True, ["SUSEConnect --de-register", "SUSEConnect --cleanup"]),
    ("opensuse-leap", False, []),
])
def test_registration_steps_only_when_registered(family: str, registered: bool,
                                                 first: list[str]) -> None:
    plan = build_plan("vm", FAMILIES_BY_ID[family](), facts(registered=registered),
                      login_user="root")
    steps, _ = commands(plan)
    assert steps[:len(first)] == first
    assert not any("unregister" in s or "de-register" in s for s in steps[len(first):])


@pytest.mark.parametrize("family", ["rocky", "ubuntu", "debian", "sles", "azurelinux"])
def test_a_persistent_net_rule_is_removed_whatever_the_family(family: str) -> None:
    rule = "rm -f /etc/udev/rules.d/70-persistent-net.rules"
    steps, _ = commands(build_plan("vm", FAMILIES_BY_ID[family](),
                                   facts(persistent_net_rules=True), login_user="root"))
    assert steps.count(rule) == 1
    steps, _ = commands(build_plan("vm", FAMILIES_BY_ID[family](), facts(), login_user="root"))
    assert rule not in steps


def test_sles_removes_cloud_init_net_rule_and_the_agent_log_goes_before_cloud_init() -> None:
    steps, _ = commands(build_plan("vm", FAMILIES_BY_ID["sles"](), facts(), login_user="root"))
    assert steps[0] == "rm -f /etc/udev/rules.d/85-persistent-net-cloud-init.rules"
    assert steps.index("rm -f /var/log/waagent.log") + 1 == steps.index(
        "cloud-init clean --logs --seed")
    steps, _ = commands(build_plan("vm", FAMILIES_BY_ID["sles"](),
                                   facts(waagent_installed=False), login_user="root"))
    assert "rm -f /var/log/waagent.log" not in steps


@pytest.mark.parametrize(("name", "why"), [
    ("root", "root, whose account"), ("-rf", "read as an option"), ("--help", "as an option"),
    ("", "an empty name"), (" ", "an empty name")])
def test_user_names_userdel_must_not_get_are_refused(name: str, why: str) -> None:
    with pytest.raises(PrepUsageError, match=why) as raised:
        build_plan("vm", FAMILIES_BY_ID["ubuntu"](), facts(), login_user="ops",
                   delete_user=name)
    assert raised.value.exit_code == 2


def test_ubuntu_keeps_netplan_when_no_cloud_init_would_rewrite_it() -> None:
    plan = build_plan("vm", FAMILIES_BY_ID["ubuntu"](), facts(cloud_init_installed=False),
                      login_user="root")
    steps, _ = commands(plan)
    assert steps[0].startswith("rm -f /etc/cloud/cloud.cfg.d/50-curtin-networking.cfg")
    assert not any("netplan" in step for step in steps)
    assert any("/etc/netplan/*.yaml stay" in warning for warning in plan.warnings)


def test_generic_still_deprovisions() -> None:
    steps, final = commands(build_plan("vm", Family(), facts(), login_user="u"))
    assert "cloud-init clean --logs --seed" in steps and final[0] == "waagent -force -deprovision+user"


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_user_names_and_homes_stay_single_words(name: str) -> None:
    plan = build_plan("vm", FAMILIES_BY_ID["ubuntu"](), facts(), login_user="ops",
                      login_home=f"/home/{name}", delete_user=name)
    _, final = commands(plan)
    assert shlex.split(final[1]) == ["userdel", "-f", "-r", name]
    history = [s for s in commands(plan)[0] if s.startswith("rm -f /root/.bash_history")][0]
    assert shlex.split(history) == ["rm", "-f", "/root/.bash_history", f"/home/{name}/.bash_history"]
    detached = plan.final_command(0.5)
    outer = shlex.split(detached)
    assert outer[:3] == ["setsid", "sh", "-c"]
    assert outer[3].split("; ")[:2] == ["trap '' HUP", "sleep 0.5"]
    assert outer[4:] == [">/dev/null", "2>&1", "</dev/null", "&"]


def _sh_echo(words: list[str]) -> list[str]:
    """What a real /bin/sh sees as argv for ``printf`` given our quoted words."""
    out = subprocess.run(["sh", "-c", "printf '%s\\0' " + join(words)], capture_output=True,
                         check=True).stdout
    return out.decode("utf-8", "surrogateescape").split("\0")[:-1]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                               blacklist_characters="\0"), max_size=12),
                min_size=1, max_size=4))
def test_quoted_words_reach_a_real_shell_unchanged(words: list[str]) -> None:
    assert _sh_echo(words) == words


@pytest.mark.parametrize("privilege", list(Privilege))
def test_as_root_keeps_the_command_one_word_and_the_password_out(privilege: Privilege) -> None:
    command = "rm -f " + quote(HOSTILE[0])
    wrapped = as_root(command, privilege)
    if privilege is Privilege.ROOT:
        assert wrapped == command
    else:
        words = shlex.split(wrapped)
        assert words[-1] == command and words[-2] == "-c"
        assert ("-S" in words) == (privilege is Privilege.SUDO_PASSWORD)
        assert ("-n" in words) == (privilege is Privilege.SUDO)


def test_without_waagent_the_agent_step_is_left_out_with_a_warning() -> None:
    plan = build_plan("vm", FAMILIES_BY_ID["debian"](), facts(waagent_installed=False),
                      login_user="admin")
    everything = [s.command for s in plan.steps + plan.final_steps]
    assert not any(c.startswith("waagent") for c in everything)
    assert "userdel -f -r admin" in everything
    assert any("waagent is not installed" in w for w in plan.warnings)

"""Readiness checks judged from facts: each check's pass and fail, from a table."""
from __future__ import annotations

import dataclasses

import pytest

from azlift.prep.linux import Facts, evaluate
from azlift.prep.linux.facts import choose_initramfs
from azlift.prep.linux.families import FAMILIES_BY_ID, Family
from azlift.prep.plan import Severity, blocking

UBUNTU = FAMILIES_BY_ID["ubuntu"]()
RHEL = FAMILIES_BY_ID["rhel"]()
SUSE = FAMILIES_BY_ID["sles"]()

READY = Facts(
    cmdline="BOOT_IMAGE=/vmlinuz root=UUID=1 ro console=tty1 console=ttyS0,115200n8 "
            "earlyprintk=ttyS0,115200 rootdelay=300 net.ifnames=0",
    fstab="# comment\nUUID=1 / ext4 defaults 0 1\nLABEL=boot /boot ext4 defaults 0 2\n"
          "/dev/mapper/vg-data /data xfs defaults 0 0\n",
    initramfs="/boot/initrd.img-5.15.0",
    initramfs_listing="usr/lib/modules/5.15.0/kernel/drivers/hv/hv_vmbus.ko.zst\n"
                      "usr/lib/modules/5.15.0/kernel/drivers/scsi/hv_storvsc.ko.zst\n"
                      "usr/lib/modules/5.15.0/kernel/drivers/net/hyperv/hv_netvsc.ko.zst\n",
    waagent_installed=True, waagent_enabled=True, cloud_init_installed=True,
    cloud_cfg="datasource_list: [ Azure ]\n", sshd_enabled=True, udf_available=True,
)


def codes(facts: Facts, family: Family = UBUNTU, severity: Severity | None = None) -> set[str]:
    return {f.code for f in evaluate(facts, family) if severity is None or f.severity is severity}


def test_ready_guest_has_no_blocker_and_every_check_reports() -> None:
    findings = evaluate(READY, UBUNTU)
    assert blocking(findings) == []
    assert {f.severity for f in findings} == {Severity.OK}
    assert len(findings) == 10  # one OK line per check (no registration for Ubuntu)


@pytest.mark.parametrize(("change", "code", "severity"), [
    ({"initramfs_listing": "kernel/drivers/hv/hv_vmbus.ko\n"}, "hyperv_drivers_missing",
     Severity.BLOCKER),
    ({"initramfs": None, "initramfs_listing": ""}, "hyperv_drivers_missing", Severity.BLOCKER),
    ({"cmdline": "root=UUID=1 ro quiet console=tty0"}, "serial_console_missing", Severity.WARNING),
    ({"cmdline": "root=UUID=1 console=ttyS0"}, "kernel_parameters_missing", Severity.INFO),
    ({"fstab": "UUID=1 / ext4 defaults 0 1\n/dev/sdb1 none swap sw 0 0\n"}, "swap_on_os_disk",
     Severity.WARNING),
    ({"fstab": "UUID=1 / ext4 defaults 0 1\n/swapfile none swap sw 0 0\n"}, "swap_on_os_disk",
     Severity.WARNING),
    ({"fstab": "/dev/vda1 / ext4 defaults 0 1\n"}, "fstab_device_names", Severity.BLOCKER),
    ({"fstab": "/dev/sda2 / ext4 defaults 0 1\n"}, "fstab_device_names", Severity.BLOCKER),
    ({"fstab": "UUID=1 / ext4 defaults 0 1\n/dev/nvme0n1p2 /boot xfs defaults 0 0\n"},
     "fstab_device_names", Severity.BLOCKER),
    ({"waagent_installed": False}, "agent_missing", Severity.BLOCKER),
    ({"waagent_enabled": False}, "agent_disabled", Severity.BLOCKER),
    # cloud-init set up for Azure provisions on its own: no agent is then a warning
    ({"waagent_installed": False, "cloud_init_enabled": True}, "agent_missing",
     Severity.WARNING),
    ({"waagent_enabled": False, "cloud_init_enabled": True}, "agent_disabled",
     Severity.WARNING),
    ({"waagent_conf": "Provisioning.Agent=disabled\n", "cloud_init_enabled": True},
     "waagent_provisioning_disabled", Severity.BLOCKER),
    ({"waagent_conf": "Provisioning.Agent=cloud-init\n"}, "waagent_provisioning_disabled",
     Severity.BLOCKER),
    ({"waagent_conf": "# old agent\nProvisioning.Enabled=n\n"},
     "waagent_provisioning_disabled", Severity.BLOCKER),
    ({"waagent_conf": "Provisioning.Agent=waagent # both\n", "cloud_init_enabled": True},
     "waagent_provisions_too", Severity.WARNING),
    ({"waagent_conf": "ResourceDisk.Format=n\nResourceDisk.EnableSwap=y\n",
      "cloud_init_enabled": True}, "waagent_resource_disk", Severity.WARNING),
    ({"cloud_cfg": "datasource_list: [ Azure ]\ndatasource_list: [ NoCloud ]\n"},
     "cloud_init_datasource", Severity.WARNING),
    ({"cloud_cfg": "datasource_list:\n  - NoCloud\n  - None\nsystem_info: {}\n"},
     "cloud_init_datasource", Severity.WARNING),
    ({"cloud_cfg": "datasource_list: [ NoCloud ]  # Azure later, maybe\n"},
     "cloud_init_datasource", Severity.WARNING),
    ({"persistent_net_rules": True}, "persistent_net_rules", Severity.WARNING),
    ({"mac_bound_files": ("/etc/sysconfig/network-scripts/ifcfg-eth0",)}, "mac_bound_network",
     Severity.WARNING),
    ({"sshd_enabled": False}, "sshd_disabled", Severity.BLOCKER),
    ({"udf_available": False}, "udf_missing", Severity.BLOCKER),
    ({"udf_disabled": True}, "udf_disabled", Severity.BLOCKER),
    ({"reboot_pending": True}, "reboot_pending", Severity.WARNING),
])
def test_each_problem_yields_its_finding(change: dict, code: str, severity: Severity) -> None:
    facts = dataclasses.replace(READY, **change)
    findings = {f.code: f for f in evaluate(facts, UBUNTU)}
    assert code in findings
    assert findings[code].severity is severity
    assert findings[code].remediation  # every problem says what to do


def test_built_in_drivers_count_as_present() -> None:
    builtin = "kernel/drivers/hv/hv_vmbus.ko\nkernel/drivers/scsi/hv_storvsc.ko\n" \
              "kernel/drivers/net/hyperv/hv_netvsc.ko\n"
    facts = dataclasses.replace(READY, initramfs_listing="", builtin_modules=builtin)
    assert "hyperv_drivers" in codes(facts, severity=Severity.OK)


def test_remediation_names_the_familys_initramfs_tool() -> None:
    facts = dataclasses.replace(READY, initramfs_listing="")
    by_code = {f.code: f for f in evaluate(facts, RHEL)}
    assert "dracut" in by_code["hyperv_drivers_missing"].remediation
    by_code = {f.code: f for f in evaluate(facts, UBUNTU)}
    assert "update-initramfs" in by_code["hyperv_drivers_missing"].remediation


def test_registration_is_reported_for_rhel_and_suse_only() -> None:
    registered = dataclasses.replace(READY, registered=True)
    assert "rhsm_registered" in codes(registered, RHEL, Severity.INFO)
    assert "scc_registered" in codes(registered, SUSE, Severity.INFO)
    assert not any("registered" in c for c in codes(registered, UBUNTU))
    assert "rhsm_unregistered" in codes(READY, RHEL, Severity.OK)


def test_cloud_init_without_datasource_list_is_fine() -> None:
    facts = dataclasses.replace(READY, cloud_cfg="users: [default]\n")
    assert "cloud_init_datasource" not in codes(facts)


@pytest.mark.parametrize(("paths", "kernel", "chosen"), [
    (["/boot/initrd.img-5.15.0-88-generic", "/boot/initrd.img-5.15.0-91-generic"],
     "5.15.0-88-generic", "/boot/initrd.img-5.15.0-88-generic"),
    (["/boot/initramfs-5.14.0-9.el9.x86_64.img", "/boot/initramfs-5.14.0-10.el9.x86_64.img"],
     "6.1.0-host", "/boot/initramfs-5.14.0-10.el9.x86_64.img"),
    (["/boot/initramfs-0-rescue-abc.img", "/boot/initramfs-5.14.0-10.el9.x86_64kdump.img",
      "/boot/initramfs-5.14.0-10.el9.x86_64.img"], "x", "/boot/initramfs-5.14.0-10.el9.x86_64.img"),
    ([], "x", None),
])
def test_choose_initramfs(paths: list[str], kernel: str, chosen: str | None) -> None:
    assert choose_initramfs(paths, kernel) == chosen


@pytest.mark.parametrize(("change", "ok_code"), [
    # the documented cloud-init set-up: waagent.conf as the RHEL and SLES pages leave it
    ({"cloud_init_enabled": True, "waagent_conf": "Provisioning.Agent=auto\n"
      "Provisioning.Enabled=n\nResourceDisk.Format=n\nResourceDisk.EnableSwap=n\n"},
     "waagent_config"),
    # waagent provisions alone: its own resource disk handling is fine
    ({"cloud_init_installed": False, "waagent_conf": "ResourceDisk.EnableSwap=y\n"},
     "waagent_config"),
    # cloud-init alone (no waagent): no waagent.conf finding at all
    ({"cloud_init_enabled": True, "waagent_installed": False, "waagent_enabled": False}, None),
])
def test_documented_provisioning_set_ups_are_not_blocked(change: dict, ok_code) -> None:
    findings = evaluate(dataclasses.replace(READY, **change), UBUNTU)
    assert blocking(findings) == []
    found = {f.code for f in findings}
    assert not found & {"waagent_provisioning_disabled", "waagent_provisions_too",
                        "waagent_resource_disk"}
    assert (ok_code in found) if ok_code else "waagent_config" not in found


@pytest.mark.parametrize("cloud_cfg", [
    "datasource_list: [ Azure ]\n",
    "datasource_list:\n  - Azure\n",
    "datasource_list: [ NoCloud ]\n# later file\ndatasource_list:\n - NoCloud\n - Azure\n",
    "system_info: {}\n",  # no list: cloud-init's default list has Azure
])
def test_azure_in_the_last_datasource_list_in_either_yaml_style(cloud_cfg: str) -> None:
    assert "cloud_init_datasource" not in codes(dataclasses.replace(READY, cloud_cfg=cloud_cfg))

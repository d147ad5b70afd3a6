"""Readiness checks: pure functions from gathered facts to findings.

Sources: Azure's "Information for non-endorsed distributions" page (Hyper-V drivers in the
initramfs, serial console, no swap on the OS disk, the Linux agent or cloud-init, the udf
module for the provisioning media) and each family's preparation page (extra kernel
parameters, registration).
"""
from __future__ import annotations

import re
from typing import Callable

from ..plan import Finding, Severity
from .facts import HYPERV_MODULES, PERSISTENT_NET_RULE, Facts
from .families import Family

Check = Callable[[Facts, Family], list[Finding]]
# Kernel device names that change with the controller: the RHEL and SLES pages name
# /dev/sd* and /dev/nvme* (Azure may attach the OS disk by SCSI or by NVMe).
_DEVICE_NAME = re.compile(r"^/dev/((sd|hd|vd|xvd)[a-z]+\d*|nvme\d+n\d+(p\d+)?)$")


def _ok(code: str, message: str) -> Finding:
    return Finding(code, Severity.OK, message)


def hyperv_drivers(facts: Facts, family: Family) -> list[Finding]:
    """hv_vmbus, hv_storvsc and hv_netvsc must be in the initramfs or built in."""
    found = {m for m in HYPERV_MODULES
             if re.search(rf"(^|/){m}\.ko", facts.initramfs_listing, re.M)
             or re.search(rf"(^|/){m}\.ko", facts.builtin_modules, re.M)}
    missing = [m for m in HYPERV_MODULES if m not in found]
    if not missing:
        return [_ok("hyperv_drivers", "Hyper-V drivers are in the initramfs or built in")]
    where = facts.initramfs or "no initramfs found in /boot"
    rebuild = ("dracut -f --add-drivers 'hv_vmbus hv_netvsc hv_storvsc'"
               if "lsinitrd" in family.initramfs_listers else
               "add them to /etc/initramfs-tools/modules and run update-initramfs -u")
    return [Finding("hyperv_drivers_missing", Severity.BLOCKER,
                    f"Hyper-V drivers missing from the initramfs ({where}): {', '.join(missing)}",
                    f"Include them so the disk and network are found at boot: {rebuild}.")]


def serial_console(facts: Facts, family: Family) -> list[Finding]:
    """console=ttyS0 for Azure's serial console, plus the family's documented extras."""
    words = facts.cmdline.split()
    findings = []
    if not any(w == "console=ttyS0" or w.startswith("console=ttyS0,") for w in words):
        findings.append(Finding(
            "serial_console_missing", Severity.WARNING,
            "the kernel command line lacks console=ttyS0",
            "Add console=ttyS0 to GRUB_CMDLINE_LINUX in /etc/default/grub and regenerate the "
            "GRUB configuration, or boot logs and the serial console stay empty in Azure."))
    missing = [extra for extra in family.cmdline_extras
               if not any(w == extra or w.startswith(extra + ",") for w in words)]
    if missing:
        findings.append(Finding(
            "kernel_parameters_missing", Severity.INFO,
            f"kernel parameters recommended for {family.title} are absent: {' '.join(missing)}",
            f"Add them to GRUB_CMDLINE_LINUX as {family.doc} describes."))
    return findings or [_ok("serial_console", "kernel command line has console=ttyS0")]


def _fstab_entries(fstab: str) -> list[list[str]]:
    return [line.split() for line in fstab.splitlines()
            if line.strip() and not line.lstrip().startswith("#") and len(line.split()) >= 3]


def fstab_swap(facts: Facts, family: Family) -> list[Finding]:
    """No swap partition or swap file on the OS disk: Azure puts swap on the resource disk."""
    swaps = [e[0] for e in _fstab_entries(facts.fstab) if e[2] == "swap"]
    if not swaps:
        return [_ok("no_swap_on_os_disk", "no swap configured in /etc/fstab")]
    return [Finding("swap_on_os_disk", Severity.WARNING,
                    f"/etc/fstab activates swap on the OS disk: {', '.join(swaps)}",
                    "Remove the swap entry (and the swap file or partition); let waagent "
                    "(ResourceDisk.EnableSwap) or cloud-init put swap on the resource disk.")]


def fstab_device_names(facts: Facts, family: Family) -> list[Finding]:
    """Mount by UUID/LABEL: /dev/sdX, /dev/vdX and /dev/nvmeXnY names change in Azure."""
    bad = [e[0] for e in _fstab_entries(facts.fstab) if _DEVICE_NAME.match(e[0])]
    if not bad:
        return [_ok("fstab_stable_names", "/etc/fstab mounts by UUID, LABEL or stable paths")]
    return [Finding("fstab_device_names", Severity.BLOCKER,
                    f"/etc/fstab mounts by kernel device name: {', '.join(bad)}",
                    "Replace each with UUID=... or LABEL=... (see blkid); device names differ "
                    "in Azure and the VM would fail to boot.")]


def _cloud_init_provisions(facts: Facts) -> bool:
    """cloud-init installed, enabled at boot and reading the Azure datasource."""
    return (facts.cloud_init_installed and facts.cloud_init_enabled
            and _cloud_init_uses_azure(facts.cloud_cfg))


def provisioning_agent(facts: Facts, family: Family) -> list[Finding]:
    """waagent, or cloud-init with the Azure datasource, installed and enabled.

    The generic page: either provisions the VM; cloud-init is preferred, with waagent
    installed as well for VM extensions. So a missing or disabled waagent blocks only when
    cloud-init cannot provision either.
    """
    findings = []
    by_cloud_init = _cloud_init_provisions(facts)
    package = family.agent_service if family.agent_service != "waagent" else "WALinuxAgent"
    if not facts.waagent_installed:
        findings.append(Finding(
            "agent_missing", Severity.WARNING if by_cloud_init else Severity.BLOCKER,
            "the Azure Linux agent (waagent) is not installed" + (
                ": cloud-init will provision the VM, but VM extensions will not work"
                if by_cloud_init else ", and cloud-init is not set up to provision the VM "
                "(installed, enabled, Azure datasource)"),
            f"Install the {package} package from the distribution's repositories."))
    elif not facts.waagent_enabled:
        findings.append(Finding(
            "agent_disabled", Severity.WARNING if by_cloud_init else Severity.BLOCKER,
            f"the Azure Linux agent service ({family.agent_service}) is not enabled",
            f"systemctl enable {family.agent_service}"))
    if facts.cloud_init_installed and not _cloud_init_uses_azure(facts.cloud_cfg):
        findings.append(Finding(
            "cloud_init_datasource", Severity.WARNING,
            "cloud-init is installed but its datasource_list leaves out Azure",
            "Set datasource_list: [ Azure ] in /etc/cloud/cloud.cfg.d/91-azure_datasource.cfg."))
    return findings or [_ok("provisioning_agent", "waagent is installed and enabled")]


def _waagent_settings(conf: str) -> dict[str, str]:
    settings = {}
    for line in conf.splitlines():
        key, sep, value = line.split("#", 1)[0].partition("=")
        if sep:
            settings[key.strip().lower()] = value.strip().lower()
    return settings


def waagent_config(facts: Facts, family: Family) -> list[Finding]:
    """/etc/waagent.conf must leave someone to provision the VM, and not both.

    Sources: the generic and RHEL/SLES pages (``Provisioning.Agent=auto`` with cloud-init,
    ``disabled`` only for migrating one VM, ``ResourceDisk.Format=n`` and
    ``ResourceDisk.EnableSwap=n`` when cloud-init handles the resource disk) and
    WALinuxAgent's conf (``Provisioning.Agent``: auto, waagent, cloud-init, disabled; agents
    before 2.2.45 read ``Provisioning.Enabled``).
    """
    if not facts.waagent_installed:
        return []
    settings = _waagent_settings(facts.waagent_conf)
    by_cloud_init = _cloud_init_provisions(facts)
    agent = settings.get("provisioning.agent")
    findings = []
    if agent == "disabled":
        findings.append(Finding(
            "waagent_provisioning_disabled", Severity.BLOCKER,
            "/etc/waagent.conf has Provisioning.Agent=disabled: VMs made from this image "
            "would never be provisioned (that setting is for migrating one VM as it is)",
            "Set Provisioning.Agent=auto in /etc/waagent.conf."))
    elif not by_cloud_init and (agent == "cloud-init" or (
            agent is None and settings.get("provisioning.enabled") == "n")):
        findings.append(Finding(
            "waagent_provisioning_disabled", Severity.BLOCKER,
            "/etc/waagent.conf leaves provisioning to cloud-init, but cloud-init is not set up "
            "to provision (installed, enabled, Azure datasource)",
            "Set Provisioning.Agent=auto in /etc/waagent.conf, or set up cloud-init for Azure."))
    if by_cloud_init and agent == "waagent":
        findings.append(Finding(
            "waagent_provisions_too", Severity.WARNING,
            "/etc/waagent.conf has Provisioning.Agent=waagent although cloud-init provisions",
            "Set Provisioning.Agent=auto so only cloud-init provisions."))
    if by_cloud_init and "y" in (settings.get("resourcedisk.format"),
                                 settings.get("resourcedisk.enableswap")):
        findings.append(Finding(
            "waagent_resource_disk", Severity.WARNING,
            "/etc/waagent.conf formats the resource disk or makes swap on it, which "
            "cloud-init handles",
            "Set ResourceDisk.Format=n and ResourceDisk.EnableSwap=n in /etc/waagent.conf."))
    return findings or [_ok("waagent_config", "/etc/waagent.conf leaves provisioning to "
                            + ("cloud-init" if by_cloud_init else "the agent"))]


_DATASOURCE_LIST = re.compile(
    r"^[ \t]*datasource_list[ \t]*:(?P<inline>[^\n]*)(?P<block>(?:\n[ \t]*-[^\n]*)*)", re.M)


def _cloud_init_uses_azure(cloud_cfg: str) -> bool:
    """Whether the last datasource_list (inline ``[ ... ]`` or a ``- item`` block) has Azure;
    with none, cloud-init's default list (which has Azure) applies."""
    lists = list(_DATASOURCE_LIST.finditer(cloud_cfg))
    if not lists:
        return True
    value = lists[-1].group("inline").split("#", 1)[0] + lists[-1].group("block")
    return "azure" in value.lower()


def network_identity(facts: Facts, family: Family) -> list[Finding]:
    """No udev persistent-net rules or configuration bound to the old MAC address."""
    findings = []
    if facts.persistent_net_rules:
        findings.append(Finding(
            "persistent_net_rules", Severity.WARNING,
            f"{PERSISTENT_NET_RULE} pins interface names to old MACs",
            "Delete it; Azure's NIC has a new MAC and would come up as eth1."))
    if facts.mac_bound_files:
        findings.append(Finding(
            "mac_bound_network", Severity.WARNING,
            f"network configuration names a MAC address: {', '.join(facts.mac_bound_files)}",
            "Remove HWADDR/MACADDR/macaddress/mac-address lines so DHCP on eth0 works in Azure."))
    return findings or [_ok("network_identity", "no MAC-bound network configuration")]


def ssh_server(facts: Facts, family: Family) -> list[Finding]:
    """sshd must start at boot, or nobody can log in to the new VM."""
    if facts.sshd_enabled:
        return [_ok("sshd_enabled", f"{family.ssh_service} is enabled")]
    return [Finding("sshd_disabled", Severity.BLOCKER,
                    f"the SSH service ({family.ssh_service}) is not enabled at boot",
                    f"systemctl enable {family.ssh_service}")]


def udf_module(facts: Facts, family: Family) -> list[Finding]:
    """Provisioning data arrives on a UDF-formatted virtual DVD."""
    if facts.udf_disabled:
        return [Finding("udf_disabled", Severity.BLOCKER,
                        "the udf module is disabled in /etc/modprobe.d (hardening baseline?)",
                        "Remove the 'install udf /bin/true' or 'blacklist udf' line; Azure "
                        "delivers provisioning data on a UDF disc.")]
    if not facts.udf_available:
        return [Finding("udf_missing", Severity.BLOCKER,
                        "no udf kernel module is installed or built in",
                        "Install the kernel modules package that ships fs/udf.")]
    return [_ok("udf_available", "the udf module is available")]


def pending_reboot(facts: Facts, family: Family) -> list[Finding]:
    """Updates waiting for a reboot would be captured half-applied."""
    if not facts.reboot_pending:
        return [_ok("no_pending_reboot", "no reboot is pending")]
    return [Finding("reboot_pending", Severity.WARNING, "the guest is waiting for a reboot",
                    "Reboot it, check it comes back, then prepare it.")]


def registration(facts: Facts, family: Family) -> list[Finding]:
    """A vendor registration must not travel into every VM made from the image."""
    reg = family.registration
    if reg is None:
        return []
    if not facts.registered:
        return [_ok(reg.finding_code.replace("registered", "unregistered"),
                    f"not registered with {reg.tool}")]
    return [Finding(reg.finding_code, Severity.INFO,
                    f"the guest is registered with {reg.tool}",
                    f"The deprovision plan unregisters it ({'; '.join(reg.unregister)}).")]


CHECKS: tuple[Check, ...] = (hyperv_drivers, serial_console, fstab_swap, fstab_device_names,
                             provisioning_agent, waagent_config, network_identity, ssh_server,
                             udf_module, pending_reboot, registration)


def evaluate(facts: Facts, family: Family) -> list[Finding]:
    """Every check's findings, in a stable order."""
    return [finding for check in CHECKS for finding in check(facts, family)]

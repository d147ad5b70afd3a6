"""Distribution families as data: paths, commands and service names per family.

Like cloud-init's ``distros/``: the base class holds the generic values, each family
overrides only what differs, and a leaf (a RHEL rebuild) is little more than a name.
Where a value comes from is noted next to it.
"""
from __future__ import annotations

from dataclasses import dataclass

from .os_release import OsRelease

AZURE_DOCS = "https://learn.microsoft.com/azure/virtual-machines/linux/"


@dataclass(frozen=True)
class Registration:
    """A vendor subscription the image must leave before it is generalized."""

    tool: str
    finding_code: str
    registered_probe: str  # exits 0 when the guest is registered
    unregister: tuple[str, ...]
    source: str


# Red Hat: "Prepare a Red Hat-based virtual machine for Azure", final steps
# (`subscription-manager unregister` before deprovisioning). A registered system
# holds its consumer certificate in /etc/pki/consumer/cert.pem.
RHSM = Registration(
    tool="subscription-manager", finding_code="rhsm_registered",
    registered_probe="test -e /etc/pki/consumer/cert.pem",
    unregister=("subscription-manager unregister",),
    source=AZURE_DOCS + "redhat-create-upload-vhd")

# SUSE: "Prepare a SLES or openSUSE Leap virtual machine for Azure" (`SUSEConnect -d`,
# i.e. --de-register, then --cleanup). SCC credentials live in SCCcredentials.
SCC = Registration(
    tool="SUSEConnect", finding_code="scc_registered",
    registered_probe="test -e /etc/zypp/credentials.d/SCCcredentials",
    unregister=("SUSEConnect --de-register", "SUSEConnect --cleanup"),
    source=AZURE_DOCS + "suse-create-upload-vhd")


class Family:
    """Generic Linux: used, with a warning, when no known family matches."""

    name = "generic"
    title = "Linux (unknown distribution, generic plan)"
    doc = AZURE_DOCS + "create-upload-generic"
    # Initramfs images and the tool that lists one (dracut's lsinitrd, initramfs-tools'
    # lsinitramfs); the generic family tries both.
    initramfs_globs: tuple[str, ...] = ("/boot/initramfs-*.img", "/boot/initrd.img-*",
                                        "/boot/initrd-*")
    initramfs_listers: tuple[str, ...] = ("lsinitrd", "lsinitramfs")
    # Kernel parameters the family's Azure page asks for besides console=ttyS0. The generic
    # page: GRUB_CMDLINE_LINUX="rootdelay=300 console=ttyS0 earlyprintk=ttyS0 net.ifnames=0".
    cmdline_extras: tuple[str, ...] = ("earlyprintk=ttyS0", "rootdelay=300", "net.ifnames=0")
    agent_service = "waagent"
    ssh_service = "sshd"
    reboot_probe = "test -e /var/run/reboot-required || test -e /run/reboot-needed"
    registration: Registration | None = None
    # Files left by the installer that would misconfigure the first boot in Azure.
    installer_leftovers: tuple[str, ...] = ()
    # Removed only when cloud-init is installed (it writes their replacement on first boot).
    cloud_init_leftovers: tuple[str, ...] = ()
    # machine-id(5): an empty /etc/machine-id means "not initialized yet", so systemd
    # generates a fresh id on first boot (deleting the file instead breaks read-only roots).
    machine_id_reset: tuple[str, ...] = ("truncate -s 0 /etc/machine-id",)

    def __repr__(self) -> str:
        return f"<family {self.name}>"


class Debian(Family):
    name = "debian"
    title = "Debian"
    doc = AZURE_DOCS + "debian-create-upload-vhd"
    # The Debian page builds with FAI and sends manual preparation to the generic page, so
    # the kernel parameters and deprovision steps are the generic ones.
    initramfs_globs = ("/boot/initrd.img-*",)
    initramfs_listers = ("lsinitramfs",)
    agent_service = "walinuxagent"  # the Debian/Ubuntu package and unit name
    ssh_service = "ssh"
    reboot_probe = "test -e /var/run/reboot-required"  # written by update-notifier / needrestart
    # Debian keeps a D-Bus copy of the machine id; point it back at /etc/machine-id.
    machine_id_reset = ("truncate -s 0 /etc/machine-id",
                        "rm -f /var/lib/dbus/machine-id")


class Ubuntu(Debian):
    name = "ubuntu"
    title = "Ubuntu"
    doc = AZURE_DOCS + "create-upload-ubuntu"
    # "Prepare an Ubuntu VM for Azure": GRUB_CMDLINE_LINUX_DEFAULT="console=tty1
    # console=ttyS0,115200n8 earlyprintk=ttyS0,115200 rootdelay=300" (no net.ifnames=0).
    cmdline_extras = ("earlyprintk=ttyS0", "rootdelay=300")
    # "Prepare an Ubuntu VM for Azure": remove the subiquity/curtin cloud-init overrides,
    # ds-identify's pinned datasource and the installer's netplan files.
    installer_leftovers = (
        "/etc/cloud/cloud.cfg.d/50-curtin-networking.cfg",
        "/etc/cloud/cloud.cfg.d/curtin-preserve-sources.cfg",
        "/etc/cloud/cloud.cfg.d/99-installer.cfg",
        "/etc/cloud/cloud.cfg.d/subiquity-disable-cloudinit-networking.cfg",
        "/etc/cloud/ds-identify.cfg",
    )
    # The page's netplan removal assumes cloud-init, which writes a new 50-cloud-init.yaml
    # on first boot; without it nothing would, and the VM would boot with no network.
    cloud_init_leftovers = ("/etc/netplan/*.yaml",)


class Rhel(Family):
    name = "rhel"
    title = "Red Hat Enterprise Linux"
    doc = AZURE_DOCS + "redhat-create-upload-vhd"
    initramfs_globs = ("/boot/initramfs-*.img",)
    initramfs_listers = ("lsinitrd",)
    # The RHEL page: GRUB_CMDLINE_LINUX="console=tty1 console=ttyS0,115200n8
    # earlyprintk=ttyS0 net.ifnames=0" (rootdelay=300 no longer listed).
    cmdline_extras = ("earlyprintk=ttyS0", "net.ifnames=0")
    # dnf-utils' needs-restarting -r exits 1 when a reboot is needed.
    reboot_probe = "needs-restarting -r >/dev/null 2>&1; test $? -eq 1"
    registration = RHSM
    # (70-persistent-net.rules, which the CentOS page removes, is removed for every family
    # when present: see facts.PERSISTENT_NET_RULE.)


class CentOS(Rhel):
    name = "centos"
    title = "CentOS"


class AlmaLinux(Rhel):
    name = "almalinux"
    title = "AlmaLinux"


class Rocky(Rhel):
    name = "rocky"
    title = "Rocky Linux"


class OracleLinux(Rhel):
    name = "ol"
    title = "Oracle Linux"
    doc = AZURE_DOCS + "oracle-create-upload-vhd"


class Suse(Family):
    name = "suse"
    title = "SUSE Linux Enterprise / openSUSE"
    doc = AZURE_DOCS + "suse-create-upload-vhd"
    initramfs_globs = ("/boot/initrd-*",)
    initramfs_listers = ("lsinitrd",)
    # The SLES page, "set up the serial console": add console=ttyS0 and earlyprintk=ttyS0.
    cmdline_extras = ("earlyprintk=ttyS0",)
    reboot_probe = "test -e /run/reboot-needed"  # zypper's marker
    registration = SCC
    # The SLES page, "remove udev rules and network adapter configuration files": besides
    # 70-persistent-net.rules (removed for every family), cloud-init's own generated rule.
    # Its third line, rm /etc/sysconfig/network/ifcfg-eth*, is left out: without cloud-init
    # writing the network configuration the image would boot with no network, and
    # MAC-bound ifcfg files are reported by the mac_bound_network check instead.
    installer_leftovers = ("/etc/udev/rules.d/85-persistent-net-cloud-init.rules",)


class AzureLinux(Family):
    name = "azurelinux"
    title = "Azure Linux / CBL-Mariner"
    initramfs_globs = ("/boot/initrd.img-*", "/boot/initramfs-*.img")
    initramfs_listers = ("lsinitrd",)
    cmdline_extras = ()  # built for Azure: the console setup ships in its kernel config


FAMILIES_BY_ID: dict[str, type[Family]] = {
    "ubuntu": Ubuntu, "debian": Debian,
    "rhel": Rhel, "centos": CentOS, "almalinux": AlmaLinux, "rocky": Rocky, "ol": OracleLinux,
    "sles": Suse, "sles_sap": Suse, "sled": Suse, "opensuse": Suse,
    "opensuse-leap": Suse, "opensuse-tumbleweed": Suse,
    "azurelinux": AzureLinux, "mariner": AzureLinux,
}
# ID_LIKE words, tried in the order the file lists them (most specific first).
FAMILIES_BY_LIKE: dict[str, type[Family]] = {
    "ubuntu": Ubuntu, "debian": Debian, "rhel": Rhel, "centos": Rhel,
    "suse": Suse, "opensuse": Suse, "sles": Suse, "mariner": AzureLinux,
    "azurelinux": AzureLinux,
}


@dataclass(frozen=True)
class Detection:
    """Which family a guest belongs to, and how sure that is."""

    family: Family
    os_release: OsRelease
    matched_by: str  # "id", "id_like" or "fallback"

    @property
    def warning(self) -> str | None:
        if self.matched_by != "fallback":
            return None
        name = self.os_release.pretty_name or self.os_release.id or "an unnamed distribution"
        return (f"{name} is not a known family (ID={self.os_release.id or '?'}); using the "
                "generic plan: check it against your distribution's Azure documentation")


def detect_family(os_release: OsRelease) -> Detection:
    """Pick the family for ``os_release``: ID first, then ID_LIKE, else generic."""
    if os_release.id in FAMILIES_BY_ID:
        return Detection(FAMILIES_BY_ID[os_release.id](), os_release, "id")
    for like in os_release.id_like:
        if like in FAMILIES_BY_LIKE:
            return Detection(FAMILIES_BY_LIKE[like](), os_release, "id_like")
    return Detection(Family(), os_release, "fallback")

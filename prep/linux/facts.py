"""Read-only facts gathered from a guest: the raw material of the readiness checks.

Gathering runs commands; judging (checks.py) is pure, so it is tested from tables.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from ..shell import quote
from ..transport import RunResult
from .families import Family

HYPERV_MODULES = ("hv_vmbus", "hv_storvsc", "hv_netvsc")
_UNWANTED_INITRAMFS = re.compile(r"rescue|kdump|fallback")
# The generic page and the CentOS and SLES pages remove it: it pins eth0 to the old MAC, so
# Azure's NIC would come up as eth1 without configuration.
PERSISTENT_NET_RULE = "/etc/udev/rules.d/70-persistent-net.rules"

# Network configuration that names a MAC address (it stops matching in Azure).
_MAC_BOUND_PROBE = (
    "grep -lsiE '^[[:space:]]*(HWADDR|MACADDR)=' /etc/sysconfig/network-scripts/ifcfg-* "
    "/etc/sysconfig/network/ifcfg-*; "
    "grep -lsiE '^[[:space:]]*macaddress:' /etc/netplan/*.yaml; "
    "grep -lsiE '^[[:space:]]*mac-address=' /etc/NetworkManager/system-connections/*; true")
_UDF_PROBE = ("ls -d /lib/modules/*/kernel/fs/udf /usr/lib/modules/*/kernel/fs/udf 2>/dev/null; "
              "grep -hs 'fs/udf/udf' /lib/modules/*/modules.builtin; true")
_UDF_DISABLED_PROBE = (
    "grep -hsE '^[[:space:]]*(install[[:space:]]+udf[[:space:]]+/bin/(true|false)"
    "|blacklist[[:space:]]+udf)([[:space:]]|$)' /etc/modprobe.d/*.conf /lib/modprobe.d/*.conf; true")
_CLOUD_CFG = "cat /etc/cloud/cloud.cfg /etc/cloud/cloud.cfg.d/*.cfg 2>/dev/null; true"
# cloud-init runs at boot unless disabled by file (cloud-init's "disabling" docs) or its
# first unit (cloud-init-local, present in every release) is not enabled.
_CLOUD_INIT_ENABLED = ("test ! -e /etc/cloud/cloud-init.disabled && "
                       "systemctl is-enabled cloud-init-local >/dev/null")


class Runner(Protocol):
    """Anything that runs a command as root (prep.shell.RootShell)."""

    def run(self, command: str, stdin: bytes | None = None,
            timeout: float | None = None) -> RunResult: ...


@dataclass(frozen=True)
class Facts:
    """What the checks need to know about a guest."""

    cmdline: str = ""
    fstab: str = ""
    initramfs: str | None = None
    initramfs_listing: str = ""
    builtin_modules: str = ""
    waagent_installed: bool = False
    waagent_enabled: bool = False
    cloud_init_installed: bool = False
    cloud_init_enabled: bool = False
    cloud_cfg: str = ""
    waagent_conf: str = ""
    sshd_enabled: bool = False
    persistent_net_rules: bool = False
    mac_bound_files: tuple[str, ...] = ()
    udf_available: bool = False
    udf_disabled: bool = False
    reboot_pending: bool = False
    registered: bool = False


def choose_initramfs(paths: list[str], kernel: str) -> str | None:
    """The running kernel's initramfs when present, else the newest regular one."""
    usable = [p for p in paths if p and not _UNWANTED_INITRAMFS.search(p.rsplit("/", 1)[-1])]
    for path in usable:
        if kernel and kernel in path.rsplit("/", 1)[-1]:
            return path
    return max(usable, key=_version_key) if usable else None


def _version_key(path: str) -> list[tuple[int, object]]:
    return [(0, int(part)) if part.isdigit() else (1, part)
            for part in re.split(r"(\d+)", path)]


def gather(runner: Runner, family: Family, timeout: float | None = None) -> Facts:
    """Run the read-only probes for ``family`` on the guest."""

    def out(command: str) -> str:
        return runner.run(command, timeout=timeout).stdout

    def ok(command: str) -> bool:
        return runner.run(command, timeout=timeout).ok

    globs = " ".join(family.initramfs_globs)  # constants of the family: globbing wanted
    candidates = out(f"for f in {globs}; do [ -f \"$f\" ] && echo \"$f\"; done; true")
    initramfs = choose_initramfs(candidates.splitlines(), out("uname -r").strip())
    listing = ""
    if initramfs is not None:
        for lister in family.initramfs_listers:
            result = runner.run(f"{lister} {quote(initramfs)}", timeout=timeout)
            if result.ok:
                listing = result.stdout
                break
    registration = family.registration
    return Facts(
        cmdline=out("cat /proc/cmdline"),
        fstab=out("cat /etc/fstab 2>/dev/null; true"),
        initramfs=initramfs,
        initramfs_listing=listing,
        builtin_modules=out("cat /lib/modules/*/modules.builtin 2>/dev/null; true"),
        waagent_installed=ok("command -v waagent >/dev/null"),
        waagent_enabled=ok(f"systemctl is-enabled {quote(family.agent_service)} >/dev/null"),
        cloud_init_installed=ok("command -v cloud-init >/dev/null"),
        cloud_init_enabled=ok(_CLOUD_INIT_ENABLED),
        cloud_cfg=out(_CLOUD_CFG),
        waagent_conf=out("cat /etc/waagent.conf 2>/dev/null; true"),
        sshd_enabled=ok(f"systemctl is-enabled {quote(family.ssh_service)} >/dev/null"),
        persistent_net_rules=ok("test -e " + quote(PERSISTENT_NET_RULE)),
        mac_bound_files=tuple(line for line in out(_MAC_BOUND_PROBE).splitlines() if line),
        udf_available=bool(out(_UDF_PROBE).strip()),
        udf_disabled=bool(out(_UDF_DISABLED_PROBE).strip()),
        reboot_pending=ok(family.reboot_probe),
        registered=registration is not None and ok(registration.registered_probe),
    )

"""Busybox-based root trees that look like a given distribution to the Linux checks.

Each tree holds an os-release, the files the checks read (/proc/cmdline as a plain file,
/etc/fstab, an initramfs whose listing the stand-in lister prints) and stand-in
executables (waagent, cloud-init, subscription-manager, SUSEConnect, shutdown, userdel,
systemctl, sudo, ...) that record their argv in /var/log/recorded.log.
"""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .tools import require_executable

RECORDED_LOG = "var/log/recorded.log"  # argv of every command that changes something
QUERIES_LOG = "var/log/queries.log"  # argv of read-only stand-ins (listers)
SUDO_LOG = "var/log/sudo.log"  # how sudo was called (argv only: never the password)
POWEROFF_MARKER = "var/log/poweroff.marker"
SUDO_PASSWORD_FILE = "etc/sandbox-sudo-password"
KERNEL = "5.15.0-91-generic"
SUDOER_UID = 1000

# The recorder writes "name [arg1] [arg2]..." so tests see exact word boundaries.
_RECORD = r'''{ printf '%s' "${0##*/}"; for a in "$@"; do printf ' [%s]' "$a"; done; echo; }'''
_RECORDER = f"#!/bin/sh\n{_RECORD} >> /{RECORDED_LOG}\n"
_LISTER = f"#!/bin/sh\n{_RECORD} >> /{QUERIES_LOG}\ncat \"$1\"\n"
_SYSTEMCTL = f"""#!/bin/sh
if [ "$1" = is-enabled ]; then
  if [ -e "/etc/systemd/system/multi-user.target.wants/$2.service" ]; then echo enabled; exit 0; fi
  echo disabled; exit 1
fi
{_RECORD} >> /{RECORDED_LOG}
"""
_SHUTDOWN = f"#!/bin/sh\n{_RECORD} >> /{RECORDED_LOG}\ntouch /{POWEROFF_MARKER}\n"
# dnf-utils' needs-restarting -r: exit 1 when a reboot is needed.
_NEEDS_RESTARTING = "#!/bin/sh\n[ -e /var/run/reboot-required ] && exit 1\nexit 0\n"
_SUBSCRIPTION_MANAGER = f"""#!/bin/sh
{_RECORD} >> /{RECORDED_LOG}
[ "$1" = unregister ] && rm -f /etc/pki/consumer/cert.pem
exit 0
"""
_SUDO = f"""#!/bin/sh
# Stand-in for sudo: -n needs /etc/sandbox-sudo-nopasswd, -S reads the password on stdin.
{{ printf 'sudo'; for a in "$@"; do printf ' [%s]' "$a"; done; echo; }} >> /{SUDO_LOG}
mode=
while [ $# -gt 0 ]; do
  case "$1" in
    -n) mode=n; shift ;;
    -S) mode=S; shift ;;
    -k) shift ;;
    -p) shift 2 ;;
    --) shift; break ;;
    *) break ;;
  esac
done
if [ "$mode" = S ]; then
  IFS= read -r given
  if [ "$given" != "$(cat /{SUDO_PASSWORD_FILE})" ]; then
    echo "sudo: 1 incorrect password attempt" >&2; echo "result [bad-password]" >> /{SUDO_LOG}; exit 1
  fi
  echo "result [password-ok]" >> /{SUDO_LOG}
elif [ ! -e /etc/sandbox-sudo-nopasswd ]; then
  echo "sudo: a password is required" >&2; exit 1
fi
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
exec "$@"
"""

STAND_INS = {
    "waagent": _RECORDER, "cloud-init": _RECORDER, "SUSEConnect": _RECORDER,
    "userdel": _RECORDER, "subscription-manager": _SUBSCRIPTION_MANAGER,
    "shutdown": _SHUTDOWN, "poweroff": _SHUTDOWN, "systemctl": _SYSTEMCTL,
    "lsinitramfs": _LISTER, "lsinitrd": _LISTER, "sudo": _SUDO,
    "needs-restarting": _NEEDS_RESTARTING,
}

HYPERV_LISTING = "\n".join(
    f"usr/lib/modules/{KERNEL}/kernel/drivers/{path}" for path in
    ("hv/hv_vmbus.ko", "scsi/hv_storvsc.ko", "net/hyperv/hv_netvsc.ko", "hv/hv_utils.ko"))
PLAIN_LISTING = f"usr/lib/modules/{KERNEL}/kernel/drivers/virtio/virtio_blk.ko"


@dataclass(frozen=True)
class RootSpec:
    """What to put in a root tree: a distribution and whether it is Azure-ready."""

    os_release: str
    initramfs: str  # path under /boot, e.g. "boot/initrd.img-5.15.0-91-generic"
    agent_service: str = "waagent"
    ssh_service: str = "sshd"
    ready: bool = True
    cloud_init: bool = True
    registered_marker: str | None = None  # file that says "registered" (RHSM, SCC)
    sudoer_owns_tree: bool = False  # for the sudo tests: uid 1000 may change every file
    extra_files: dict[str, str] = field(default_factory=dict)


def _write(root: Path, relative: str, text: str, mode: int = 0o644) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def _install_busybox(root: Path) -> None:
    busybox = require_executable("busybox")
    shutil.copy2(busybox, root / "bin/busybox")
    applets = subprocess.run([busybox, "--list-full"], check=True, capture_output=True,
                             text=True).stdout.split()
    for applet in applets:
        link = root / applet
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists() and not link.is_symlink():
            link.symlink_to("/bin/busybox")


def build_root(root: Path, spec: RootSpec) -> Path:
    """Create the tree at ``root`` (root-owned, 0755 top: sshd's ChrootDirectory rule)."""
    root.mkdir(mode=0o755, parents=True)
    root.chmod(0o755)
    for directory in ("bin", "sbin", "usr/bin", "usr/sbin", "etc/ssh", "dev", "root",
                      "home/admin", "var/log", "var/lib/waagent", "run", "proc", "boot",
                      f"lib/modules/{KERNEL}", "etc/systemd/system/multi-user.target.wants"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    (root / "tmp").mkdir(mode=0o1777)
    (root / "tmp").chmod(0o1777)
    (root / "var/log").chmod(0o777)
    _install_busybox(root)
    for name, script in STAND_INS.items():
        target = root / "usr/bin" / name
        if target.is_symlink() or target.exists():
            target.unlink()
        _write(root, f"usr/bin/{name}", script, 0o755)
        sbin = root / "usr/sbin" / name  # busybox may have put an applet there first
        if sbin.is_symlink() or sbin.exists():
            sbin.unlink()
    for name in ("poweroff", "shutdown"):
        for directory in ("sbin", "bin"):
            applet = root / directory / name
            if applet.is_symlink():
                applet.unlink()
    os.mknod(root / "dev/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.chmod(root / "dev/null", 0o666)
    _write(root, "etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"
           f"admin:x:{SUDOER_UID}:{SUDOER_UID}:admin:/home/admin:/bin/sh\n")
    _write(root, "etc/group", f"root:x:0:\nadmin:x:{SUDOER_UID}:\n")
    _write(root, "etc/os-release", spec.os_release)
    _write(root, "etc/machine-id", "0f1e2d3c4b5a69788796a5b4c3d2e1f0\n")
    _write(root, "etc/ssh/ssh_host_ed25519_key", "not a real key\n", 0o600)
    _write(root, "etc/ssh/ssh_host_ed25519_key.pub", "ssh-ed25519 AAAA sandbox\n")
    _write(root, "root/.bash_history", "ls\n", 0o600)
    _write(root, "home/admin/.bash_history", "sudo -i\n", 0o600)
    _write(root, SUDO_PASSWORD_FILE, "correct horse battery staple\n", 0o644)
    _populate_readiness(root, spec)
    for relative, text in spec.extra_files.items():
        _write(root, relative, text)
    if spec.sudoer_owns_tree:
        for path in root.rglob("*"):
            os.lchown(path, SUDOER_UID, SUDOER_UID)
    else:
        os.chown(root / "home/admin", SUDOER_UID, SUDOER_UID)
    return root


def _populate_readiness(root: Path, spec: RootSpec) -> None:
    ready = spec.ready
    cmdline = (f"BOOT_IMAGE=/vmlinuz-{KERNEL} root=UUID=8c2f ro console=tty1 console=ttyS0,115200n8 "
               "earlyprintk=ttyS0 rootdelay=300 net.ifnames=0" if ready
               else f"BOOT_IMAGE=/vmlinuz-{KERNEL} root=/dev/sda2 ro quiet splash")
    _write(root, "proc/cmdline", cmdline + "\n")
    fstab = ("UUID=8c2f / ext4 defaults 0 1\nLABEL=boot /boot ext4 defaults 0 2\n" if ready else
             "/dev/sda2 / ext4 defaults 0 1\n/dev/sda3 none swap sw 0 0\n/swapfile none swap sw 0 0\n")
    _write(root, "etc/fstab", "# /etc/fstab\n" + fstab)
    _write(root, spec.initramfs, HYPERV_LISTING + "\n" if ready else PLAIN_LISTING + "\n")
    wants = "etc/systemd/system/multi-user.target.wants"
    if ready:
        _write(root, f"{wants}/{spec.agent_service}.service", "[Unit]\n")
        _write(root, f"{wants}/{spec.ssh_service}.service", "[Unit]\n")
        _write(root, f"lib/modules/{KERNEL}/kernel/fs/udf/udf.ko", "")
    else:
        _write(root, "etc/udev/rules.d/70-persistent-net.rules",
               'SUBSYSTEM=="net", ATTR{address}=="52:54:00:12:34:56", NAME="eth0"\n')
        _write(root, "etc/modprobe.d/CIS.conf", "install udf /bin/true\n")
        _write(root, "var/run/reboot-required", "*** System restart required ***\n")
        _write(root, "run/reboot-needed", "")
        (root / "usr/bin/waagent").unlink()
    if spec.cloud_init:
        _write(root, "etc/cloud/cloud.cfg",
               "datasource_list: [ Azure ]\n" if ready else "datasource_list: [ NoCloud, None ]\n")
    else:
        (root / "usr/bin/cloud-init").unlink()
    if spec.registered_marker:
        _write(root, spec.registered_marker, "registered\n")


def read_log(upper: Path, relative: str) -> list[str]:
    """Lines of a stand-in log from an overlay's upper dir ([] when nothing was recorded)."""
    path = upper / relative
    return path.read_text().splitlines() if path.exists() else []

"""A real OpenSSH sshd on 127.0.0.1, sandboxed in a chroot on a throwaway overlay.

sshd runs in a private mount namespace (``unshare --mount --propagation private``) where
an overlay of a prepared root tree is mounted on a root-owned 0755 directory and used as
``ChrootDirectory``: every command a test sends runs inside it and writes only to the
overlay's upper directory, which the test then reads. The sandbox's own passwd/group/
shadow are bind-mounted over /etc inside that namespace for sshd's user lookups, so the
machine's account files are never touched.
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .rootfs import POWEROFF_MARKER, SUDOER_UID
from .tools import free_port, require_executable

SSHD = "/usr/sbin/sshd"
LOGIN_PASSWORD = "sandbox login password"  # admin's password for password logins
# its SHA-512 crypt(3) hash (openssl passwd -6 -salt sandboxsalt), as /etc/shadow holds it
LOGIN_PASSWORD_HASH = ("$6$sandboxsalt$FArZY7BR84u/rGapBWUK1Bms/HxdF9idXiE2A9jTk9irBxM30UnWIozUt"
                       "eGtsymlIuFHKFxmJ/gqkC82.KvQr0")
SANDBOX_DIR = Path("/run/azlift-sandbox")  # two empty root-owned 0755 mountpoints
MOUNTPOINT = SANDBOX_DIR / "root"  # the overlay, sshd's ChrootDirectory
KEYS_MOUNT = SANDBOX_DIR / "keys"  # a tmpfs with authorized_keys any user can read


@dataclass(frozen=True)
class Keys:
    """The sandbox host key and the client key the tests log in with (one per session)."""

    host_key: Path
    host_public: str  # "ssh-ed25519 AAAA..."
    client_key: Path
    client_public: str


def make_keys(directory: Path) -> Keys:
    ssh_keygen = require_executable("ssh-keygen")
    for name in ("host_key", "client_key"):
        subprocess.run([ssh_keygen, "-q", "-t", "ed25519", "-N", "", "-C", "sandbox",
                        "-f", str(directory / name)], check=True)
    public = {n: " ".join((directory / f"{n}.pub").read_text().split()[:2])
              for n in ("host_key", "client_key")}
    return Keys(directory / "host_key", public["host_key"], directory / "client_key",
                public["client_key"])


def _account_files(directory: Path) -> dict[str, Path]:
    """The machine's account files plus the sandbox's ``admin`` sudoer; shells are /bin/sh."""
    admin_hash = LOGIN_PASSWORD_HASH
    extra = {"passwd": "root:x:0:0:root:/root:/bin/sh\n"
                       f"admin:x:{SUDOER_UID}:{SUDOER_UID}:admin:/home/admin:/bin/sh\n",
             "group": f"root:x:0:\nadmin:x:{SUDOER_UID}:\n",
             "shadow": f"root:*:19000:0:99999:7:::\nadmin:{admin_hash}:19000:0:99999:7:::\n"}
    files = {}
    for name, line in extra.items():
        current = Path(f"/etc/{name}").read_text() if Path(f"/etc/{name}").exists() else ""
        lines = [x for x in current.splitlines(keepends=True)
                 if not x.startswith(("admin:", "root:"))]
        path = directory / name
        path.write_text("".join(lines) + line)
        path.chmod(0o640 if name == "shadow" else 0o644)
        files[name] = path
    return files


class SandboxSshd:
    """One sshd over one pristine overlay of ``lower``; ``upper`` holds what changed."""

    def __init__(self, lower: Path, workdir: Path, keys: Keys) -> None:
        self.lower = lower
        self.workdir = workdir
        self.keys = keys
        self.upper = workdir / "upper"
        self.port = free_port()
        self.host = "127.0.0.1"
        self.log = workdir / "sshd.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._namespace: str | None = None
        self._watch_stop = threading.Event()
        self.powered_off = threading.Event()

    @property
    def known_hosts_line(self) -> str:
        return f"[{self.host}]:{self.port} {self.keys.host_public}\n"

    def start(self) -> "SandboxSshd":
        require_executable("unshare")
        if not Path(SSHD).exists():
            import pytest
            pytest.skip(f"{SSHD} not installed (run scripts/setup.sh)")
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        for mountpoint in (SANDBOX_DIR, MOUNTPOINT, KEYS_MOUNT):
            mountpoint.mkdir(mode=0o755, exist_ok=True)
        for name in ("upper", "work"):
            (self.workdir / name).mkdir(mode=0o755)
        authorized = self.workdir / "authorized_keys"
        authorized.write_text(self.keys.client_public + "\n")
        accounts = _account_files(self.workdir)
        config = self.workdir / "sshd_config"
        config.write_text("\n".join([
            f"Port {self.port}", f"ListenAddress {self.host}",
            f"HostKey {self.keys.host_key}", f"PidFile {self.workdir / 'sshd.pid'}",
            f"AuthorizedKeysFile {KEYS_MOUNT}/authorized_keys", "UsePAM no", "StrictModes no",
            "PermitRootLogin prohibit-password", "PasswordAuthentication yes",
            "KbdInteractiveAuthentication no", f"ChrootDirectory {MOUNTPOINT}",
            "PrintMotd no", "PrintLastLog no", "UseDNS no", "MaxStartups 50",
            "LogLevel VERBOSE", ""]))
        script = "\n".join([
            "set -e",
            f"mount -t overlay overlay -o lowerdir={self.lower},upperdir={self.upper},"
            f"workdir={self.workdir / 'work'} {MOUNTPOINT}",
            *(f"mount --bind {path} /etc/{name}" for name, path in accounts.items()),
            # sshd reads authorized_keys as the user: the test's temp dir is 0700
            f"mount -t tmpfs -o mode=0755,size=64k tmpfs {KEYS_MOUNT}",
            f"cp {authorized} {KEYS_MOUNT}/authorized_keys",
            f"chmod 0644 {KEYS_MOUNT}/authorized_keys",
            f"exec {SSHD} -D -E {self.log} -f {config}",
        ])
        self.process = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        self._wait_ready()
        threading.Thread(target=self._watch_power_off, daemon=True).start()
        return self

    def _wait_ready(self) -> None:
        from prep.ssh import port_answers
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sandbox sshd exited: {self.process.stderr.read().decode()} "
                                   f"{self.log.read_text() if self.log.exists() else ''}")
            if port_answers(self.host, self.port, timeout=0.5):
                self._namespace = os.readlink(f"/proc/{self.process.pid}/ns/mnt")
                return
            time.sleep(0.02)
        raise RuntimeError("sandbox sshd did not start listening within 10 s")

    def _watch_power_off(self) -> None:
        """The power-off stand-in leaves a marker: "power off" = kill the whole sandbox."""
        marker = self.upper / POWEROFF_MARKER
        while not self._watch_stop.wait(0.02):
            if marker.exists():
                self.powered_off.set()
                self.kill()
                return

    def _sandbox_pids(self) -> list[int]:
        """Every process in the sandbox's mount namespace (sshd, sessions, detached shells)."""
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                if os.readlink(f"/proc/{entry}/ns/mnt") == self._namespace:
                    pids.append(int(entry))
            except OSError:
                continue
        return pids

    def kill(self) -> None:
        if self._namespace is None:
            return
        for pid in self._sandbox_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.process is not None:
            self.process.wait(timeout=10)

    def stop(self) -> None:
        self._watch_stop.set()
        if self.process is not None and self.process.poll() is None:
            self.kill()
        elif self._namespace is not None:
            self.kill()  # detached shells may outlive the listener
        if self.process is not None and self.process.stderr:
            self.process.stderr.close()

    def wait_for_power_off(self, timeout: float = 10) -> bool:
        return self.powered_off.wait(timeout)

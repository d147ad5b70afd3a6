"""A real OpenSSH sshd on 127.0.0.1, sandboxed in a chroot on a throwaway overlay.

sshd runs in private mount and PID namespaces (``unshare --mount --pid``) where
an overlay of a prepared root tree is mounted on a root-owned 0755 directory and used as
``ChrootDirectory``: every command a test sends runs inside it and writes only to the
overlay's upper directory, which the test then reads. The sandbox's own passwd/group/
shadow are bind-mounted over /etc inside that namespace for sshd's user lookups, so the
machine's account files are never touched.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
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
START_ATTEMPTS = 3  # a port from free_port() can be taken before sshd binds it
READY_SECONDS = 30.0  # bounded, but generous for a loaded 2-core machine


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
        authorized = self.workdir / "authorized_keys"
        authorized.write_text(self.keys.client_public + "\n")
        accounts = _account_files(self.workdir)
        for attempt in range(1, START_ATTEMPTS + 1):
            if self._launch(authorized, accounts):
                break
            if attempt == START_ATTEMPTS:
                raise RuntimeError(f"sandbox sshd could not bind a free port in "
                                   f"{START_ATTEMPTS} attempts: {self._log_text()}")
            self.port = free_port()  # another process took the port meanwhile
        threading.Thread(target=self._watch_power_off, daemon=True).start()
        return self

    def _launch(self, authorized: Path, accounts: dict[str, Path]) -> bool:
        """Start sshd in a fresh sandbox; False when its port was taken (try another)."""
        for name in ("upper", "work"):
            shutil.rmtree(self.workdir / name, ignore_errors=True)
            (self.workdir / name).mkdir(mode=0o755)
        self.log.unlink(missing_ok=True)
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
            f"exec {SSHD} -D -E {self.log} -f {config}",  # sshd becomes the namespace's init
        ])
        # A private PID namespace as well as a mount namespace: every process of the
        # sandbox (sshd, sessions, detached shells) is in it, and killing its init kills
        # them all at once. (Telling sandboxes apart by the mount namespace's inode is not
        # safe: the kernel reuses a freed inode number for the next namespace created,
        # possibly another test run's sandbox.)
        self.process = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--pid", "--fork",
             "--kill-child", "sh", "-c", script],
            start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        return self._wait_ready()

    def _log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def _wait_ready(self) -> bool:
        """Wait until *this* sshd listens and answers with its SSH banner.

        A port that merely accepts TCP is not enough: the port may belong to another
        process, and the banner is sent only once sshd has forked and re-executed for the
        connection, which is slow on a loaded machine. Connection attempts are retried
        until the deadline.
        """
        listening = f"Server listening on {self.host} port {self.port}"
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = self._log_text()
                if "Address already in use" in log or "Cannot bind any address" in log:
                    self.process.stderr.close()
                    return False
                raise RuntimeError(f"sandbox sshd exited: {self.process.stderr.read().decode()} "
                                   f"{log}")
            if listening in self._log_text() and _answers_ssh(self.host, self.port):
                return True
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"sandbox sshd did not answer within {READY_SECONDS} s: "
                           f"{self._log_text()}")

    def _watch_power_off(self) -> None:
        """The power-off stand-in leaves a marker: "power off" = kill the whole sandbox."""
        marker = self.upper / POWEROFF_MARKER
        while not self._watch_stop.wait(0.02):
            if marker.exists():
                self.kill()
                self.powered_off.set()  # only once every sandbox process is gone
                return

    def kill(self) -> None:
        """SIGKILL the namespace's init; returns once every sandbox process is gone."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        try:
            children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text()
        except OSError:
            children = ""
        for pid in children.split():  # the namespace's init (unshare --fork's child)
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        if not children.split():
            process.kill()  # --kill-child takes the namespace down with unshare
        # unshare reaps its child, and an init exits only after the rest of its namespace
        process.wait(timeout=30)

    def stop(self) -> None:
        self._watch_stop.set()
        self.kill()
        if self.process is not None and self.process.stderr:
            self.process.stderr.close()

    def wait_for_power_off(self, timeout: float = 30) -> bool:
        """Whether the sandbox was powered off (all its processes gone) within ``timeout``."""
        return self.powered_off.wait(timeout)


def _answers_ssh(host: str, port: int) -> bool:
    """Whether ``host:port`` sends an SSH identification line (one connection attempt)."""
    try:
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.settimeout(5)
            return sock.recv(256).startswith(b"SSH-2.0-")
    except OSError:
        return False

"""Building remote shell commands safely: quoting, and running them as root.

Every value that reaches a remote command line goes through :func:`quote`; the sudo
password only ever travels on the command's stdin (``sudo -S``), never in argv.
"""
from __future__ import annotations

import shlex
from enum import Enum
from typing import Iterable

from .errors import PrivilegeError
from .transport import Remote, RunResult


def quote(value: str) -> str:
    """``value`` as one word for a POSIX shell, whatever characters it holds."""
    return shlex.quote(value)


def join(argv: Iterable[str]) -> str:
    """A command line whose words are exactly ``argv``."""
    return " ".join(quote(word) for word in argv)


class Privilege(str, Enum):
    """How commands reach root on the guest."""

    ROOT = "root"  # logged in as root
    SUDO = "sudo"  # sudo -n: passwordless sudo
    SUDO_PASSWORD = "sudo-password"  # sudo -S: the password on stdin


def as_root(command: str, privilege: Privilege) -> str:
    """``command`` wrapped so that it runs as root under ``privilege``."""
    if privilege is Privilege.ROOT:
        return command
    if privilege is Privilege.SUDO:
        return "sudo -n -- sh -c " + quote(command)
    # -p '' keeps sudo's prompt (and so any hint of the password exchange) off stderr; -k
    # ignores cached credentials, so sudo always reads the password line itself and it can
    # never reach the command's stdin.
    return "sudo -k -S -p '' -- sh -c " + quote(command)


class RootShell:
    """Runs commands as root on a connected guest, whatever the privilege route."""

    def __init__(self, remote: Remote, privilege: Privilege,
                 sudo_password: str | None = None) -> None:
        if privilege is Privilege.SUDO_PASSWORD and not sudo_password:
            raise PrivilegeError("sudo with a password was chosen but no password was given")
        self.remote = remote
        self.privilege = privilege
        self._password = sudo_password

    def __repr__(self) -> str:  # never show the password
        return f"RootShell({self.remote.host!r}, {self.privilege.value})"

    def stdin_for(self, stdin: bytes | None = None) -> bytes | None:
        """The bytes to send: the sudo password line first when sudo reads it."""
        if self.privilege is not Privilege.SUDO_PASSWORD:
            return stdin
        assert self._password is not None
        return self._password.encode() + b"\n" + (stdin or b"")

    def run(self, command: str, stdin: bytes | None = None,
            timeout: float | None = None) -> RunResult:
        """Run ``command`` as root and return what it produced."""
        return self.remote.run(as_root(command, self.privilege), stdin=self.stdin_for(stdin),
                               timeout=timeout)


def detect_privilege(remote: Remote, sudo_password: str | None = None,
                     timeout: float | None = None) -> Privilege:
    """Find how to become root: root login, ``sudo -n``, or ``sudo -S`` with the password."""
    uid = remote.run("id -u", timeout=timeout)
    if uid.ok and uid.stdout.strip() == "0":
        return Privilege.ROOT
    # sudo -n first, even with a password at hand: where sudo needs none (NOPASSWD) it
    # would not read the password line, and the line would go to the command instead.
    probe = remote.run(as_root("true", Privilege.SUDO), timeout=timeout)
    if probe.ok:
        return Privilege.SUDO
    if probe.exit_code == 127:  # the shell's "command not found"
        raise PrivilegeError(
            f"the login user on {remote.host} is not root and sudo is not installed there: "
            "log in as root (--user root)")
    if sudo_password:
        probe = RootShell(remote, Privilege.SUDO_PASSWORD, sudo_password).run(
            "true", timeout=timeout)
        if probe.ok:
            return Privilege.SUDO_PASSWORD
        raise PrivilegeError(
            f"sudo on {remote.host} refused the password from the environment "
            f"(exit {probe.exit_code}): check the password and that the user is a sudoer")
    raise PrivilegeError(
        f"the login user on {remote.host} is not root and sudo -n needs a password: "
        "log in as root, or pass --sudo-password-env VAR with the sudo password in VAR")

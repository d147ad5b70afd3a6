"""An SSH transport (paramiko) with OpenSSH-like host-key verification.

Unknown or changed host keys are refused with the key's fingerprint; with
``accept_new_host_key`` a first-seen key is recorded, like OpenSSH's
``StrictHostKeyChecking=accept-new``. A changed key is never accepted.
"""
from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import paramiko

from .errors import (
    ConnectError,
    ConnectionLostError,
    HostKeyError,
    PrepTimeoutError,
    RemoteAuthError,
)
from .transport import RunResult

DEFAULT_KNOWN_HOSTS = Path("~/.ssh/known_hosts")
_POLL_SECONDS = 0.005


@dataclass(frozen=True)
class SshTarget:
    """Where and as whom to connect. The password is only held, never shown."""

    host: str
    port: int = 22
    user: str = "root"
    identity: Path | None = None
    password: str | None = None
    known_hosts: Path = DEFAULT_KNOWN_HOSTS
    accept_new_host_key: bool = False
    timeout: float = 30.0

    def __repr__(self) -> str:
        return f"SshTarget({self.user}@{self.host}:{self.port})"

    @property
    def known_hosts_name(self) -> str:
        """The host as known_hosts names it: ``host`` or ``[host]:port``."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


def fingerprint(key: paramiko.PKey) -> str:
    """``SHA256:...`` as ``ssh-keygen -l`` prints it."""
    return key.fingerprint


class _HostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Refuse unknown keys, or record a first-seen key when the user allowed it."""

    def __init__(self, target: SshTarget, known_hosts: Path,
                 revoked: frozenset[str] = frozenset()) -> None:
        self.target = target
        self.known_hosts = known_hosts
        self.revoked = revoked
        self.recorded: str | None = None

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        refuse_revoked(key, self.revoked, hostname, self.known_hosts)
        if not self.target.accept_new_host_key:
            raise HostKeyError(
                f"host key of {hostname} is unknown ({key.get_name()} {fingerprint(key)}); "
                "compare it with the host's own (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub "
                "on its console), then rerun with --accept-new-host-key to record it in "
                f"{self.known_hosts}")
        record_host_key(self.known_hosts, hostname, key)
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.recorded = f"{key.get_name()} {fingerprint(key)}"


def load_known_hosts(client: paramiko.SSHClient, known_hosts: Path) -> frozenset[str]:
    """Put the trusted keys of ``known_hosts`` into ``client``; return those marked
    @revoked (base64), to refuse. As OpenSSH reads the file: a line it cannot parse is
    skipped, and @cert-authority lines (SSH certificates, which paramiko does not check)
    trust no key (paramiko's own loader stopped at either with an internal error)."""
    try:
        text = known_hosts.read_text(errors="replace")
    except OSError as error:
        raise HostKeyError(f"cannot read known hosts file {known_hosts}: "
                           f"{error.strerror or error}") from error
    trusted, revoked = client.get_host_keys(), set()
    for number, line in enumerate(text.splitlines(), 1):
        marker, line = None, line.strip()
        if line.startswith("@"):
            marker, _, line = line.partition(" ")
        if not line or line.startswith("#"):
            continue
        try:
            entry = paramiko.hostkeys.HostKeyEntry.from_line(line.strip(), number)
        except (paramiko.hostkeys.InvalidHostKey, paramiko.SSHException, ValueError):
            continue
        if entry is None or entry.key is None:
            continue
        if marker == "@revoked":
            revoked.add(entry.key.get_base64())
        elif marker is None:
            for name in entry.hostnames:
                trusted.add(name, entry.key.get_name(), entry.key)
    return frozenset(revoked)


def refuse_revoked(key: paramiko.PKey, revoked: frozenset[str], hostname: str,
                   known_hosts: Path) -> None:
    if key.get_base64() in revoked:
        raise HostKeyError(f"host key of {hostname} ({key.get_name()} {fingerprint(key)}) is "
                           f"marked @revoked in {known_hosts}; expected a key not revoked")


def load_identity(path: Path) -> paramiko.PKey:
    """The private key in ``path``, or a :class:`RemoteAuthError` that says what is wrong.

    Read before connecting, so a file that is not a key (or needs a passphrase) is named as
    such instead of surfacing as a connection failure.
    """
    try:
        return paramiko.PKey.from_path(path)
    except (TypeError, paramiko.PasswordRequiredException):
        # cryptography signals "encrypted, no password given" with TypeError
        raise RemoteAuthError(
            f"--identity {path}: the key is protected by a passphrase; load it into "
            "ssh-agent (ssh-add) and rerun without --identity") from None
    except OSError as error:
        raise RemoteAuthError(f"--identity {path}: cannot read it ({error.strerror or error})"
                              ) from None
    except (ValueError, paramiko.SSHException, paramiko.pkey.UnknownKeyType):
        # paramiko also loads KEY_FILE-cert.pub (like ssh -i), so that may be the bad one
        certificate = Path(f"{path}-cert.pub")
        raise RemoteAuthError(
            f"--identity {path}: expected a private key (OpenSSH or PEM)"
            + (f" and a valid certificate in {certificate}" if certificate.exists() else "")
            + ", found something else (a public key or another file?)") from None


def record_host_key(known_hosts: Path, hostname: str, key: paramiko.PKey) -> None:
    """Append ``hostname``'s key to ``known_hosts`` (created 0600 in a 0700 directory)."""
    known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
    fd = os.open(known_hosts, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a") as handle:
        handle.write(line)


class SshRemote:
    """A connected guest: ``run`` executes one command in a fresh channel."""

    def __init__(self, client: paramiko.SSHClient, target: SshTarget,
                 recorded_host_key: str | None = None) -> None:
        self._client = client
        self.target = target
        self.host = target.host
        self.recorded_host_key = recorded_host_key

    @classmethod
    def connect(cls, target: SshTarget) -> "SshRemote":
        """Open a verified, authenticated session or raise a :class:`ConnectError`."""
        known_hosts = target.known_hosts.expanduser()
        client = paramiko.SSHClient()
        revoked = load_known_hosts(client, known_hosts) if known_hosts.exists() else frozenset()
        policy = _HostKeyPolicy(target, known_hosts, revoked)
        client.set_missing_host_key_policy(policy)
        where = f"{target.host}:{target.port}"
        use_defaults = target.identity is None and target.password is None
        identity = load_identity(target.identity) if target.identity else None
        try:
            client.connect(
                target.host, port=target.port, username=target.user,
                password=target.password,
                pkey=identity,
                timeout=target.timeout, banner_timeout=target.timeout,
                auth_timeout=target.timeout, channel_timeout=target.timeout,
                allow_agent=use_defaults, look_for_keys=use_defaults)
        except HostKeyError:
            client.close()
            raise
        except paramiko.BadHostKeyException as error:
            client.close()
            raise HostKeyError(
                f"host key of {target.known_hosts_name} CHANGED: {known_hosts} has "
                f"{error.expected_key.get_name()} {fingerprint(error.expected_key)}, the host "
                f"offered {error.key.get_name()} {fingerprint(error.key)} (possible "
                "man-in-the-middle); if the host was reinstalled on purpose, run "
                f"ssh-keygen -R '{target.known_hosts_name}' -f {known_hosts} and rerun with "
                "--accept-new-host-key") from None
        except paramiko.AuthenticationException as error:
            client.close()
            raise RemoteAuthError(
                f"{where} refused user {target.user!r} ({error}); check --user, --identity "
                "or --password-env") from None
        except (socket.timeout, TimeoutError):
            client.close()
            raise ConnectError(f"cannot reach {where}: no answer within "
                               f"{target.timeout:g} s") from None
        except paramiko.ssh_exception.NoValidConnectionsError as error:
            client.close()
            causes = {getattr(e, "strerror", None) or str(e) for e in error.errors.values()}
            raise ConnectError(f"cannot reach {where}: {'; '.join(sorted(causes))}") from None
        except paramiko.SSHException as error:
            client.close()
            if str(error) == "No authentication methods available":
                # paramiko's words when it found no key, agent or password to offer
                raise RemoteAuthError(
                    f"{where}: nothing to log in as {target.user!r} with (no SSH agent, no "
                    "~/.ssh key); pass --identity KEY_FILE or --password-env VAR") from None
            raise ConnectError(f"cannot reach {where}: {error or type(error).__name__}") from None
        except (OSError, EOFError) as error:
            client.close()
            reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
            raise ConnectError(f"cannot reach {where}: {reason}") from None
        transport = client.get_transport()
        if transport is not None:  # a known key may be revoked too
            try:
                refuse_revoked(transport.get_remote_server_key(), revoked,
                               target.known_hosts_name, known_hosts)
            except HostKeyError:
                client.close()
                raise
        if transport is not None and isinstance(transport.sock, socket.socket):
            # Many small request/reply exchanges: without this, Nagle + delayed ACK add
            # ~40 ms to every command.
            transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(client, target, policy.recorded)

    @property
    def alive(self) -> bool:
        """Whether the SSH connection is still up."""
        transport = self._client.get_transport()
        return transport is not None and transport.is_active()

    def run(self, command: str, stdin: bytes | None = None,
            timeout: float | None = None) -> RunResult:
        """Run ``command``; stdout and stderr are read to EOF before the exit status."""
        limit = self.target.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            raise ConnectionLostError(f"the SSH connection to {self.host} is closed")
        try:
            channel = transport.open_session(timeout=limit)
            channel.settimeout(limit)
            channel.exec_command(command)
            if stdin:
                channel.sendall(stdin)
            channel.shutdown_write()
            stdout, stderr = _drain(channel, deadline, self.host)
            while not channel.exit_status_ready():
                _check(transport, deadline, self.host, channel)
                time.sleep(_POLL_SECONDS)
            code = channel.recv_exit_status()
            channel.close()
        except (paramiko.SSHException, OSError, EOFError) as error:
            raise ConnectionLostError(
                f"the SSH connection to {self.host} ended during a command "
                f"({type(error).__name__})") from None
        return RunResult(code, stdout.decode(errors="replace"), stderr.decode(errors="replace"))

    def close(self) -> None:
        self._client.close()


def _check(transport: paramiko.Transport, deadline: float, host: str,
           channel: paramiko.Channel) -> None:
    if not transport.is_active():
        raise ConnectionLostError(f"the SSH connection to {host} ended during a command")
    if time.monotonic() > deadline:
        channel.close()
        raise PrepTimeoutError(f"a command on {host} did not finish in time (--timeout)")


def _drain(channel: paramiko.Channel, deadline: float, host: str) -> tuple[bytes, bytes]:
    """Read both streams until the remote's EOF (no thread, no deadlock on full buffers).

    paramiko's own thread may take in EOF and CLOSE between any two lines here, so
    ``closed`` is read *before* the buffers are emptied: a channel seen closed then has no
    more data to come, and it ended well exactly when its EOF had arrived.
    """
    out: list[bytes] = []
    err: list[bytes] = []
    transport = channel.get_transport()
    while True:
        closed = channel.closed
        progressed = False
        while channel.recv_ready():
            out.append(channel.recv(65536))
            progressed = True
        while channel.recv_stderr_ready():
            err.append(channel.recv_stderr(65536))
            progressed = True
        if channel.eof_received and not channel.recv_ready() and not channel.recv_stderr_ready():
            return b"".join(out), b"".join(err)
        if closed:
            raise ConnectionLostError(f"the SSH channel to {host} closed before its output ended")
        if not progressed:
            _check(transport, deadline, host, channel)
            time.sleep(_POLL_SECONDS)

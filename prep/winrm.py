"""WinRM transport: runs PowerShell scripts on a Windows guest through pywinrm.

HTTPS on 5986 with certificate validation is the default. Plain HTTP and skipping
validation exist only as explicit choices, and basic auth over plain HTTP is refused
(the password would cross the network in clear text).

Windows limits a command line to 8191 characters and ``powershell -EncodedCommand``
spends about 2.7 characters per script character, so scripts past a few KB cannot go on
the command line (pywinrm's ``run_ps`` breaks there). Longer scripts are sent through the
command's stdin stream instead: a short loader on the command line reads base64 text
from stdin to its end, decodes it and runs it.

What comes back is made readable here: the shell is opened with code page 65001 (UTF-8)
instead of pywinrm's default 437, so non-ASCII user names, package names and log lines
survive, and stderr, which PowerShell writes as CLIXML for an encoded command, is decoded
into the plain error lines (see ``clixml``).
"""
from __future__ import annotations

import base64
import contextlib
import time
from dataclasses import dataclass
from typing import Literal

import requests
from winrm.exceptions import (
    InvalidCredentialsError,
    WinRMError,
    WinRMOperationTimeoutError,
    WinRMTransportError,
)
from winrm.protocol import Protocol

from .clixml import decode_clixml
from .errors import (
    ConnectError,
    HostKeyError,
    PrepTimeoutError,
    PrepUsageError,
    RemoteAuthError,
    RemoteCommandError,
)
from .transport import RunResult

AuthTransport = Literal["ntlm", "kerberos", "credssp", "basic"]
AUTH_TRANSPORTS: tuple[str, ...] = ("ntlm", "kerberos", "credssp", "basic")

HTTPS_PORT = 5986
HTTP_PORT = 5985
# cmd.exe's limit is 8191 characters; keep a margin for the executable name and flags.
COMMAND_LINE_LIMIT = 8000
# Base64 text sent per WS-Management Send message (well under the 150 KB envelope limit).
STDIN_CHUNK = 48 * 1024

POWERSHELL = "powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass"
# The shell's code page: UTF-8, so that what PowerShell prints arrives as UTF-8.
UTF8_CODEPAGE = 65001
# Every script sent starts with these lines. Progress records (module autoload's "Preparing
# modules for first use.", Remove-Item's bars) would otherwise fill stderr as CLIXML; the
# output encoding is set again from inside in case the code page did not take.
POWERSHELL_PREAMBLE = (
    "$ProgressPreference = 'SilentlyContinue'\n"
    "try { [Console]::OutputEncoding = New-Object System.Text.UTF8Encoding $false } catch { }\n"
)
STDIN_LOADER_MARKER = "# azlift-stdin-loader"
STDIN_LOADER = (
    STDIN_LOADER_MARKER + "\n"
    + POWERSHELL_PREAMBLE +
    "$ErrorActionPreference = 'Stop'\n"
    "$payload = [Console]::In.ReadToEnd()\n"
    "$text = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($payload.Trim()))\n"
    "& ([ScriptBlock]::Create($text))\n"
    "exit $LASTEXITCODE\n"
)


def encoded_command_line(script: str) -> str:
    """The ``powershell -EncodedCommand`` line for ``script`` (base64 of UTF-16LE)."""
    encoded = base64.b64encode(script.encode("utf-16-le")).decode("ascii")
    return f"{POWERSHELL} -EncodedCommand {encoded}"


def fits_command_line(script: str) -> bool:
    """Whether ``script`` can travel on the command line itself."""
    return len(encoded_command_line(script)) <= COMMAND_LINE_LIMIT


@dataclass(frozen=True)
class WinRMSettings:
    """How to reach the guest: endpoint, authentication and TLS trust."""

    host: str
    user: str
    port: int | None = None
    transport: str = "ntlm"
    use_http: bool = False
    ca_cert: str | None = None
    verify_tls: bool = True
    read_timeout: int = 60
    operation_timeout: int = 20

    @property
    def scheme(self) -> str:
        return "http" if self.use_http else "https"

    @property
    def endpoint(self) -> str:
        port = self.port or (HTTP_PORT if self.use_http else HTTPS_PORT)
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{port}/wsman"

    def validate(self) -> None:
        """Refuse combinations that would leak the password or make no sense."""
        if self.transport not in AUTH_TRANSPORTS:
            raise PrepUsageError(f"--transport: expected one of {', '.join(AUTH_TRANSPORTS)}, "
                                 f"found {self.transport!r}")
        if self.use_http and self.transport == "basic":
            raise PrepUsageError("basic auth over plain HTTP would send the password in clear "
                                 "text: use HTTPS (drop --http) or --transport ntlm/kerberos")
        if self.use_http and self.ca_cert:
            raise PrepUsageError("--ca-cert applies to HTTPS only; drop --http or --ca-cert")
        if self.ca_cert and not self.verify_tls:
            raise PrepUsageError("--ca-cert and --insecure-skip-tls-verify exclude each other: "
                                 "with the CA the certificate can be checked, so drop the latter")
        if not self.user:
            raise PrepUsageError("a user name is required (--user)")
        missing = _missing_auth_package(self.transport)
        if missing:
            raise PrepUsageError(f"--transport {self.transport} needs the Python package "
                                 f"{missing}, which is not installed (pip install "
                                 f"'pywinrm[{self.transport}]'), or pick another --transport")

    def warnings(self) -> list[str]:
        """Every weakening the user chose, to be printed on every run."""
        found = []
        if self.use_http:
            found.append(f"--http: talking to {self.host} over plain HTTP; the session is only "
                         "as private as the authentication transport's own encryption")
        if not self.use_http and not self.verify_tls:
            found.append(f"--insecure-skip-tls-verify: the certificate of {self.host} is not "
                         "checked; anyone on the path can impersonate it and read the password")
        return found


def _missing_auth_package(transport: str) -> str | None:
    """The package pywinrm needs for ``transport`` when it is absent, else None."""
    from winrm import transport as winrm_transport

    if transport == "kerberos" and not winrm_transport.HAVE_KERBEROS:
        return "pykerberos (or winkerberos)"
    if transport == "credssp" and not winrm_transport.HAVE_CREDSSP:
        return "requests-credssp"
    return None


class WinRMRemote:
    """A Windows guest reached over WS-Management; ``run`` executes a PowerShell script."""

    def __init__(self, settings: WinRMSettings, password: str) -> None:
        settings.validate()
        self.settings = settings
        self.host = settings.host
        if not settings.verify_tls:
            # The warning the user chose is printed by the caller; urllib3's per-request
            # warning would only repeat it on every poll.
            import urllib3
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        try:
            self._protocol = Protocol(
                settings.endpoint,
                transport=settings.transport,  # type: ignore[arg-type]
                username=settings.user,
                password=password,
                server_cert_validation="validate" if settings.verify_tls else "ignore",
                ca_trust_path=settings.ca_cert if settings.ca_cert else None,  # type: ignore[arg-type]
                read_timeout_sec=settings.read_timeout,
                operation_timeout_sec=settings.operation_timeout,
                proxy=None,
            )
        except WinRMError as error:
            raise ConnectError(f"cannot set up WinRM to {self.host}: {error}") from error

    def run(self, command: str, stdin: bytes | None = None,
            timeout: float | None = None) -> RunResult:
        """Run the PowerShell script ``command``; long scripts travel through stdin."""
        if stdin is None and fits_command_line(command):
            command_line, payload = encoded_command_line(command), None
        elif stdin is None:
            command_line = encoded_command_line(STDIN_LOADER)
            payload = base64.b64encode(command.encode("utf-8"))
        else:
            if not fits_command_line(command):
                raise PrepUsageError("a script that needs stdin must fit on the command line "
                                     f"(at most {COMMAND_LINE_LIMIT} characters encoded)")
            command_line, payload = encoded_command_line(command), stdin
        with _translated_errors(self.settings):
            return self._run_in_shell(command_line, payload, timeout)

    def close(self) -> None:
        self._protocol.transport.close_session()

    def _run_in_shell(self, command_line: str, payload: bytes | None,
                      timeout: float | None) -> RunResult:
        protocol = self._protocol
        shell_id = protocol.open_shell(codepage=UTF8_CODEPAGE)
        try:
            # Console-mode stdin would hand the payload to the console line by line;
            # a plain pipe lets the loader read it to its end.
            command_id = protocol.run_command(shell_id, command_line,
                                              console_mode_stdin=payload is None)
            if payload is not None:
                self._send_stdin(shell_id, command_id, payload)
            stdout, stderr, exit_code = self._collect(shell_id, command_id, timeout)
            protocol.cleanup_command(shell_id, command_id)
        except BaseException:
            # Report what went wrong, not the failure to close a shell on a host that is gone.
            with contextlib.suppress(Exception):
                protocol.close_shell(shell_id, close_session=False)
            raise
        protocol.close_shell(shell_id, close_session=False)
        return RunResult(exit_code, stdout.decode("utf-8", "replace"),
                         decode_clixml(stderr.decode("utf-8", "replace")))

    def _send_stdin(self, shell_id: str, command_id: str, payload: bytes) -> None:
        chunks = [payload[i:i + STDIN_CHUNK] for i in range(0, len(payload), STDIN_CHUNK)] or [b""]
        for index, chunk in enumerate(chunks):
            self._protocol.send_command_input(shell_id, command_id, chunk,
                                              end=index == len(chunks) - 1)

    def _collect(self, shell_id: str, command_id: str,
                 timeout: float | None) -> tuple[bytes, bytes, int]:
        deadline = None if timeout is None else time.monotonic() + timeout
        out, err = bytearray(), bytearray()
        while True:
            try:
                stdout, stderr, code, done = self._protocol.get_command_output_raw(
                    shell_id, command_id)
            except WinRMOperationTimeoutError:
                stdout, stderr, code, done = b"", b"", -1, False
            out += stdout
            err += stderr
            if done:
                return bytes(out), bytes(err), code
            if deadline is not None and time.monotonic() > deadline:
                raise PrepTimeoutError(f"the command on {self.host} did not finish within "
                                       f"{timeout:g} s")


class _translated_errors:
    """Turns pywinrm and requests failures into the prep package's typed errors."""

    def __init__(self, settings: WinRMSettings) -> None:
        self.settings = settings

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, error: BaseException | None, _tb: object) -> bool:
        if error is None or not isinstance(error, Exception):
            return False
        host, endpoint = self.settings.host, self.settings.endpoint
        if isinstance(error, InvalidCredentialsError):
            raise RemoteAuthError(f"{host} refused the credentials of {self.settings.user!r} "
                                  f"({self.settings.transport})") from error
        if isinstance(error, requests.exceptions.SSLError):
            raise HostKeyError(f"the TLS certificate of {endpoint} is not trusted ({_reason(error)});"
                               " pass --ca-cert FILE with the CA that signed it") from error
        if isinstance(error, requests.exceptions.InvalidURL):
            raise PrepUsageError(f"HOST/--port: expected a host name or address and a port "
                                 f"1-65535, found {endpoint} ({_reason(error)})") from error
        if isinstance(error, requests.exceptions.RequestException):
            raise ConnectError(f"cannot reach WinRM at {endpoint}: {_reason(error)}") from error
        if isinstance(error, WinRMTransportError):  # an HTTP error without a SOAP fault:
            # what HTTP.sys answers once the WinRM service has stopped (a shutdown under way)
            raise ConnectError(f"WinRM at {endpoint} answered HTTP "
                               f"{getattr(error, 'code', '?')} without a WS-Management "
                               f"answer") from error
        if isinstance(error, WinRMError):
            raise RemoteCommandError(f"WinRM request to {endpoint} failed: {error}") from error
        if isinstance(error, AssertionError):  # pywinrm checks RelatesTo with assert
            raise RemoteCommandError(f"{endpoint} answered with a mismatched RelatesTo") from error
        return False


def _reason(error: BaseException) -> str:
    """The innermost readable cause of a requests error, on one line."""
    text = str(error)
    while error.__context__ is not None and not str(error.__context__) == "":
        error = error.__context__
        text = str(error)
    return " ".join(text.split())[:300]

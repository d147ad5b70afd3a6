"""A WS-Management endpoint that models a Windows machine, for the real pywinrm client.

Fixtures (import them into a test module or conftest): ``wsman_certificate``,
``windows_machine``, ``wsman`` (the endpoint over HTTPS with basic auth) and ``wsman_ntlm``
(over plain HTTP with NTLM and message encryption, the default transport's path), each
started and stopped per test.

It speaks the SOAP protocol pywinrm uses (transfer/Create, shell/Command, shell/Send,
shell/Receive until CommandState Done, shell/Signal, transfer/Delete, RelatesTo on every
reply) over HTTP or HTTPS, with basic auth or with a real NTLM acceptor (``wsman_ntlm``).
It cannot run PowerShell, so it recognizes
azlift's scripts by their ``# azlift-script: NAME`` marker and answers from a
``WindowsMachine`` state the way the script would on Windows: the check script gets raw
facts (registry values, service start types, AppX lists), never findings. Sysprep moves the
image state through a scripted sequence; the shutdown drops the connection and stops
listening. A command line longer than Windows' 8191 characters fails as on Windows.

What comes back is shaped the way Windows PowerShell 5.1 (powershell.exe over WinRM on
Server 2016-2025) really emits it, each as a named fixture below:
- stdout in the shell's code page: code page 437 (pywinrm's default) when the shell was not
  opened with 65001, so characters outside it arrive as "?" (``console_bytes``);
- stderr as CLIXML with progress records and escaped error records (``clixml_stderr``);
  module autoload's progress record appears unless the script silenced progress first;
- ``Get-Content`` strings passed straight to ConvertTo-Json serialized with their note
  properties (``ps51_get_content_json``);
- Sysprep started as whatever account the script asks for (the scheduled-task principal, or
  the connecting user through Win32_Process.Create), its process showing up late in some
  scenarios, and the faults a shutting-down WinRM service answers with.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import ssl
import threading
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# 5.1's JSON shape of a Get-Content string: one fixture, shared with the findings tests.
from tests.prep.windows.ps51_shapes import get_content_string as ps51_get_content_json
from tests.support import wsman_ntlm as ntlm
from tests.support.wsman_ntlm import NtlmConnection

# One self-signed certificate maker for the suite's HTTPS fakes (CA flag, SAN 127.0.0.1).
from tests.support.tls_ca import self_signed as make_certificate  # noqa: F401

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
}
SHELL_NS = NS["rsp"]
WINDOWS_COMMAND_LINE_LIMIT = 8191
DONE = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Done"
RUNNING = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Running"
ENV = {"$env:WINDIR": "C:\\Windows", "$env:SystemDrive": "C:"}

TEST_USER = "azureadmin"
TEST_PASSWORD = "Pa55-w0rd-never-printed"
APPX_FAILURE_PACKAGE = "Microsoft.BingWeather_4.53.51361.0_x64__8wekyb3d8bbwe"

BCD_BOOTMGR_GOOD = """Windows Boot Manager
--------------------
identifier              {bootmgr}
device                  partition=\\Device\\HarddiskVolume1
description             Windows Boot Manager
locale                  en-US
integrityservices       Enable
default                 {current}
displayorder            {current}
displaybootmenu         Yes
timeout                 5
bootems                 Yes
"""
BCD_DEFAULT_GOOD = """Windows Boot Loader
-------------------
identifier              {current}
device                  partition=C:
path                    \\Windows\\system32\\winload.exe
description             Windows Server
locale                  en-US
integrityservices       Enable
recoveryenabled         No
osdevice                partition=C:
systemroot              \\Windows
bootstatuspolicy        IgnoreAllFailures
ems                     Yes
"""
BCD_EMSSETTINGS_GOOD = """EMS Settings
------------
identifier              {emssettings}
bootems                 Yes
emsport                 1
emsbaudrate             115200
"""


def _log_line(kind: str, text: str, when: datetime) -> str:
    return f"{when:%Y-%m-%d %H:%M:%S}, {kind:<18}{text}"


def appx_failure_logs() -> tuple[str, str]:
    """setuperr.log / setupact.log as Sysprep writes them when an AppX package blocks it."""
    t = datetime(2026, 11, 26, 10, 0, 0, tzinfo=timezone.utc)
    err = "\n".join([
        _log_line("Error", f"SYSPRP Package {APPX_FAILURE_PACKAGE} was installed for a user, "
                  "but not provisioned for all users. This package will not function properly "
                  "in the sysprep image.", t),
        _log_line("Error", "SYSPRP Failed to remove apps for the current user: 0x80073cf2.", t),
        _log_line("Error", "SYSPRP Exit code of RemoveAllApps thread was 0x3cf2.", t),
        _log_line("Error", "SYSPRP ActionPlatform::LaunchModule: Failure occurred while "
                  "executing 'SysprepGeneralizeValidate' from C:\\Windows\\System32\\AppxSysprep.dll;"
                  " dwRet = 0x3cf2", t),
        _log_line("Error", "SYSPRP SysprepSession::Validate: Error in validating actions from "
                  "C:\\Windows\\System32\\Sysprep\\ActionFiles\\Generalize.xml; dwRet = 0x3cf2", t),
    ]) + "\n"
    act = "\n".join([_log_line("Info", f"SYSPRP line {i} of the generalize pass",
                               t + timedelta(seconds=i)) for i in range(300)]
                    + [_log_line("Error", "SYSPRP RunPlatformActions:Failed while validating "
                                 "Sysprep session actions; dwRet = 0x3cf2", t)]) + "\n"
    return err, act


def stuck_logs() -> tuple[str, str]:
    t = datetime(2026, 11, 26, 10, 0, 0, tzinfo=timezone.utc)
    act = "\n".join([_log_line("Info", f"SYSPRP specialize pass step {i}", t) for i in range(80)]
                    + [_log_line("Error", "[0x0f0082] SYSPRP Setup did not reach the "
                                 "generalize state: a service did not stop in time", t)]) + "\n"
    return "", act


def upgrade_block_logs() -> tuple[str, str]:
    """The logs of a Sysprep that refuses to run at all and exits at once, image untouched."""
    t = datetime(2026, 11, 26, 10, 0, 0, tzinfo=timezone.utc)
    err = _log_line("Error", "[0x0f0036] SYSPRP spopk.dll:: Sysprep will not run on an "
                    "upgraded OS. You can only run Sysprep on a custom (clean) install "
                    "version of Windows.", t) + "\n"
    return err, err


# Windows PowerShell 5.1 writes these for an encoded command with redirected stderr
# (ConsoleHost: not interactive, stderr redirected, command encoded): a CLIXML document.
CLIXML_NS = "http://schemas.microsoft.com/powershell/2004/04"
CLIXML_MODULE_PROGRESS = (
    '<Obj S="progress" RefId="0"><TN RefId="0"><T>System.Management.Automation.PSCustomObject'
    "</T><T>System.Object</T></TN><MS><I64 N=\"SourceId\">1</I64><PR N=\"Record\">"
    "<AV>Preparing modules for first use.</AV><AI>0</AI><Nil /><PI>-1</PI><PC>-1</PC>"
    "<T>Completed</T><SR>-1</SR><SD> </SD></PR></MS></Obj>")
# Cmdlets whose first use in a session autoloads a module and reports progress doing so.
AUTOLOADING_CMDLETS = ("ScheduledTask", "CimInstance", "CimMethod", "CimClass", "Appx",
                       "NetFirewall", "StorageSetting", "BitLocker", "WSManInstance")


def clixml_escape(text: str) -> str:
    """PowerShell's CLIXML string escaping: XML entities, control characters as _xHHHH_."""
    text = (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("_x", "_x005F_x"))
    return "".join(f"_x{ord(c):04X}_" if ord(c) < 32 else c for c in text)


def clixml_stderr(error_record: str = "", progress: bool = True) -> str:
    """stderr as 5.1 writes it: ``#< CLIXML``, then progress records, then one ``<S S="Error">``
    element per line of the error record (each line ending in an escaped CR LF)."""
    parts = [CLIXML_MODULE_PROGRESS] if progress else []
    for line in error_record.splitlines():
        parts.append(f'<S S="Error">{clixml_escape(line + chr(13) + chr(10))}</S>')
    return f'#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="{CLIXML_NS}">{"".join(parts)}</Objs>'


def error_record(command: str, message: str, category: str, error_id: str,
                 line: str) -> str:
    """How 5.1 formats a terminating error for the console: message, position, category."""
    return (f"{command} : {message}\n"
            f"At line:12 char:5\n"
            f"+     {line}\n"
            f"+     {'~' * len(line)}\n"
            f"    + CategoryInfo          : {category}\n"
            f"    + FullyQualifiedErrorId : {error_id}\n")


LOCKED_PANTHER_ERROR = error_record(
    "Remove-Item", "Cannot remove item C:\\Windows\\Panther\\setupact.log: The process cannot "
    "access the file 'C:\\Windows\\Panther\\setupact.log' because it is being used by another "
    "process.", "WriteError: (setupact.log:FileInfo) [Remove-Item], IOException",
    "RemoveFileSystemItemIOError,Microsoft.PowerShell.Commands.RemoveItemCommand",
    "Remove-Item -LiteralPath $panther -Recurse -Force")


def console_bytes(text: str, codepage: int) -> bytes:
    """What a console program's output becomes in the shell's code page: UTF-8 under 65001,
    else the OEM code page, where characters it lacks turn into "?"."""
    if codepage == 65001:
        return text.encode("utf-8")
    return text.encode(f"cp{codepage}", "replace")


# check.ps1's output on a ready Server 2022, as Windows PowerShell 5.1 prints it.
READY_CHECK_DOCUMENT = (Path(__file__).resolve().parents[1] / "prep" / "windows" / "fixtures"
                        / "check_ps51_server2022_ready.json")

@dataclass
class WindowsMachine:
    """The modelled guest: raw state, as the Windows APIs would report it."""

    is_admin: bool = True
    os_caption: str = "Microsoft Windows Server 2022 Datacenter"
    bitlocker_available: bool = True
    bitlocker_protection: str = "Off"
    bitlocker_volume_status: str = "FullyDecrypted"
    reboot_pending_cbs: bool = False
    reboot_pending_windows_update: bool = False
    pending_file_renames: list[str] = field(default_factory=list)
    appx_installed: list[dict[str, Any]] = field(default_factory=lambda: [
        {"name": "Microsoft.Windows.ShellExperienceHost",
         "full_name": "Microsoft.Windows.ShellExperienceHost_10.0.20348.1_neutral_neutral_cw5n1h2txyewy",
         "is_framework": False, "non_removable": True, "signature_kind": "System",
         "users": ["WIN\\Administrator"]},
        {"name": "Microsoft.VCLibs.140.00",
         "full_name": "Microsoft.VCLibs.140.00_14.0.30704.0_x64__8wekyb3d8bbwe",
         "is_framework": True, "non_removable": False, "signature_kind": "Store",
         "users": ["WIN\\Administrator"]},
        {"name": "Microsoft.WindowsCalculator",
         "full_name": "Microsoft.WindowsCalculator_11.2210.0.0_x64__8wekyb3d8bbwe",
         "is_framework": False, "non_removable": False, "signature_kind": "Store",
         "users": ["WIN\\Administrator"]},
    ])
    appx_provisioned: list[str] = field(default_factory=lambda: ["Microsoft.WindowsCalculator"])
    files: set[str] = field(default_factory=set)
    registry: dict[str, Any] = field(default_factory=lambda: {
        "fDenyTSConnections": 0, "policy_fDenyTSConnections": None, "PortNumber": 3389,
        "UserAuthentication": 1, "LanAdapter": 0, "RealTimeIsUniversal": 1, "cdrom.Start": 1,
        "PagingFiles": ["C:\\pagefile.sys 0 0"], "SkipRearm": 0, "GeneralizationState": 7,
        "ImageState": "IMAGE_STATE_COMPLETE",
    })
    firewall_profiles: dict[str, bool] = field(default_factory=lambda: {
        "Domain": True, "Private": True, "Public": True})
    firewall_rules: list[dict[str, Any]] = field(default_factory=lambda: [
        {"name": "RemoteDesktop-UserMode-In-TCP", "group": "@FirewallAPI.dll,-28752",
         "display_group": "Remote Desktop", "enabled": True, "profile": "Any", "action": "Allow"},
        {"name": "WINRM-HTTP-In-TCP", "group": "@FirewallAPI.dll,-35001",
         "display_group": "Windows Remote Management", "enabled": True, "profile": "Domain, Private",
         "action": "Allow"},
        *({"name": name, "display_name": "AzurePlatform", "group": "", "direction": direction,
           "enabled": True, "action": "Allow", "profile": "Any", "protocol": "Any",
           "local_ports": ["Any"], "remote_addresses": ["168.63.129.16"]}
          for name, direction in (("AzurePlatform-In", "Inbound"),
                                  ("AzurePlatform-Out", "Outbound"))),
    ])
    winrm_listeners: list[dict[str, Any]] = field(default_factory=lambda: [
        {"transport": "HTTPS", "port": 5986, "enabled": True, "address": "*"}])
    san_policy: str = "OnlineAll"
    services: dict[str, str] = field(default_factory=lambda: {
        **{name: "Automatic" for name in ("BFE", "Dhcp", "Dnscache", "IKEEXT", "iphlpsvc", "nsi",
                                          "mpssvc", "RemoteRegistry", "w32time", "WinRM",
                                          "WindowsAzureGuestAgent", "RdAgent")},
        **{name: "Manual" for name in ("Netlogon", "Netman", "TermService")}})
    bcd_bootmgr: str = BCD_BOOTMGR_GOOD
    bcd_default: str = BCD_DEFAULT_GOOD
    bcd_emssettings: str = BCD_EMSSETTINGS_GOOD
    automatic_pagefile: bool = False
    remaining_rearm: int | None = 1001
    # success | stuck | appx_failure | late_start | already_generalized | never_starts |
    # exits_at_once
    sysprep_scenario: str = "success"
    # drop: the connection dies | fault: WinRM answers a SOAP fault | http_503: HTTP.sys
    # answers 503 with no SOAP body (the WinRM service has stopped) | in_progress:
    # shutdown.exe says a shutdown is already under way (exit 1115)
    shutdown_answer: str = "drop"
    setuperr_log: str | None = None
    setupact_log: str | None = None
    computer_name: str = "WIN"
    panther_locked: bool = False  # a file under C:\Windows\Panther is open elsewhere
    process_create_return: int = 0  # Win32_Process.Create's ReturnValue
    scheduled_tasks: set[str] = field(default_factory=set)
    # what happened to the machine
    panther_deleted: bool = False
    sysprep_arguments: list[str] | None = None
    sysprep_account: str | None = None
    image_state_polls: int = 0
    powered_off: bool = False

    def facts(self, service_names: list[str], unattend_candidates: list[str]) -> dict[str, Any]:
        """What check.ps1 prints on this machine (it asks for these services and files):
        a ready Server 2022's whole document, as 5.1 prints it, with this machine's knobs
        laid over it, so every section the script writes is there."""
        document = json.loads(READY_CHECK_DOCUMENT.read_text(encoding="utf-8-sig"))
        for key, value in self._knob_facts(service_names, unattend_candidates).items():
            if isinstance(value, dict) and isinstance(document.get(key), dict):
                document[key] = {**document[key], **value}
            else:
                document[key] = value
        return document

    def _knob_facts(self, service_names: list[str],
                    unattend_candidates: list[str]) -> dict[str, Any]:
        reg = self.registry
        return {
            "is_admin": self.is_admin,
            "os": {"caption": self.os_caption, "version": "10.0.20348", "system_drive": "C:"},
            "bitlocker": ({"available": True, "protection_status": self.bitlocker_protection,
                           "volume_status": self.bitlocker_volume_status}
                          if self.bitlocker_available else {"available": False}),
            "pending_reboot": {"cbs": self.reboot_pending_cbs,
                               "windows_update": self.reboot_pending_windows_update,
                               "pending_file_renames": list(self.pending_file_renames)},
            "appx": {"installed": self.appx_installed, "provisioned": self.appx_provisioned},
            "unattend_files": [p for p in unattend_candidates
                               if p.lower() in {f.lower() for f in self.files}],
            "rdp": {"deny_connections": reg.get("fDenyTSConnections"),
                    "policy_deny_connections": reg.get("policy_fDenyTSConnections"),
                    "port": reg.get("PortNumber"), "user_authentication": reg.get("UserAuthentication"),
                    "lan_adapter": reg.get("LanAdapter")},
            "firewall": {"profiles": [{"name": k, "enabled": v}
                                      for k, v in self.firewall_profiles.items()],
                         "rules": self.firewall_rules},
            "winrm": {"listeners": self.winrm_listeners},
            "san_policy": self.san_policy,
            "real_time_is_universal": reg.get("RealTimeIsUniversal"),
            "services": {name: self.services.get(name) for name in service_names},
            "bcd": {"bootmgr": self.bcd_bootmgr, "default": self.bcd_default,
                    "emssettings": self.bcd_emssettings},
            "pagefile": {"paging_files": reg.get("PagingFiles") or [],
                         "automatic": self.automatic_pagefile},
            "cdrom_start": reg.get("cdrom.Start"),
            "rearm": {"remaining": self.remaining_rearm, "skip_rearm": reg.get("SkipRearm"),
                      "generalization_state": reg.get("GeneralizationState")},
            "image_state": reg.get("ImageState"),
        }

    def next_image_state(self) -> tuple[str, bool]:
        """Advance Sysprep's scripted sequence by one poll: (ImageState, sysprep running)."""
        if self.sysprep_arguments is None:
            return self.registry["ImageState"], False
        self.image_state_polls += 1
        n = self.image_state_polls
        if self.sysprep_scenario == "success":
            state, running = (("IMAGE_STATE_UNDEPLOYABLE", True) if n < 3 else
                              ("IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE", False))
        elif self.sysprep_scenario == "stuck":  # Sysprep hangs and never ends
            state, running = "IMAGE_STATE_UNDEPLOYABLE", True
            if n == 2:
                self._append_logs(*stuck_logs())
        elif self.sysprep_scenario == "late_start":
            # A failed earlier run left the image undeployable; sysprep.exe shows up late.
            state, running = (("IMAGE_STATE_UNDEPLOYABLE", n == 4) if n < 5 else
                              ("IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE", False))
        elif self.sysprep_scenario == "already_generalized":
            # An earlier /quit run left the image generalized and was never shut down; this
            # run's sysprep.exe shows up two polls late, then generalizes it again.
            state, running = (("IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE", False) if n < 3 else
                              ("IMAGE_STATE_UNDEPLOYABLE", True) if n < 5 else
                              ("IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE", False))
        elif self.sysprep_scenario == "exits_at_once":
            # Sysprep starts, refuses within seconds and leaves the image as it was.
            state, running = self.registry["ImageState"], False
            if n == 1:
                self._append_logs(*upgrade_block_logs())
        elif self.sysprep_scenario == "never_starts":
            # Sysprep refuses at once and leaves the image as it was.
            state, running = self.registry["ImageState"], False
            if n == 1:
                self._append_logs(*upgrade_block_logs())
        elif self.sysprep_scenario == "appx_failure":
            state, running = ("IMAGE_STATE_UNDEPLOYABLE", n < 2)
            if n == 2:
                self._append_logs(*appx_failure_logs())
        else:
            raise ValueError(self.sysprep_scenario)
        self.registry["ImageState"] = state
        return state, running

    def sysprep_visible_at_start(self) -> bool:
        """Whether sysprep.exe is already in the process list right after it was created."""
        return self.sysprep_scenario in ("success", "stuck", "appx_failure", "exits_at_once")

    def _append_logs(self, setuperr: str, setupact: str) -> None:
        """Sysprep appends to setuperr.log / setupact.log; earlier runs' lines stay."""
        self.setuperr_log = (self.setuperr_log or "") + setuperr
        self.setupact_log = (self.setupact_log or "") + setupact


@dataclass
class _Command:
    command_line: str
    script: str | None = None
    stdin: bytearray = field(default_factory=bytearray)
    stdin_done: bool = False
    result: tuple[str, str, int] | None = None
    name: str = ""


@dataclass
class _Shell:
    codepage: int
    commands: dict[str, _Command] = field(default_factory=dict)


def _params(script_text: str) -> dict[str, Any]:
    """``$Name = literal`` lines and ``$Name = @(...)`` arrays, with $env: expanded."""
    found: dict[str, Any] = {}
    for name, value in re.findall(r"^\$(\w+) = (.+)$", script_text, re.MULTILINE):
        value = value.strip()
        if value.startswith("@("):
            items = re.findall(r"'((?:[^']|'')*)'|\"([^\"]*)\"", value)
            found[name] = [_expand(a.replace("''", "'") if a else b) for a, b in items]
        elif value.startswith("'"):
            found[name] = value[1:-1].replace("''", "'")
        elif re.fullmatch(r"-?\d+", value):
            found[name] = int(value)
    return found


def _expand(text: str) -> str:
    for key, value in ENV.items():
        text = text.replace(key, value)
    return text


class FakeWSMan:
    """The endpoint: start() in a thread, url, the requests it saw, the machine it models."""

    def __init__(self, machine: WindowsMachine | None = None, *, user: str = "azureadmin",
                 password: str = "", certfile: Path | None = None, keyfile: Path | None = None,
                 auth: str = "basic") -> None:
        self.machine = machine or WindowsMachine()
        self.user, self.password = user, password
        # basic: the Authorization header on every request | ntlm: a real NTLM acceptor
        # (tests.support.wsman_ntlm) against NTLM_USER_FILE, messages sealed over plain HTTP
        self.auth = auth
        self.ntlm_logins: list[str] = []  # the client principal of each NTLM handshake
        self.sealed_requests = 0  # requests that arrived encrypted
        self.plaintext_refused = 0  # unencrypted SOAP over HTTP after NTLM, refused
        self.certfile, self.keyfile = certfile, keyfile
        self.actions: list[str] = []  # "Create", "Command:NAME", "Send", "Receive", ...
        self.scripts: list[str] = []  # script names in the order they ran
        self.script_texts: list[str] = []
        self.command_lines: list[str] = []
        self.console_mode_stdin: list[bool] = []  # WINRS_CONSOLEMODE_STDIN per command
        self.codepages: list[int] = []  # WINRS_CODEPAGE of each shell opened
        self.progress_records_sent = 0  # CLIXML progress records written to stderr
        self.auth_failures = 0
        self._power_off_when_closed = False
        self._shells: dict[str, _Shell] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- lifecycle -------------------------------------------------------------------
    @property
    def scheme(self) -> str:
        return "https" if self.certfile else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/wsman"

    def start(self) -> "FakeWSMan":
        handler = type("Handler", (_Handler,), {"fake": self})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        if self.certfile:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(self.certfile), str(self.keyfile))
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def power_off(self) -> None:
        """Stop listening, as a Windows host does while it shuts down."""
        self.machine.powered_off = True
        threading.Thread(target=self.stop, daemon=True).start()

    # -- WS-Management ---------------------------------------------------------------
    def handle(self, body: bytes) -> tuple[int, bytes | None]:
        root = ET.fromstring(body)
        action = root.findtext("s:Header/a:Action", namespaces=NS) or ""
        message_id = root.findtext("s:Header/a:MessageID", namespaces=NS) or ""
        shell_id = None
        for selector in root.iterfind("s:Header/w:SelectorSet/w:Selector", NS):
            if selector.get("Name") == "ShellId":
                shell_id = selector.text
        verb = action.rsplit("/", 1)[-1]
        with self._lock:
            if verb == "Create":
                self.actions.append("Create")
                shell_id = str(uuid.uuid4()).upper()
                codepage = 437  # winrs' default when the client names none
                for option in root.iterfind("s:Header/w:OptionSet/w:Option", NS):
                    if option.get("Name") == "WINRS_CODEPAGE":
                        codepage = int(option.text or 437)
                self.codepages.append(codepage)
                self._shells[shell_id] = _Shell(codepage)
                return 200, _envelope(action + "Response", message_id, _created(shell_id))
            shell = self._shells.get(shell_id or "")
            if shell is None:
                return 500, _fault(message_id, "The request for the Windows Remote Shell with "
                                   "ShellId was not found")
            if verb == "Command":
                return self._command(shell, root, action, message_id)
            if verb == "Send":
                return self._send(shell, root, action, message_id)
            if verb == "Receive":
                return self._receive(shell, root, action, message_id)
            if verb == "Signal":
                self.actions.append("Signal")
                return 200, _envelope(action + "Response", message_id,
                                      f'<rsp:SignalResponse xmlns:rsp="{SHELL_NS}"/>')
            if verb == "Delete":
                self.actions.append("Delete")
                self._shells.pop(shell_id or "", None)
                if self._power_off_when_closed:
                    self.power_off()
                return 200, _envelope(action + "Response", message_id, "")
        return 500, _fault(message_id, f"unsupported action {action}")

    def _command(self, shell: _Shell, root: ET.Element, action: str,
                 message_id: str) -> tuple[int, bytes]:
        line = (root.findtext("s:Body/rsp:CommandLine/rsp:Command", namespaces=NS) or "").strip()
        arguments = root.findtext("s:Body/rsp:CommandLine/rsp:Arguments", namespaces=NS)
        if arguments:
            line = f"{line} {arguments}"
        command = _Command(command_line=line)
        for option in root.iterfind("s:Header/w:OptionSet/w:Option", NS):
            if option.get("Name") == "WINRS_CONSOLEMODE_STDIN":
                self.console_mode_stdin.append((option.text or "").upper() == "TRUE")
        self.command_lines.append(line)
        command_id = str(uuid.uuid4()).upper()
        shell.commands[command_id] = command
        if len(line) > WINDOWS_COMMAND_LINE_LIMIT:
            command.result = ("", "The command line is too long.\r\n", 1)
            command.name = "too-long"
        else:
            match = re.search(r"-EncodedCommand\s+(\S+)", line, re.IGNORECASE)
            text = base64.b64decode(match.group(1)).decode("utf-16-le") if match else ""
            if text.startswith("# azlift-stdin-loader"):
                command.name = "stdin-loader"
            else:
                command.script = text
                command.stdin_done = True
        self.actions.append(f"Command:{command.name or _script_name(command.script or '')}")
        return 200, _envelope(action + "Response", message_id,
                              f'<rsp:CommandResponse xmlns:rsp="{SHELL_NS}">'
                              f"<rsp:CommandId>{command_id}</rsp:CommandId></rsp:CommandResponse>")

    def _send(self, shell: _Shell, root: ET.Element, action: str,
              message_id: str) -> tuple[int, bytes]:
        self.actions.append("Send")
        stream = root.find("s:Body/rsp:Send/rsp:Stream", NS)
        command = shell.commands.get(stream.get("CommandId", "")) if stream is not None else None
        if command is None or stream is None:
            return 500, _fault(message_id, "unknown CommandId")
        command.stdin += base64.b64decode(stream.text or "")
        if stream.get("End", "false").lower() == "true":
            command.stdin_done = True
            if command.name == "stdin-loader":
                command.script = base64.b64decode(bytes(command.stdin).strip()).decode("utf-8")
        return 200, _envelope(action + "Response", message_id,
                              f'<rsp:SendResponse xmlns:rsp="{SHELL_NS}"/>')

    def _receive(self, shell: _Shell, root: ET.Element, action: str,
                 message_id: str) -> tuple[int, bytes | None]:
        self.actions.append("Receive")
        desired = root.find("s:Body/rsp:Receive/rsp:DesiredStream", NS)
        command_id = desired.get("CommandId", "") if desired is not None else ""
        command = shell.commands.get(command_id)
        if command is None:
            return 500, _fault(message_id, "unknown CommandId")
        if command.result is None and not command.stdin_done:
            return 200, _envelope(action + "Response", message_id, _receive_body(
                command_id, b"", b"", None))
        if command.result is None:
            if _script_name(command.script or "") == "shutdown":
                self.scripts.append("shutdown")
                self.script_texts.append(command.script or "")
                if self.machine.shutdown_answer == "in_progress":
                    # An earlier shutdown is under way: this one is answered, the host goes
                    # down once the shell is closed.
                    command.result = ("", "A system shutdown is in progress.(1115)\r\n", 1115)
                    self._power_off_when_closed = True
                else:
                    self.power_off()
                    if self.machine.shutdown_answer == "fault":
                        return 500, _fault(message_id, "The WS-Management service cannot "
                                           "process the request because the service is "
                                           "shutting down.")
                    if self.machine.shutdown_answer == "http_503":
                        return 503, b"Service Unavailable"
                    return 0, None  # the connection drops: no reply at all
            else:
                command.result = self._run_script(command.script or "")
                command.result = self._with_progress(command.script or "", *command.result)
        out, err, code = command.result
        return 200, _envelope(action + "Response", message_id, _receive_body(
            command_id, console_bytes(out, shell.codepage), console_bytes(err, shell.codepage),
            code))

    def _with_progress(self, text: str, out: str, err: str, code: int) -> tuple[str, str, int]:
        """Module autoload reports progress unless the script silenced it before."""
        silenced = re.search(r"^\$ProgressPreference = 'SilentlyContinue'", text, re.MULTILINE)
        autoloads = any(name in text for name in AUTOLOADING_CMDLETS)
        if silenced or not autoloads:
            return out, err, code
        self.progress_records_sent += 1
        if err.startswith("#< CLIXML"):
            return out, err.replace("\">", "\">" + CLIXML_MODULE_PROGRESS, 1), code
        return out, clixml_stderr(err) if not err else err, code

    # -- the modelled Windows machine ------------------------------------------------
    def _run_script(self, text: str) -> tuple[str, str, int]:
        name = _script_name(text)
        self.scripts.append(name)
        self.script_texts.append(text)
        params = _params(text)
        machine = self.machine
        if name == "check":
            facts = machine.facts(params.get("ServiceNames", []),
                                  params.get("UnattendCandidates", []))
            return _json_out(facts)
        if name == "clean-panther":
            if machine.panther_locked:
                return "", clixml_stderr(LOCKED_PANTHER_ERROR, progress=False), 1
            machine.panther_deleted = True
            machine.setuperr_log = machine.setupact_log = None  # System32\Sysprep\Panther
            machine.files = {f for f in machine.files
                             if not f.lower().startswith("c:\\windows\\panther\\")}
            return "removed C:\\Windows\\Panther\r\n", "", 0
        if name == "start-sysprep":
            return self._start_sysprep(text, params)
        if name == "image-state":
            state, running = machine.next_image_state()
            return _json_out({"image_state": state, "sysprep_running": running})
        if name == "fetch-logs":
            tail = int(params.get("TailLines", 50))
            act = machine.setupact_log
            path = "C:\\Windows\\System32\\Sysprep\\Panther\\setuperr.log"
            setuperr: Any = machine.setuperr_log
            # A string straight from Get-Content keeps its note properties in 5.1; one the
            # script built anew (-join) is a plain string.
            raw_line = re.search(r"^\s*setuperr = (.*)$", text, re.MULTILINE)
            if setuperr is not None and raw_line and "-join" not in raw_line.group(1):
                setuperr = ps51_get_content_json(setuperr, path)
            return _json_out({"setuperr": setuperr,
                              "setupact_tail": None if act is None
                              else "\n".join(act.splitlines()[-tail:])})
        if name == "probe":
            digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
            return _json_out({"sha256": digest, "chars": len(text)})
        if name == "echo":  # prints its $Text parameter, as Write-Output would
            return str(params.get("Text", "")) + "\r\n", "", 0
        return "", f"unknown script {name!r}\r\n", 1

    def _start_sysprep(self, text: str, params: dict[str, Any]) -> tuple[str, str, int]:
        """Sysprep runs as the account the script starts it under: the principal of a
        scheduled task, or the connecting user when WMI's Win32_Process.Create starts it."""
        machine = self.machine
        arguments = list(params.get("SysprepArguments", []))
        if re.search(r"New-ScheduledTaskPrincipal\s+-UserId\s+'SYSTEM'", text):
            machine.sysprep_arguments, machine.sysprep_account = arguments, "NT AUTHORITY\\SYSTEM"
            return "started Sysprep.exe as scheduled task azlift-sysprep\r\n", "", 0
        if "Invoke-CimMethod -ClassName Win32_Process -MethodName Create" not in text:
            return "", "start-sysprep: no way of starting Sysprep the fake knows\r\n", 1
        account = f"{machine.computer_name}\\{self.user}"
        removed = "azlift-sysprep" in machine.scheduled_tasks
        machine.scheduled_tasks.discard("azlift-sysprep")
        document = {"image_state_before": machine.registry["ImageState"], "account": account,
                    "return_value": machine.process_create_return, "process_id": None,
                    "breakaway": False, "running": False, "already_running": False,
                    "removed_task": removed}
        if machine.process_create_return == 0:
            machine.sysprep_arguments, machine.sysprep_account = arguments, account
            document.update(process_id=4242, breakaway=True,
                            running=machine.sysprep_visible_at_start())
        return _json_out(document)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeWSMan
    protocol_version = "HTTP/1.1"

    def log_message(self, *_args: Any) -> None:  # keep test output clean
        return

    ntlm: NtlmConnection | None = None  # per connection: this handler serves one

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.fake.machine.powered_off:  # kept-alive connections die with the host
            self._drop()
            return
        sealed = False
        if self.fake.auth == "ntlm":
            accepted = self._ntlm_accept(body)
            if accepted is None:
                return
            body, sealed = accepted
        elif not self._authorized():
            self.fake.auth_failures += 1
            self._unauthorized('Basic realm="WSMAN"')
            return
        if not body:  # pywinrm's empty POST that sets up message encryption
            self._reply(200, b"", "application/soap+xml;charset=UTF-8")
            return
        status, reply = self.fake.handle(body)
        if reply is None:  # the host went down mid-request
            self._drop()
            return
        if sealed:
            assert self.ntlm is not None
            self._reply(status, self.ntlm.seal(reply), ntlm.CONTENT_TYPE)
        else:
            self._reply(status, reply, "application/soap+xml;charset=UTF-8")

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _unauthorized(self, challenge: str) -> None:
        self.send_response(401)
        self.send_header("WWW-Authenticate", challenge)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _ntlm_accept(self, body: bytes) -> tuple[bytes, bool] | None:
        """The request's SOAP body and whether it came sealed, once this connection is
        authenticated; None when a 401 (challenge or refusal) was sent instead."""
        if self.ntlm is None:
            self.ntlm = NtlmConnection()
        header = self.headers.get("Authorization")
        if header:
            try:
                token = self.ntlm.step(header)
            except ntlm.NtlmRefused:
                self.fake.auth_failures += 1
                self._unauthorized(ntlm.CHALLENGE_HEADER)
                return None
            if token is not None:
                self._unauthorized(f"{ntlm.CHALLENGE_HEADER} {token}")
                return None
            self.fake.ntlm_logins.append(self.ntlm.user)
        if not self.ntlm.authenticated:
            self._unauthorized(ntlm.CHALLENGE_HEADER)
            return None
        if ntlm.is_encrypted(self.headers.get("Content-Type", "")):
            self.fake.sealed_requests += 1
            return self.ntlm.unseal(body), True
        if body and self.fake.scheme == "http":
            # The WinRM service's default (AllowUnencrypted false): plain SOAP over HTTP is
            # refused even on an authenticated connection.
            self.fake.plaintext_refused += 1
            self._reply(400, b"", "text/plain")
            return None
        return body, False

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode("utf-8").partition(":")
        except ValueError:
            return False
        return user == self.fake.user and password == self.fake.password


def _script_name(text: str) -> str:
    match = re.search(r"^# azlift-script: (\S+)", text, re.MULTILINE)
    return match.group(1) if match else "unknown"


def _json_out(document: Any) -> tuple[str, str, int]:
    """5.1's ConvertTo-Json -Compress output: non-ASCII characters written as they are (so
    the code page decides what arrives), ' < > & as \\u escapes, CRLF at the end."""
    text = json.dumps(document, ensure_ascii=False)
    for char in "'<>&":
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text + "\r\n", "", 0


def _envelope(action: str, relates_to: str, body: str) -> bytes:
    return (
        f'<s:Envelope xmlns:s="{NS["s"]}" xmlns:a="{NS["a"]}" xmlns:w="{NS["w"]}">'
        "<s:Header>"
        f"<a:Action>{action}</a:Action>"
        f"<a:MessageID>uuid:{str(uuid.uuid4()).upper()}</a:MessageID>"
        "<a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To>"
        f"<a:RelatesTo>{relates_to}</a:RelatesTo>"
        f"</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    ).encode("utf-8")


def _created(shell_id: str) -> str:
    return (
        '<x:ResourceCreated xmlns:x="http://schemas.xmlsoap.org/ws/2004/09/transfer">'
        "<a:Address>http://127.0.0.1/wsman</a:Address><a:ReferenceParameters>"
        "<w:ResourceURI>http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd</w:ResourceURI>"
        f'<w:SelectorSet><w:Selector Name="ShellId">{shell_id}</w:Selector></w:SelectorSet>'
        "</a:ReferenceParameters></x:ResourceCreated>"
        f'<rsp:Shell xmlns:rsp="{SHELL_NS}"><rsp:ShellId>{shell_id}</rsp:ShellId>'
        "<rsp:InputStreams>stdin</rsp:InputStreams>"
        "<rsp:OutputStreams>stdout stderr</rsp:OutputStreams></rsp:Shell>"
    )


def _receive_body(command_id: str, out: bytes, err: bytes, code: int | None) -> str:
    streams = ""
    if out:
        streams += (f'<rsp:Stream Name="stdout" CommandId="{command_id}">'
                    f"{base64.b64encode(out).decode()}</rsp:Stream>")
    if err:
        streams += (f'<rsp:Stream Name="stderr" CommandId="{command_id}">'
                    f"{base64.b64encode(err).decode()}</rsp:Stream>")
    if code is None:
        state = f'<rsp:CommandState CommandId="{command_id}" State="{RUNNING}"/>'
    else:
        streams += (f'<rsp:Stream Name="stdout" CommandId="{command_id}" End="true"/>'
                    f'<rsp:Stream Name="stderr" CommandId="{command_id}" End="true"/>')
        state = (f'<rsp:CommandState CommandId="{command_id}" State="{DONE}">'
                 f"<rsp:ExitCode>{code}</rsp:ExitCode></rsp:CommandState>")
    return (f'<rsp:ReceiveResponse xmlns:rsp="{SHELL_NS}">{streams}{state}'
            "</rsp:ReceiveResponse>")


def _fault(relates_to: str, reason: str) -> bytes:
    body = (f"<s:Fault><s:Code><s:Value>s:Receiver</s:Value></s:Code>"
            f'<s:Reason><s:Text xml:lang="en-US">{reason}</s:Text></s:Reason></s:Fault>')
    return _envelope("http://schemas.dmtf.org/wbem/wsman/1/wsman/fault", relates_to, body)


@pytest.fixture(scope="session")
def wsman_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(certificate, key) PEM files for 127.0.0.1, made once per test session."""
    return make_certificate(tmp_path_factory.mktemp("wsman-tls"))


@pytest.fixture
def windows_machine() -> WindowsMachine:
    """A guest that passes every readiness check; tests change what they need."""
    return WindowsMachine()


@pytest.fixture
def wsman(windows_machine: WindowsMachine,
          wsman_certificate: tuple[Path, Path]) -> Iterator[FakeWSMan]:
    """The endpoint over HTTPS with basic auth for TEST_USER / TEST_PASSWORD."""
    cert, key = wsman_certificate
    fake = FakeWSMan(windows_machine, user=TEST_USER, password=TEST_PASSWORD,
                     certfile=cert, keyfile=key).start()
    yield fake
    fake.stop()


@pytest.fixture
def ntlm_user_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The NTLM acceptor's credential store, named by NTLM_USER_FILE as pyspnego reads it."""
    path = ntlm.write_user_file(tmp_path / "ntlm-users", TEST_USER, TEST_PASSWORD)
    monkeypatch.setenv("NTLM_USER_FILE", str(path))
    return path


@pytest.fixture
def wsman_ntlm(windows_machine: WindowsMachine, ntlm_user_file: Path) -> Iterator[FakeWSMan]:
    """The endpoint over plain HTTP with NTLM for TEST_USER / TEST_PASSWORD: messages must
    come sealed, as the WinRM service's default (AllowUnencrypted false) demands."""
    fake = FakeWSMan(windows_machine, user=TEST_USER, password=TEST_PASSWORD,
                     auth="ntlm").start()
    yield fake
    fake.stop()

"""Raw facts from check.ps1 → readiness findings (code, severity, remediation).

The guest script only gathers facts; every decision lives here, as small rules that take
the facts dictionary and return findings. Expected values follow Microsoft's "Prepare a
Windows VHD or VHDX to upload to Azure" page and its "generalize" page.

Facts arrive as Windows PowerShell 5.1's ``ConvertTo-Json`` writes them, so the rules
read them through ``ps_value``/``ps_list``: a string that carries PowerShell note
properties comes as ``{"value": ..., "PSPath": ...}``, an array wrapped in a PSObject as
``{"value": [...], "Count": n}``, and a one-element list can arrive as the bare element.
A section the script could not query comes as ``{"error": ...}``; it becomes a "could not
check" finding, never a pass.
"""
from __future__ import annotations

import base64
import binascii
import fnmatch
import ipaddress
import re
import struct
from collections.abc import Callable, Iterable
from typing import Any

from ..plan import Finding, Severity

PAGE = "Azure 'Prepare a Windows VHD to upload to Azure'"
Facts = dict[str, Any]
Rule = Callable[[Facts], list[Finding]]

AUTOMATIC_SERVICES = ("BFE", "Dhcp", "Dnscache", "IKEEXT", "iphlpsvc", "nsi", "mpssvc",
                      "RemoteRegistry", "w32time")
MANUAL_SERVICES = ("Netlogon", "Netman", "TermService")

BCD_EXPECTED = {
    "bootmgr": {"integrityservices": "Enable", "displaybootmenu": "Yes", "timeout": "5",
                "bootems": "Yes"},
    "default": {"device": "partition=C:", "osdevice": "partition=C:",
                "integrityservices": "Enable", "recoveryenabled": "No",
                "bootstatuspolicy": "IgnoreAllFailures", "ems": "Yes"},
    "emssettings": {"emsport": "1", "emsbaudrate": "115200"},
}
BCD_FIX = {
    ("bootmgr", "integrityservices"): 'bcdedit /set "{bootmgr}" integrityservices enable',
    ("bootmgr", "displaybootmenu"): 'bcdedit /set "{bootmgr}" displaybootmenu yes',
    ("bootmgr", "timeout"): 'bcdedit /set "{bootmgr}" timeout 5',
    ("bootmgr", "bootems"): 'bcdedit /set "{bootmgr}" bootems yes',
    ("default", "device"): 'bcdedit /set "{default}" device partition=C:',
    ("default", "osdevice"): 'bcdedit /set "{default}" osdevice partition=C:',
    ("default", "integrityservices"): 'bcdedit /set "{default}" integrityservices enable',
    ("default", "recoveryenabled"): 'bcdedit /set "{default}" recoveryenabled Off',
    ("default", "bootstatuspolicy"): 'bcdedit /set "{default}" bootstatuspolicy IgnoreAllFailures',
    ("default", "ems"): 'bcdedit /ems "{current}" ON',
    ("emssettings", "emsport"): "bcdedit /emssettings EMSPORT:1 EMSBAUDRATE:115200",
    ("emssettings", "emsbaudrate"): "bcdedit /emssettings EMSPORT:1 EMSBAUDRATE:115200",
}
# Firewall rules are matched by resource strings and rule names, which are the same in
# every language; display names and display groups are translated.
RDP_FIREWALL_GROUP = "@FirewallAPI.dll,-28752"
WINRM_RULE_PREFIX = "WINRM-HTTP"
ICMP_ECHO_RULE = "FPS-ICMP4-ERQ-In"
WINRM_PORTS = (5985, 5986)
AZURE_PLATFORM_IP = ipaddress.ip_address("168.63.129.16")
CDROM_DISABLED = 4
DWORD_MAX = 0xFFFFFFFF
# Defender attack surface reduction: "Block execution of potentially obfuscated scripts".
ASR_OBFUSCATED_SCRIPTS = "5beb7efe-fd9a-4556-801d-275e5ffc04cc"
ASR_BLOCK = 1

# Other hypervisors' guest tools and drivers that Azure's page says to remove, by the
# names their installers and services register (all lower case).
VIRTUALIZATION_PROGRAMS = (
    "vmware tools*", "*virtualbox guest additions*", "parallels tools*",
    "*xenserver*tools*", "citrix vm tools*", "xcp-ng*tools*", "qemu guest agent*",
    "virtio-win*",
)
VIRTUALIZATION_SERVICES = {
    "vmware": ("vmtools", "vgauthservice", "vm3dservice", "vmci", "vm3dmp", "vmhgfs",
               "vmmouse", "vmusbmouse", "vmxnet3ndis6", "vmxnet3", "pvscsi", "vsock",
               "vmrawdsk", "vmmemctl", "vmvss"),
    "VirtualBox": ("vboxservice", "vboxguest", "vboxmouse", "vboxsf", "vboxvideo",
                   "vboxwddm"),
    "Xen": ("xenbus", "xenvbd", "xennet", "xenfilt", "xeniface", "xenvif", "xensvc"),
    "Parallels": ("prl_tools", "prl_tools_service", "prl_fs", "prl_tg", "prl_eth5"),
    "QEMU/KVM": ("qemu-ga", "vioscsi", "viostor", "netkvm", "balloon", "vioser"),
}
PS_NOTE_PROPERTIES = {"PSPath", "PSParentPath", "PSChildName", "PSDrive", "PSProvider",
                      "ReadCount", "Count", "Length"}


# -- Windows PowerShell 5.1 output shapes -------------------------------------------------
def ps_value(value: Any) -> Any:
    """The plain value inside 5.1's PSObject serialization (``{"value": x, "PSPath": ..}``)."""
    while isinstance(value, dict) and "value" in value and set(value) - {"value"} <= \
            PS_NOTE_PROPERTIES:
        value = value["value"]
    return value


def ps_list(value: Any) -> list[Any]:
    """A list, however 5.1 wrote it: null → [], a collapsed single element → [element]."""
    value = ps_value(value)
    if value is None:
        return []
    if isinstance(value, list):
        return [ps_value(item) for item in value]
    return [value]


def _text(value: Any) -> str:
    value = ps_value(value)
    return "" if value is None else str(value)


def _as_int(value: Any) -> int | None:
    try:
        return int(ps_value(value))
    except (TypeError, ValueError):
        return None


def _section(facts: Facts, key: str) -> tuple[dict[str, Any], str | None]:
    """(section, reason it could not be checked, or None)."""
    if key not in facts:
        return {}, "the check script did not report it"
    value = ps_value(facts[key])
    if isinstance(value, dict) and value.get("error") is not None:
        return {}, _reason(value)
    return (value if isinstance(value, dict) else {}), None


def _reason(error: dict[str, Any]) -> str:
    message = " ".join(_text(error.get("error")).split()) or "unknown error"
    command = _text(error.get("command"))
    error_id = _text(error.get("error_id"))
    if error_id.startswith("CommandNotFoundException"):
        return f"{command or 'a cmdlet it needs'} is not available on this Windows"
    if "ConstrainedLanguage" in error_id:
        message = f"blocked by PowerShell's Constrained Language Mode: {message}"
    return f"{command}: {message}" if command and command not in message else message


# -- findings -----------------------------------------------------------------------------
def _finding(code: str, severity: Severity, message: str, remediation: str = "") -> Finding:
    return Finding(code=f"windows.{code}", severity=severity, message=message,
                   remediation=remediation)


def _ok(code: str, message: str) -> list[Finding]:
    return [_finding(code, Severity.OK, message)]


def _unchecked(code: str, what: str, reason: str, remediation: str,
               severity: Severity = Severity.WARNING) -> list[Finding]:
    return [_finding(code, severity, f"could not check {what} ({reason})", remediation)]


def _set_dword(path: str, name: str, value: int) -> str:
    """The page's own command for one registry setting."""
    return f"Set-ItemProperty -Path '{path}' -Name {name} -Value {value} -Type DWord -Force"


TERMINAL_SERVER = "HKLM:\\SYSTEM\\CurrentControlSet\\Control\\Terminal Server"
RDP_TCP = TERMINAL_SERVER + "\\Winstations\\RDP-Tcp"
TS_POLICY = "HKLM:\\SOFTWARE\\Policies\\Microsoft\\Windows NT\\Terminal Services"
ENVIRONMENT = "HKLM:\\SYSTEM\\CurrentControlSet\\Control\\Session Manager\\Environment"
REMOVABLE_STORAGE = "HKLM:\\SOFTWARE\\Policies\\Microsoft\\Windows\\RemovableStorageDevices"
SOFTWARE_PROTECTION = ("HKLM:\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\"
                       "SoftwareProtectionPlatform")


def check_administrator(facts: Facts) -> list[Finding]:
    is_admin = ps_value(facts.get("is_admin"))
    if is_admin is True:
        return _ok("administrator", "the WinRM user is an administrator")
    message = ("the WinRM user is not an administrator" if is_admin is False else
               "could not confirm that the WinRM user is an administrator")
    return [_finding("administrator", Severity.BLOCKER,
                     message + ": Sysprep and the checks need it",
                     "connect as a member of the local Administrators group")]


def check_language_mode(facts: Facts) -> list[Finding]:
    if "language_mode" not in facts:
        return _unchecked("language_mode", "the PowerShell language mode",
                          "the check script did not report it",
                          "run $ExecutionContext.SessionState.LanguageMode on the VM")
    mode = _text(facts.get("language_mode"))
    lockdown = _as_int(facts.get("lockdown_policy"))
    if mode.lower() == "fulllanguage" and lockdown != 4:
        return _ok("language_mode", "PowerShell runs in FullLanguage mode")
    cause = ("__PSLockdownPolicy=4 in the machine environment" if lockdown == 4
             else "an AppLocker or Windows Defender Application Control policy")
    return [_finding("language_mode", Severity.WARNING,
                     f"PowerShell runs in {mode or 'a restricted'} mode ({cause}): azlift's "
                     "scripts and the Azure provisioning scripts that run at first boot can "
                     "be blocked",
                     "allow the scripts in the AppLocker/WDAC policy (or remove "
                     "__PSLockdownPolicy) for the duration of the migration")]


def check_script_blocking(facts: Facts) -> list[Finding]:
    info, reason = _section(facts, "script_blocking")
    if reason:
        return _unchecked("script_blocking", "Defender's script-blocking rules", reason,
                          "Get-MpPreference | Select-Object AttackSurfaceReductionRules_*",
                          Severity.INFO)
    if not info.get("available"):
        return _ok("script_blocking", "Microsoft Defender's cmdlets are not installed")
    rules = dict(zip((str(i).lower() for i in ps_list(info.get("asr_rule_ids"))),
                     (_as_int(a) for a in ps_list(info.get("asr_rule_actions")))))
    if rules.get(ASR_OBFUSCATED_SCRIPTS) == ASR_BLOCK:
        return [_finding("script_blocking", Severity.WARNING,
                         "Defender's attack surface reduction rule 'Block execution of "
                         "potentially obfuscated scripts' is in block mode; Azure's page asks "
                         "to disable script blockers that can stop the provisioning scripts",
                         "Add-MpPreference -AttackSurfaceReductionRules_Ids "
                         f"{ASR_OBFUSCATED_SCRIPTS} -AttackSurfaceReductionRules_Actions "
                         "AuditMode (for the migration)")]
    return _ok("script_blocking", "no Defender rule blocks obfuscated scripts")


BITLOCKER_PROTECTION = {0: "Off", 1: "On", 2: "Unknown"}
BITLOCKER_VOLUME = {0: "FullyDecrypted", 1: "FullyEncrypted", 2: "EncryptionInProgress",
                    3: "DecryptionInProgress", 4: "EncryptionPaused", 5: "DecryptionPaused"}


def check_bitlocker(facts: Facts) -> list[Finding]:
    info, reason = _section(facts, "bitlocker")
    if reason:
        return _unchecked("bitlocker", "BitLocker on the OS volume", reason,
                          "check with 'manage-bde -status C:' that the volume is "
                          "FullyDecrypted")
    if info.get("available") is False:
        return _ok("bitlocker", "BitLocker is not installed")

    def named(value: Any, names: dict[int, str]) -> str:
        number = _as_int(value)
        return names.get(number, str(number)) if number is not None else _text(value)

    protection = named(info.get("protection_status"), BITLOCKER_PROTECTION)
    status = named(info.get("volume_status"), BITLOCKER_VOLUME)
    if protection.lower() == "off" and status.lower() == "fullydecrypted":
        return _ok("bitlocker", "BitLocker is off on the OS volume")
    return [_finding("bitlocker", Severity.BLOCKER,
                     f"BitLocker on the OS volume: protection {protection or '?'}, "
                     f"volume {status or '?'}; Sysprep needs the drive fully decrypted",
                     "run 'manage-bde -off C:' (or Disable-BitLocker -MountPoint C:) and "
                     "wait until the volume reports FullyDecrypted")]


def _rename_pairs(entries: list[Any]) -> list[str]:
    """PendingFileRenameOperations: (source, destination) pairs; empty destination = delete."""
    texts = [_text(entry).removeprefix("\\??\\") for entry in entries]
    described = []
    for index in range(0, len(texts), 2):
        source = texts[index]
        target = texts[index + 1] if index + 1 < len(texts) else ""
        if source:
            described.append(f"{source} -> {target}" if target else f"delete {source}")
    return described


def check_pending_reboot(facts: Facts) -> list[Finding]:
    info = ps_value(facts.get("pending_reboot"))
    if not isinstance(info, dict):
        return _unchecked("pending_reboot", "for a pending reboot",
                          "the check script did not report it",
                          "restart the VM, then run this again")
    reasons = []
    if info.get("cbs") or info.get("cbs_reboot_in_progress") or info.get("cbs_packages_pending"):
        reasons.append("Component Based Servicing")
    if info.get("windows_update"):
        reasons.append("Windows Update")
    active, pending = _text(info.get("active_computer_name")), _text(info.get("computer_name"))
    if active and pending and active.lower() != pending.lower():
        reasons.append(f"computer rename {active} -> {pending}")
    if info.get("netlogon_join_domain") or info.get("netlogon_avoid_spn_set"):
        reasons.append("domain join")
    findings = [_finding(
        "pending_reboot", Severity.BLOCKER,
        "a reboot is pending (" + ", ".join(reasons) + "); Sysprep fails or the first "
        "boot in Azure restarts unexpectedly",
        "finish installing updates and restart the VM, then run this again")] if reasons \
        else _ok("pending_reboot", "no reboot is pending (Component Based Servicing, Windows "
                 "Update, computer rename, domain join)")
    renames = _rename_pairs(ps_list(info.get("pending_file_renames"))
                            + ps_list(info.get("pending_file_renames_2")))
    if renames:
        shown = "; ".join(renames[:10]) + (f"; and {len(renames) - 10} more"
                                           if len(renames) > 10 else "")
        findings.append(_finding(
            "pending_file_renames", Severity.WARNING,
            f"{len(renames)} file operation(s) wait for a restart "
            f"(PendingFileRenameOperations): {shown}",
            "restart the VM to let Windows apply them; entries that some software queues "
            "again at every boot can be left"))
    return findings


def _removable_appx(package: dict[str, Any]) -> bool:
    return (isinstance(package, dict) and not package.get("is_framework")
            and not package.get("non_removable")
            and _text(package.get("signature_kind")).lower() != "system"
            and bool(ps_list(package.get("users"))))


def _provisioned(appx: dict[str, Any]) -> dict[str, set[str]]:
    """Provisioned display name → its provisioned package (full) names, lower case.
    A bare string is a name whose package name was not reported."""
    found: dict[str, set[str]] = {}
    for entry in ps_list(appx.get("provisioned")):
        if isinstance(entry, dict):
            names = found.setdefault(_text(entry.get("name")).lower(), set())
            if entry.get("package_name"):
                names.add(_text(entry.get("package_name")).lower())
        else:
            found.setdefault(_text(entry).lower(), set())
    return found


def user_only_appx(facts: Facts) -> list[dict[str, Any]]:
    """AppX packages installed for some user but not provisioned for all users."""
    appx = ps_value(facts.get("appx"))
    if not isinstance(appx, dict):
        return []
    provisioned = _provisioned(appx)
    packages = [p for p in ps_list(appx.get("installed")) if _removable_appx(p)]
    has_main = {_text(p.get("name")).lower() for p in packages if not p.get("is_bundle")}
    return [p for p in packages if _text(p.get("name")).lower() not in provisioned
            and not (p.get("is_bundle") and _text(p.get("name")).lower() in has_main)]


def updated_appx(facts: Facts) -> tuple[list[tuple[dict[str, Any], list[str]]], list[str]]:
    """Provisioned packages that a user updated (KB2769827 scenario 3): ([(installed
    package, provisioned package names)], names that could not be compared)."""
    appx = ps_value(facts.get("appx"))
    if not isinstance(appx, dict):
        return [], []
    packages = [p for p in ps_list(appx.get("installed")) if _removable_appx(p)]
    updated, unknown = [], []
    for name, package_names in _provisioned(appx).items():
        mine = [p for p in packages if _text(p.get("name")).lower() == name]
        if not mine:
            continue
        # A provisioned bundle's PackageName is the bundle's full name ("..._neutral_~_...").
        bundled = any("_~_" in package_name for package_name in package_names)
        comparable = [p for p in mine if bool(p.get("is_bundle")) == bundled]
        if not package_names or not comparable:
            unknown.append(name)
            continue
        updated.extend((p, sorted(package_names)) for p in comparable
                       if _text(p.get("full_name")).lower() not in package_names)
    return updated, unknown


def _for_users(package: dict[str, Any]) -> str:
    return ", ".join(_text(user) for user in ps_list(package.get("users")))


def _remove_for_users(package: dict[str, Any]) -> list[str]:
    full = _text(package.get("full_name")) or _text(package.get("name"))
    return [f"Remove-AppxPackage -Package {full} -User '{_text(user)}'"
            for user in ps_list(package.get("users"))]


def check_appx(facts: Facts) -> list[Finding]:
    appx, reason = _section(facts, "appx")
    if reason:
        return _unchecked("appx", "AppX packages (Sysprep fails on packages installed or "
                          "updated for one user only)", reason,
                          "as an administrator: Get-AppxPackage -AllUsers | Format-List "
                          "PackageFullName, PackageUserInformation (KB2769827)")
    findings = []
    user_only = user_only_appx(facts)
    if user_only:
        described = ", ".join(f"{_text(p.get('full_name')) or _text(p.get('name'))} "
                              f"(for {_for_users(p)})" for p in user_only)
        commands = [c for p in user_only for c in _remove_for_users(p)]
        findings.append(_finding(
            "appx_user_only", Severity.BLOCKER,
            "AppX packages installed for a user but not provisioned for all users "
            f"(Sysprep fails on these): {described}",
            "remove them for each user listed, as KB2769827 says (as that user, or as an "
            "administrator with -User): " + "; ".join(commands)))
    updated, unknown = updated_appx(facts)
    if updated:
        described = ", ".join(f"{_text(p.get('full_name'))} (for {_for_users(p)}; "
                              f"provisioned: {', '.join(names)})" for p, names in updated)
        commands = [c for p, _names in updated for c in _remove_for_users(p)]
        commands += [f"Remove-AppxProvisionedPackage -Online -PackageName {name}"
                     for _p, names in updated for name in names]
        findings.append(_finding(
            "appx_updated", Severity.BLOCKER,
            "provisioned AppX packages that a user updated (Sysprep fails on these, "
            f"KB2769827): {described}",
            "remove the package for each user listed and its provisioning, as KB2769827 "
            "says (reprovision the app afterwards if it is needed): "
            + "; ".join(dict.fromkeys(commands))))
    if unknown:
        findings.append(_finding(
            "appx_updated", Severity.INFO,
            "could not compare the installed and provisioned versions of: "
            + ", ".join(sorted(unknown)),
            "Get-AppxPackage -AllUsers -PackageTypeFilter Bundle lists the installed bundles"))
    return findings or _ok("appx", "every AppX package installed for a user is provisioned "
                           "as it is")


def check_unattend(facts: Facts) -> list[Finding]:
    if "unattend_files" not in facts:
        return _unchecked("unattend_files", "for leftover answer files",
                          "the check script did not report it",
                          "look for unattend.xml and autounattend.xml in C:\\, "
                          "C:\\Windows\\Panther and C:\\Windows\\System32\\Sysprep")
    files = [_text(path) for path in ps_list(facts.get("unattend_files"))]
    if not files:
        return _ok("unattend_files", "no leftover unattend/answer files")
    in_panther = [f for f in files if re.search(r"\\Windows\\Panther\\", f, re.IGNORECASE)]
    elsewhere = [f for f in files if f not in in_panther]
    findings = []
    if elsewhere:
        findings.append(_finding(
            "unattend_files", Severity.BLOCKER,
            "leftover answer files Windows Setup would apply on first boot in Azure "
            "(a custom unattend.xml is not supported there): " + ", ".join(elsewhere),
            "delete or move them out of the system drive before generalizing"))
    if in_panther:
        findings.append(_finding(
            "unattend_panther", Severity.INFO,
            "answer files in the Panther folder: " + ", ".join(in_panther),
            "the plan deletes C:\\Windows\\Panther before Sysprep, as Azure's page says"))
    return findings


def check_rdp(facts: Facts) -> list[Finding]:
    rdp = ps_value(facts.get("rdp")) or {}
    findings = []
    denied = _as_int(rdp.get("deny_connections"))
    policy_denied = _as_int(rdp.get("policy_deny_connections"))
    if denied != 0 or policy_denied == 1:
        findings.append(_finding(
            "rdp_disabled", Severity.WARNING,
            "Remote Desktop is disabled (fDenyTSConnections); the VM will be unreachable in Azure",
            _set_dword(TERMINAL_SERVER, "fDenyTSConnections", 0) + "; "
            + _set_dword(TS_POLICY, "fDenyTSConnections", 0)))
    port = _as_int(rdp.get("port"))
    if port != 3389:
        findings.append(_finding(
            "rdp_port", Severity.WARNING,
            f"the RDP port is {port if port is not None else 'unset'}, not 3389; Azure's "
            "default rules open 3389",
            _set_dword(RDP_TCP, "PortNumber", 3389) + " (change the port after deployment)"))
    if _as_int(rdp.get("user_authentication")) != 1:
        findings.append(_finding(
            "rdp_nla", Severity.WARNING, "network-level authentication (NLA) is off for RDP",
            _set_dword(RDP_TCP, "UserAuthentication", 1)))
    lan = _as_int(rdp.get("lan_adapter"))
    if lan not in (0, None):
        findings.append(_finding(
            "rdp_listener", Severity.WARNING,
            f"the RDP listener is bound to adapter {lan}, not to every interface",
            _set_dword(RDP_TCP, "LanAdapter", 0)))
    if rdp.get("ssl_certificate_hash"):
        findings.append(_finding(
            "rdp_certificate", Severity.WARNING,
            "a certificate is tied to the RDP listener (SSLCertificateSHA1Hash); a "
            "self-signed one can stop RDP connections after deployment",
            f"Remove-ItemProperty -Path '{RDP_TCP}' -Name SSLCertificateSHA1Hash -Force"))
    return findings or _ok("rdp", "RDP is enabled on port 3389 with NLA")


def _differences(rdp: dict[str, Any], expected: Iterable[tuple[str, str, str, int, bool]]
                 ) -> tuple[list[str], list[str]]:
    """(what differs, the page's commands) for (fact, path, name, value, absent_is_ok)."""
    wrong, fixes = [], []
    for fact, path, name, value, absent_ok in expected:
        actual = _as_int(rdp.get(fact))
        if actual == value or (actual is None and absent_ok):
            continue
        wrong.append(f"{name} {actual if actual is not None else 'unset'} (expected {value})")
        fixes.append(_set_dword(path, name, value))
    return wrong, fixes


# (code, what, [(fact, key, value name, expected, absent is fine)]) as Azure's page sets them.
RDP_SESSION_SETTINGS = (
    ("rdp_keep_alive", "RDP keep-alive", (
        ("keep_alive_enable", TS_POLICY, "KeepAliveEnable", 1, False),
        ("keep_alive_interval", TS_POLICY, "KeepAliveInterval", 1, False),
        ("keep_alive_timeout", RDP_TCP, "KeepAliveTimeout", 1, False))),
    ("rdp_reconnect", "RDP reconnect options", (
        ("disable_auto_reconnect", TS_POLICY, "fDisableAutoReconnect", 0, True),
        ("inherit_reconnect_same", RDP_TCP, "fInheritReconnectSame", 1, False),
        ("reconnect_same", RDP_TCP, "fReconnectSame", 0, True))),
)


def check_rdp_session(facts: Facts) -> list[Finding]:
    """Keep-alive, reconnect and connection-count settings from Azure's page."""
    rdp = ps_value(facts.get("rdp")) or {}
    findings = []
    for code, what, expected in RDP_SESSION_SETTINGS:
        wrong, fixes = _differences(rdp, expected)
        if wrong:
            findings.append(_finding(code, Severity.INFO, f"{what} differ from Azure's page: "
                                     + "; ".join(wrong), "; ".join(fixes)))
    instances = _as_int(rdp.get("max_instance_count"))
    # A DWORD of 0xFFFFFFFF reads back as the Int32 -1 in PowerShell.
    if instances is not None and instances & DWORD_MAX != DWORD_MAX:
        findings.append(_finding("rdp_max_instances", Severity.INFO,
                                 f"RDP allows at most {instances} concurrent connection(s)",
                                 _set_dword(RDP_TCP, "MaxInstanceCount", DWORD_MAX)))
    return findings or _ok("rdp_session", "RDP keep-alive and reconnect settings match "
                           "Azure's page")


def _port_ranges(values: list[Any]) -> list[tuple[int, int]]:
    ranges = []
    for value in values:
        for part in _text(value).split(","):
            low, _, high = part.strip().partition("-")
            if low.isdigit() and (not high or high.isdigit()):
                ranges.append((int(low), int(high or low)))
    return ranges


def _allows_port(rule: dict[str, Any], ports: set[int]) -> bool:
    protocol = _text(rule.get("protocol")).lower()
    if protocol not in ("tcp", "6", "any", ""):
        return False
    return any(low <= port <= high for low, high in _port_ranges(ps_list(rule.get("local_ports")))
               for port in ports)


def _covers_azure_platform(rule: dict[str, Any]) -> bool:
    for entry in ps_list(rule.get("remote_addresses")):
        text = _text(entry).strip()
        try:
            if "-" in text:
                low, high = (ipaddress.ip_address(t.strip()) for t in text.split("-", 1))
                if low.version == 4 and low <= AZURE_PLATFORM_IP <= high:
                    return True
            elif AZURE_PLATFORM_IP in ipaddress.ip_network(text, strict=False):
                return True
        except (ValueError, TypeError):
            continue  # keywords such as Any, LocalSubnet, DefaultGateway
    return False


def _allowing(rules: list[dict[str, Any]], match: Callable[[dict[str, Any]], bool],
              direction: str = "inbound") -> list[str]:
    return [_text(rule.get("name")) for rule in rules
            if isinstance(rule, dict) and match(rule) and rule.get("enabled") is True
            and _text(rule.get("action") or "Allow").lower() == "allow"
            and _text(rule.get("direction") or "Inbound").lower() == direction]


def _listener_ports(facts: Facts) -> set[int]:
    listeners, _reason = _section(facts, "winrm")
    ports = {_as_int(listener.get("port")) for listener in ps_list(listeners.get("listeners"))
             if isinstance(listener, dict)}
    return {port for port in ports if port} | set(WINRM_PORTS)


def check_firewall(facts: Facts) -> list[Finding]:
    firewall, reason = _section(facts, "firewall")
    if reason:
        return _unchecked("firewall", "the Windows Firewall profiles and rules", reason,
                          "Get-NetFirewallProfile; Get-NetFirewallRule -Enabled True")
    findings = []
    profiles = [p for p in ps_list(firewall.get("profiles")) if isinstance(p, dict)]
    off = [_text(p.get("name")) for p in profiles if p.get("enabled") is not True]
    if off:
        findings.append(_finding(
            "firewall_profiles", Severity.WARNING,
            "Windows Firewall is off for profile(s): " + ", ".join(off),
            "Set-NetFirewallProfile -Profile Domain, Public, Private -Enabled True"))
    rules = [r for r in ps_list(firewall.get("rules")) if isinstance(r, dict)]
    rdp_port = _as_int((ps_value(facts.get("rdp")) or {}).get("port")) or 3389
    if not _allowing(rules, lambda r: _text(r.get("group")) == RDP_FIREWALL_GROUP
                     or _allows_port(r, {rdp_port})):
        findings.append(_finding(
            "firewall_rdp", Severity.WARNING, "no enabled inbound firewall rule allows RDP",
            f"Enable-NetFirewallRule -Group '{RDP_FIREWALL_GROUP}' (the Remote Desktop group "
            "in every language; Azure's page selects it by its English display group)"))
    winrm_ports = _listener_ports(facts)
    if not _allowing(rules, lambda r: _text(r.get("name")).upper().startswith(WINRM_RULE_PREFIX)
                     or _allows_port(r, winrm_ports)):
        findings.append(_finding(
            "firewall_winrm", Severity.WARNING,
            "no enabled inbound firewall rule allows WinRM (ports "
            + ", ".join(str(p) for p in sorted(winrm_ports)) + ")",
            "Enable-PSRemoting -Force (it enables the WinRM firewall rules); for HTTPS: "
            "New-NetFirewallRule -DisplayName 'WinRM HTTPS' -Direction Inbound -Protocol TCP "
            "-LocalPort 5986 -Action Allow"))
    if not _allowing(rules, lambda r: _text(r.get("name")) == ICMP_ECHO_RULE):
        findings.append(_finding(
            "firewall_icmp", Severity.INFO,
            f"the ping rule {ICMP_ECHO_RULE} is not enabled; the VM will not answer ping "
            "inside its virtual network",
            f"Set-NetFirewallRule -Name {ICMP_ECHO_RULE} -Enabled True"))
    findings.extend(_azure_platform_rules(rules, profiles))
    return findings or _ok("firewall", "firewall profiles on; RDP, WinRM, ping and Azure "
                           "platform rules enabled")


def _azure_platform_rules(rules: list[dict[str, Any]],
                          profiles: list[dict[str, Any]]) -> list[Finding]:
    commands = {
        "inbound": "New-NetFirewallRule -DisplayName AzurePlatform -Direction Inbound "
                   "-RemoteAddress 168.63.129.16 -Profile Any -Action Allow "
                   "-EdgeTraversalPolicy Allow",
        "outbound": "New-NetFirewallRule -DisplayName AzurePlatform -Direction Outbound "
                    "-RemoteAddress 168.63.129.16 -Profile Any -Action Allow",
    }
    missing = [direction for direction in commands
               if not _allowing(rules, _covers_azure_platform, direction)]
    if not missing:
        return []
    outbound_blocked = any(_text(p.get("default_outbound")).lower() == "block" for p in profiles)
    severity = (Severity.WARNING if "inbound" in missing or outbound_blocked else Severity.INFO)
    return [_finding("firewall_azure_platform", severity,
                     "no enabled firewall rule allows the Azure platform address "
                     f"{AZURE_PLATFORM_IP} ({' and '.join(missing)}); the guest agent and "
                     "health probes talk to it",
                     "; ".join(commands[direction] for direction in missing))]


def check_winrm_listener(facts: Facts) -> list[Finding]:
    info, reason = _section(facts, "winrm")
    if reason:
        return _unchecked("winrm_listener", "the WinRM listeners", reason + "; azlift is "
                          "connected through one, so one exists",
                          "winrm enumerate winrm/config/listener", Severity.INFO)
    listeners = [l for l in ps_list(info.get("listeners")) if isinstance(l, dict)]
    enabled = [f"{_text(l.get('transport'))}:{_text(l.get('port'))}" for l in listeners
               if l.get("enabled")]
    if enabled:
        return _ok("winrm_listener", "WinRM listens on " + ", ".join(enabled))
    return [_finding("winrm_listener", Severity.WARNING,
                     "no enabled WinRM listener is configured",
                     "Enable-PSRemoting -Force (or winrm quickconfig)")]


def parse_winhttp_settings(blob: bytes) -> tuple[bool, str, str]:
    """The WinHttpSettings registry value → (uses a proxy, proxy server, bypass list).

    Layout (little endian): version, counter, flags (1 direct, 2 named proxy), proxy
    length, proxy, bypass length, bypass."""
    _version, _counter, flags, proxy_length = struct.unpack_from("<4I", blob, 0)
    proxy = blob[16:16 + proxy_length].decode("ascii", "replace")
    (bypass_length,) = struct.unpack_from("<I", blob, 16 + proxy_length)
    start = 20 + proxy_length
    if start + bypass_length > len(blob) or 16 + proxy_length > len(blob):
        raise ValueError("lengths run past the end of the value")
    bypass = blob[start:start + bypass_length].decode("ascii", "replace")
    return bool(flags & 2), proxy, bypass


def _bypasses_azure_platform(bypass: str) -> bool:
    entries = [e.strip() for e in re.split(r"[;\s]+", bypass) if e.strip()]
    return any(fnmatch.fnmatch(str(AZURE_PLATFORM_IP), entry) for entry in entries)


def check_winhttp_proxy(facts: Facts) -> list[Finding]:
    info, reason = _section(facts, "winhttp")
    fix = ("netsh.exe winhttp reset proxy (or, to keep a proxy, add 168.63.129.16 to its "
           "bypass list: netsh.exe winhttp set proxy PROXY 'BYPASS;168.63.129.16')")
    if reason:
        return _unchecked("winhttp_proxy", "the WinHTTP proxy", reason, fix)
    encoded = info.get("settings_base64")
    if not encoded:
        return _ok("winhttp_proxy", "WinHTTP connects directly (no proxy)")
    try:
        uses_proxy, proxy, bypass = parse_winhttp_settings(base64.b64decode(_text(encoded)))
    except (ValueError, struct.error, binascii.Error) as error:
        return _unchecked("winhttp_proxy", "the WinHTTP proxy",
                          f"unreadable WinHttpSettings value: {error}", fix)
    if not uses_proxy:
        return _ok("winhttp_proxy", "WinHTTP connects directly (no proxy)")
    if _bypasses_azure_platform(bypass):
        return _ok("winhttp_proxy", f"WinHTTP uses proxy {proxy} and bypasses it for "
                   f"{AZURE_PLATFORM_IP}")
    return [_finding("winhttp_proxy", Severity.WARNING,
                     f"WinHTTP uses proxy {proxy} without a bypass for {AZURE_PLATFORM_IP} "
                     f"(bypass list: {bypass or 'empty'}); the Azure guest agent cannot reach "
                     "the platform",
                     fix)]


def check_san_policy(facts: Facts) -> list[Finding]:
    raw = ps_value(facts.get("san_policy"))
    fix = "diskpart: 'san policy=onlineall' (or Set-StorageSetting -NewDiskPolicy OnlineAll)"
    if isinstance(raw, dict):
        info, reason = _section(facts, "san_policy")
        if reason:
            return _unchecked("san_policy", "the disk SAN policy", reason, fix)
        raw = info.get("new_disk_policy")
    policy = _text(raw)
    if policy.lower() == "onlineall":
        return _ok("san_policy", "SAN policy is OnlineAll")
    return [_finding("san_policy", Severity.WARNING,
                     f"the disk SAN policy is {policy or 'unknown'}, not OnlineAll; data disks "
                     "may stay offline in Azure", fix)]


def check_real_time_is_universal(facts: Facts) -> list[Finding]:
    if _as_int(facts.get("real_time_is_universal")) == 1:
        return _ok("real_time_is_universal", "the hardware clock is read as UTC")
    return [_finding("real_time_is_universal", Severity.WARNING,
                     "RealTimeIsUniversal is not 1: Azure's host clock is UTC and the guest "
                     "time will be off",
                     "Set-ItemProperty -Path HKLM:\\SYSTEM\\CurrentControlSet\\Control\\"
                     "TimeZoneInformation -Name RealTimeIsUniversal -Value 1 -Type DWord "
                     "-Force")]


def check_services(facts: Facts) -> list[Finding]:
    services = ps_value(facts.get("services")) or {}
    wrong, fixes = [], []
    for names, expected in ((AUTOMATIC_SERVICES, "Automatic"), (MANUAL_SERVICES, "Manual")):
        for name in names:
            actual = ps_value(services.get(name))
            if actual is None:
                wrong.append(f"{name} missing (expected {expected})")
            elif str(actual).lower() != expected.lower():
                wrong.append(f"{name} {actual} (expected {expected})")
                fixes.append(f"Set-Service -Name {name} -StartupType {expected}")
    if not wrong:
        return _ok("services", "service start types match Azure's page")
    return [_finding("services", Severity.WARNING,
                     "service start types differ from Azure's page: " + "; ".join(wrong),
                     "; ".join(fixes) if fixes else
                     "reinstall or repair the missing Windows services Azure's page lists")]


def check_sacsvr(facts: Facts) -> list[Finding]:
    """The Special Administration Console Helper, for Azure's serial console."""
    services = ps_value(facts.get("services")) or {}
    if "sacsvr" not in services:
        return _unchecked("sacsvr", "the sacsvr service", "the check script did not report it",
                          "Get-Service -Name sacsvr", Severity.INFO)
    start = _text(services.get("sacsvr"))
    if start.lower() == "automatic":
        return _ok("sacsvr", "sacsvr (serial console) starts automatically")
    fix = "Set-Service -Name sacsvr -StartupType Automatic"
    os_info, _reason = _section(facts, "os")
    if not start and _as_int(os_info.get("product_type")) == 1:
        fix = ("Add-WindowsCapability -Online -Name 'Windows.Desktop.EMS-SAC.Tools~~~~0.0.1.0'; "
               + fix)
    return [_finding("sacsvr", Severity.INFO,
                     f"the serial console's sacsvr service is {start or 'not installed'}, not "
                     "Automatic; Azure's serial console needs it to troubleshoot the OS", fix)]


def parse_bcdedit(text: str) -> dict[str, str]:
    """``bcdedit /enum`` output → {setting: value} (header and rule lines skipped)."""
    entries: dict[str, str] = {}
    lines = [line.strip() for line in (text or "").splitlines()]
    for index, line in enumerate(lines):
        following = lines[index + 1] if index + 1 < len(lines) else ""
        if not line or set(line) <= {"-"} or (following and set(following) <= {"-"}):
            continue  # blank, a rule line, or the title a rule line underlines
        parts = line.split(None, 1)
        if len(parts) == 2:
            entries.setdefault(parts[0].lower(), parts[1].strip())
    return entries


def check_bcd(facts: Facts) -> list[Finding]:
    bcd = ps_value(facts.get("bcd")) or {}
    failed = {entry: _reason(ps_value(bcd.get(entry))) for entry in BCD_EXPECTED
              if isinstance(ps_value(bcd.get(entry)), dict)}
    if failed:
        return _unchecked("bcd", "the boot configuration",
                          "; ".join(f"{{{entry}}}: {reason}" for entry, reason in failed.items()),
                          "run 'bcdedit /enum all' as an administrator")
    wrong, fixes = [], []
    for entry, expected in BCD_EXPECTED.items():
        actual = parse_bcdedit(_text(bcd.get(entry)))
        for key, value in expected.items():
            found = actual.get(key)
            if found is None or found.lower() != value.lower():
                wrong.append(f"{{{entry}}} {key} {found or 'unset'} (expected {value})")
                if BCD_FIX[(entry, key)] not in fixes:
                    fixes.append(BCD_FIX[(entry, key)])
    if not wrong:
        return _ok("bcd", "boot configuration matches Azure's page")
    return [_finding("bcd", Severity.WARNING,
                     "boot configuration differs from Azure's page: " + "; ".join(wrong),
                     "; ".join(fixes))]


def check_pagefile(facts: Facts) -> list[Finding]:
    info, reason = _section(facts, "pagefile")
    if reason:
        return _unchecked("pagefile", "the page file location", reason,
                          "Get-CimInstance Win32_PageFileSetting", Severity.INFO)
    system_drive = _text((ps_value(facts.get("os")) or {}).get("system_drive") or "C:").upper()
    files = [_text(entry).split()[0] for entry in ps_list(info.get("paging_files"))
             if _text(entry).strip()]
    elsewhere = [f for f in files if not f.upper().startswith(system_drive)
                 and not f.startswith("?")]
    if elsewhere:
        return [_finding("pagefile", Severity.WARNING,
                         "the page file is on a volume outside the OS disk: " + ", ".join(elsewhere)
                         + "; that volume is not part of the uploaded disk",
                         "move the page file to the OS volume before capture; after deployment, "
                         "place it on the temporary disk (D:\\pagefile.sys) as Azure recommends")]
    return [_finding("pagefile", Severity.INFO,
                     "the page file is on the OS volume" if files or info.get("automatic")
                     else "no page file is configured",
                     "after deployment, Azure recommends D:\\pagefile.sys on the temporary disk")]


def check_cdrom(facts: Facts) -> list[Finding]:
    if "cdrom_start" not in facts:
        return _unchecked("cdrom", "the CD/DVD-ROM driver", "the check script did not report it",
                          "Get-ItemProperty -Path HKLM:\\SYSTEM\\CurrentControlSet\\Services\\"
                          "cdrom -Name Start")
    if _as_int(facts.get("cdrom_start")) == CDROM_DISABLED:
        return [_finding("cdrom", Severity.BLOCKER,
                         "the CD/DVD-ROM driver (cdrom service) is disabled; Azure mounts the "
                         "provisioning ISO there and the VM would stick at OOBE",
                         "Set-ItemProperty -Path HKLM:\\SYSTEM\\CurrentControlSet\\Services\\"
                         "cdrom -Name Start -Value 1 -Type DWord")]
    return _ok("cdrom", "the CD/DVD-ROM driver is enabled")


def check_removable_storage(facts: Facts) -> list[Finding]:
    """The generalize page: no "Removable Storage Access: Deny all" policy (OOBE hangs)."""
    info = ps_value(facts.get("removable_storage"))
    if not isinstance(info, dict):
        return _unchecked("removable_storage", "the Removable Storage Access policy",
                          "the check script did not report it",
                          f"Get-ItemProperty -Path '{REMOVABLE_STORAGE}'")
    denied = []
    if _as_int(info.get("deny_all")) == 1:
        denied.append("All Removable Storage classes: Deny all access (Deny_All)")
    if _as_int(info.get("cd_dvd_deny_read")) == 1:
        denied.append("CD and DVD: Deny read access")
    if not denied:
        return _ok("removable_storage", "no policy denies access to removable storage")
    return [_finding("removable_storage", Severity.BLOCKER,
                     "a Removable Storage Access policy is applied (" + "; ".join(denied)
                     + "): Azure's provisioning ISO cannot be read and the VM sticks at OOBE",
                     "set the policy (Computer Configuration > Administrative Templates > "
                     "System > Removable Storage Access) to Not Configured, locally and in any "
                     "domain GPO, then gpupdate /force; locally: Remove-ItemProperty -Path "
                     f"'{REMOVABLE_STORAGE}' -Name Deny_All")]


def _virtualization_services(facts: Facts) -> list[str]:
    info, _reason = _section(facts, "all_services")
    found = []
    for service in ps_list(info.get("services")):
        if not isinstance(service, dict):
            continue
        name = _text(service.get("name"))
        for vendor, names in VIRTUALIZATION_SERVICES.items():
            if name.lower() in names:
                found.append(f"{name} ({vendor})")
    return found


def check_virtualization_tools(facts: Facts) -> list[Finding]:
    fix = ("uninstall them (Programs and Features, or the vendor's uninstaller) and remove "
           "leftover drivers (pnputil /enum-drivers; pnputil /delete-driver oemNN.inf "
           "/uninstall); on the source hypervisor this can cut the VM's network, so do it "
           "last, from the console")
    programs, program_reason = _section(facts, "programs")
    _services, service_reason = _section(facts, "all_services")
    names = [_text(name) for name in ps_list(programs.get("names"))]
    tools = [name for name in names
             if any(fnmatch.fnmatch(name.lower(), pattern) for pattern in VIRTUALIZATION_PROGRAMS)]
    drivers = _virtualization_services(facts)
    if tools or drivers:
        return [_finding("virtualization_tools", Severity.WARNING,
                         "other hypervisors' guest tools or drivers are installed (Azure's page: "
                         "uninstall other virtualization software and drivers): "
                         + ", ".join(tools + drivers), fix)]
    if program_reason or service_reason:
        return _unchecked("virtualization_tools", "for other hypervisors' guest tools",
                          "; ".join(r for r in (program_reason, service_reason) if r), fix)
    return _ok("virtualization_tools", "no other hypervisor's guest tools or drivers found")


TEMP_DEFAULTS = ("%systemroot%\\temp", "%windir%\\temp")


def check_temp(facts: Facts) -> list[Finding]:
    def fix(name: str) -> str:
        return (f"Set-ItemProperty -Path '{ENVIRONMENT}' -Name {name} -Value "
                "\"%SystemRoot%\\TEMP\" -Type ExpandString -Force")

    info, reason = _section(facts, "temp")
    if reason:
        return _unchecked("temp", "the TEMP and TMP variables", reason,
                          fix("TEMP") + "; " + fix("TMP"))
    wrong = [(name, _text(info.get(name.lower()))) for name in ("TEMP", "TMP")
             if _text(info.get(name.lower())).lower().rstrip("\\") not in TEMP_DEFAULTS]
    if not wrong:
        return _ok("temp", "TEMP and TMP are %SystemRoot%\\TEMP")
    return [_finding("temp", Severity.WARNING,
                     "the system TEMP/TMP variables differ from their defaults: "
                     + "; ".join(f"{name}={value or 'unset'}" for name, value in wrong),
                     "; ".join(fix(name) for name, _value in wrong))]


def check_persistent_routes(facts: Facts) -> list[Finding]:
    info, reason = _section(facts, "persistent_routes")
    if reason:
        return _unchecked("persistent_routes", "for persistent static routes", reason,
                          "route.exe print (the Persistent Routes section)")
    routes = [r for r in ps_list(info.get("routes")) if isinstance(r, dict)]
    if not routes:
        return _ok("persistent_routes", "no persistent static route")
    described = [f"{_text(r.get('destination'))} via {_text(r.get('next_hop'))}"
                 + (f" ({_text(r.get('interface'))})" if r.get("interface") else "")
                 for r in routes]
    commands = [f"route.exe delete {_text(r.get('destination')).split('/')[0]}"
                for r in routes]
    default = any(_text(r.get("destination")) in ("0.0.0.0/0", "::/0") for r in routes)
    return [_finding("persistent_routes", Severity.WARNING,
                     "persistent static routes would follow the image to Azure: "
                     + ", ".join(described)
                     + ("; a persistent default route means a static IP configuration, and "
                        "Azure assigns addresses by DHCP" if default else ""),
                     "; ".join(dict.fromkeys(commands))
                     + ("; Set-NetIPInterface -Dhcp Enabled (from the console)" if default
                        else ""))]


SHOW_REARM_COUNT = ("cscript //nologo \"$env:WINDIR\\System32\\slmgr.vbs\" /dlv (Remaining "
                    "Windows rearm count)")


def check_rearm(facts: Facts) -> list[Finding]:
    info, reason = _section(facts, "rearm")
    remaining = _as_int(info.get("remaining"))
    if reason or remaining is None:
        return _unchecked("rearm", "the Windows rearm count", reason or "it was not reported",
                          SHOW_REARM_COUNT)
    skip = _as_int(info.get("skip_rearm")) == 1
    if remaining <= 0 and not skip:
        return [_finding("rearm", Severity.BLOCKER,
                         "no Windows rearm left (RemainingWindowsReArmCount 0): Sysprep "
                         "/generalize fails with a fatal error",
                         "set the SkipRearm registry value (an answer file is not an option: "
                         "Azure does not support custom answer files): "
                         + _set_dword(SOFTWARE_PROTECTION, "SkipRearm", 1)
                         + "; or rebuild from a fresh installation")]
    return _ok("rearm", f"{remaining} Windows rearm(s) left"
               + (" (SkipRearm is set)" if skip else ""))


def check_guest_agent(facts: Facts) -> list[Finding]:
    services = ps_value(facts.get("services")) or {}
    if services.get("WindowsAzureGuestAgent") is not None:
        return _ok("guest_agent", "the Windows Azure Guest Agent is installed")
    return [_finding("guest_agent", Severity.WARNING,
                     "the Windows Azure Guest Agent is not installed: VM extensions (password "
                     "reset, RDP repair) will not work",
                     "install the Azure VM Agent (WindowsAzureVmAgent.msi) before generalizing")]


def check_read_errors(facts: Facts) -> list[Finding]:
    """Registry values the script could not read: the rules above saw them as unset."""
    errors = ps_value(facts.get("read_errors"))
    if not isinstance(errors, dict) or not errors:
        return []
    return [_finding("registry_reads", Severity.WARNING,
                     "could not read registry values, so the checks that use them are "
                     "unconfirmed: " + "; ".join(f"{path} ({' '.join(_text(reason).split())})"
                                                 for path, reason in errors.items()),
                     "run the check as a member of the local Administrators group")]


RULES: tuple[Rule, ...] = (
    check_administrator, check_language_mode, check_script_blocking, check_bitlocker,
    check_pending_reboot, check_appx, check_unattend, check_rdp, check_rdp_session,
    check_firewall, check_winrm_listener, check_winhttp_proxy, check_san_policy,
    check_real_time_is_universal, check_services, check_sacsvr, check_bcd, check_pagefile,
    check_cdrom, check_removable_storage, check_virtualization_tools, check_temp,
    check_persistent_routes, check_rearm, check_guest_agent, check_read_errors,
)


def findings_from_facts(facts: Facts, rules: Iterable[Rule] = RULES) -> list[Finding]:
    """Every rule's findings, in rule order."""
    findings: list[Finding] = []
    for rule in rules:
        findings.extend(rule(facts))
    return findings

"""Raw facts from check.ps1 → readiness findings (code, severity, remediation).

The guest script only gathers facts; every decision lives here, as small rules that take
the facts dictionary and return findings. Expected values follow Microsoft's "Prepare a
Windows VHD or VHDX to upload to Azure" page.
"""
from __future__ import annotations

import re
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
RDP_FIREWALL_GROUP = "@FirewallAPI.dll,-28752"
CDROM_DISABLED = 4


def _finding(code: str, severity: Severity, message: str, remediation: str = "") -> Finding:
    return Finding(code=f"windows.{code}", severity=severity, message=message,
                   remediation=remediation)


def _ok(code: str, message: str) -> list[Finding]:
    return [_finding(code, Severity.OK, message)]


def check_administrator(facts: Facts) -> list[Finding]:
    if facts.get("is_admin"):
        return _ok("administrator", "the WinRM user is an administrator")
    return [_finding("administrator", Severity.BLOCKER,
                     "the WinRM user is not an administrator: Sysprep and the checks need it",
                     "connect as a member of the local Administrators group")]


def check_bitlocker(facts: Facts) -> list[Finding]:
    info = facts.get("bitlocker") or {}
    if not info.get("available"):
        return _ok("bitlocker", "BitLocker is not installed")
    protection = str(info.get("protection_status") or "")
    status = str(info.get("volume_status") or "")
    if protection.lower() == "off" and status.lower() in ("fullydecrypted", ""):
        return _ok("bitlocker", "BitLocker is off on the OS volume")
    return [_finding("bitlocker", Severity.BLOCKER,
                     f"BitLocker on the OS volume: protection {protection or '?'}, "
                     f"volume {status or '?'}; Sysprep needs the drive fully decrypted",
                     "run 'manage-bde -off C:' (or Disable-BitLocker -MountPoint C:) and "
                     "wait until the volume reports FullyDecrypted")]


def check_pending_reboot(facts: Facts) -> list[Finding]:
    info = facts.get("pending_reboot") or {}
    reasons = []
    if info.get("cbs"):
        reasons.append("Component Based Servicing")
    if info.get("windows_update"):
        reasons.append("Windows Update")
    if info.get("pending_file_renames"):
        reasons.append("PendingFileRenameOperations")
    if not reasons:
        return _ok("pending_reboot", "no reboot is pending")
    return [_finding("pending_reboot", Severity.BLOCKER,
                     "a reboot is pending (" + ", ".join(reasons) + "); Sysprep fails or the "
                     "first boot in Azure restarts unexpectedly",
                     "finish installing updates and restart the VM, then run this again")]


def user_only_appx(facts: Facts) -> list[dict[str, Any]]:
    """AppX packages installed for some user but not provisioned for all users."""
    appx = facts.get("appx") or {}
    provisioned = {str(name).lower() for name in appx.get("provisioned") or []}
    found = []
    for package in appx.get("installed") or []:
        if package.get("is_framework") or package.get("non_removable"):
            continue
        if str(package.get("signature_kind", "")).lower() == "system":
            continue
        if not package.get("users"):
            continue
        if str(package.get("name", "")).lower() not in provisioned:
            found.append(package)
    return found


def check_appx(facts: Facts) -> list[Finding]:
    packages = user_only_appx(facts)
    if not packages:
        return _ok("appx_user_only", "no AppX package is installed for a user only")
    described = ", ".join(f"{p.get('full_name') or p.get('name')} "
                          f"(for {', '.join(p.get('users') or [])})" for p in packages)
    return [_finding("appx_user_only", Severity.BLOCKER,
                     f"AppX packages installed for a user but not provisioned for all users "
                     f"(Sysprep fails on these): {described}",
                     "remove them for those users (Get-AppxPackage -AllUsers NAME | "
                     "Remove-AppxPackage -AllUsers) or provision them for all users")]


def check_unattend(facts: Facts) -> list[Finding]:
    files = [str(path) for path in facts.get("unattend_files") or []]
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


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


TERMINAL_SERVER = "HKLM:\\SYSTEM\\CurrentControlSet\\Control\\Terminal Server"
RDP_TCP = TERMINAL_SERVER + "\\Winstations\\RDP-Tcp"
TS_POLICY = "HKLM:\\SOFTWARE\\Policies\\Microsoft\\Windows NT\\Terminal Services"


def _set_dword(path: str, name: str, value: int) -> str:
    """The page's own command for one registry setting."""
    return f"Set-ItemProperty -Path '{path}' -Name {name} -Value {value} -Type DWord -Force"


def check_rdp(facts: Facts) -> list[Finding]:
    rdp = facts.get("rdp") or {}
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
    return findings or _ok("rdp", "RDP is enabled on port 3389 with NLA")


def _enabled_rules(facts: Facts, match: Callable[[dict[str, Any]], bool]) -> list[str]:
    rules = (facts.get("firewall") or {}).get("rules") or []
    return [str(rule.get("name")) for rule in rules if match(rule) and rule.get("enabled")
            and str(rule.get("action", "Allow")).lower() != "block"]


def check_firewall(facts: Facts) -> list[Finding]:
    findings = []
    profiles = (facts.get("firewall") or {}).get("profiles") or []
    off = [str(p.get("name")) for p in profiles if not p.get("enabled")]
    if off:
        findings.append(_finding(
            "firewall_profiles", Severity.WARNING,
            "Windows Firewall is off for profile(s): " + ", ".join(off),
            "Set-NetFirewallProfile -Profile Domain, Public, Private -Enabled True"))
    rdp = _enabled_rules(facts, lambda r: r.get("group") == RDP_FIREWALL_GROUP
                         or r.get("display_group") == "Remote Desktop")
    if not rdp:
        findings.append(_finding(
            "firewall_rdp", Severity.WARNING, "no enabled inbound firewall rule allows RDP",
            "Get-NetFirewallRule -DisplayGroup 'Remote Desktop' | Set-NetFirewallRule "
            "-Enabled True"))
    winrm = _enabled_rules(facts, lambda r: str(r.get("name", "")).upper().startswith("WINRM-HTTP")
                           or r.get("display_group") == "Windows Remote Management")
    if not winrm:
        findings.append(_finding(
            "firewall_winrm", Severity.WARNING, "no enabled inbound firewall rule allows WinRM",
            "Enable-PSRemoting -Force (it enables the WinRM firewall rules)"))
    return findings or _ok("firewall", "firewall profiles on; RDP and WinRM rules enabled")


def check_winrm_listener(facts: Facts) -> list[Finding]:
    listeners = (facts.get("winrm") or {}).get("listeners") or []
    enabled = [f"{l.get('transport')}:{l.get('port')}" for l in listeners if l.get("enabled")]
    if enabled:
        return _ok("winrm_listener", "WinRM listens on " + ", ".join(enabled))
    return [_finding("winrm_listener", Severity.WARNING,
                     "no enabled WinRM listener is configured",
                     "Enable-PSRemoting -Force (or winrm quickconfig)")]


def check_san_policy(facts: Facts) -> list[Finding]:
    policy = str(facts.get("san_policy") or "")
    if policy.lower() == "onlineall":
        return _ok("san_policy", "SAN policy is OnlineAll")
    return [_finding("san_policy", Severity.WARNING,
                     f"the disk SAN policy is {policy or 'unknown'}, not OnlineAll; data disks "
                     "may stay offline in Azure",
                     "diskpart: 'san policy=onlineall' (or Set-StorageSetting -NewDiskPolicy "
                     "OnlineAll)")]


def check_real_time_is_universal(facts: Facts) -> list[Finding]:
    if _as_int(facts.get("real_time_is_universal")) == 1:
        return _ok("real_time_is_universal", "the hardware clock is read as UTC")
    return [_finding("real_time_is_universal", Severity.WARNING,
                     "RealTimeIsUniversal is not 1: Azure's host clock is UTC and the guest "
                     "time will be off",
                     "Set-ItemProperty HKLM:\\SYSTEM\\CurrentControlSet\\Control\\"
                     "TimeZoneInformation -Name RealTimeIsUniversal -Value 1 -Type DWord")]


def check_services(facts: Facts) -> list[Finding]:
    services = facts.get("services") or {}
    wrong, fixes = [], []
    for names, expected in ((AUTOMATIC_SERVICES, "Automatic"), (MANUAL_SERVICES, "Manual")):
        for name in names:
            actual = services.get(name)
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
    bcd = facts.get("bcd") or {}
    wrong, fixes = [], []
    for entry, expected in BCD_EXPECTED.items():
        actual = parse_bcdedit(str(bcd.get(entry) or ""))
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
    info = facts.get("pagefile") or {}
    system_drive = str((facts.get("os") or {}).get("system_drive") or "C:").upper()
    files = [str(entry).split()[0] for entry in info.get("paging_files") or [] if str(entry).strip()]
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
    if _as_int(facts.get("cdrom_start")) == CDROM_DISABLED:
        return [_finding("cdrom", Severity.BLOCKER,
                         "the CD/DVD-ROM driver (cdrom service) is disabled; Azure mounts the "
                         "provisioning ISO there and the VM would stick at OOBE",
                         "Set-ItemProperty HKLM:\\SYSTEM\\CurrentControlSet\\Services\\cdrom "
                         "-Name Start -Value 1")]
    return _ok("cdrom", "the CD/DVD-ROM driver is enabled")


def check_rearm(facts: Facts) -> list[Finding]:
    info = facts.get("rearm") or {}
    remaining = _as_int(info.get("remaining"))
    skip = _as_int(info.get("skip_rearm")) == 1
    if remaining is None:
        return [_finding("rearm", Severity.INFO, "the remaining rearm count could not be read")]
    if remaining <= 0 and not skip:
        return [_finding("rearm", Severity.BLOCKER,
                         "no Windows rearm left (RemainingWindowsReArmCount 0): Sysprep "
                         "/generalize fails with a fatal error",
                         "rebuild from a fresh installation, or set SkipRearm=1 in the "
                         "generalize pass of an answer file")]
    return _ok("rearm", f"{remaining} Windows rearm(s) left")


def check_guest_agent(facts: Facts) -> list[Finding]:
    services = facts.get("services") or {}
    if services.get("WindowsAzureGuestAgent") is not None:
        return _ok("guest_agent", "the Windows Azure Guest Agent is installed")
    return [_finding("guest_agent", Severity.WARNING,
                     "the Windows Azure Guest Agent is not installed: VM extensions (password "
                     "reset, RDP repair) will not work",
                     "install the Azure VM Agent (WindowsAzureVmAgent.msi) before generalizing")]


RULES: tuple[Rule, ...] = (
    check_administrator, check_bitlocker, check_pending_reboot, check_appx, check_unattend,
    check_rdp, check_firewall, check_winrm_listener, check_san_policy,
    check_real_time_is_universal, check_services, check_bcd, check_pagefile, check_cdrom,
    check_rearm, check_guest_agent,
)


def findings_from_facts(facts: Facts, rules: Iterable[Rule] = RULES) -> list[Finding]:
    """Every rule's findings, in rule order."""
    findings: list[Finding] = []
    for rule in rules:
        findings.extend(rule(facts))
    return findings

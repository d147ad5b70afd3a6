"""Rules that decide whether the VM can be reached once in Azure: RDP settings, firewall
rules (matched by rule name, group resource string, port and address, never by translated
display names), the WinRM listener and the WinHTTP proxy's bypass of the platform address."""
from __future__ import annotations

import base64
import binascii
import fnmatch
import ipaddress
import re
import struct

from collections.abc import Callable, Iterable
from typing import Any

from ...plan import Finding, Severity
from .shapes import (
    as_int, as_text, could_not_check, error_reason, Facts, new_finding, passed, ps_list,
    ps_value, read_section, set_dword,
)


# Firewall rules are matched by resource strings and rule names, which are the same in
# every language; display names and display groups are translated.
RDP_FIREWALL_GROUP = "@FirewallAPI.dll,-28752"

WINRM_RULE_PREFIX = "WINRM-HTTP"

ICMP_ECHO_RULE = "FPS-ICMP4-ERQ-In"

WINRM_PORTS = (5985, 5986)

AZURE_PLATFORM_IP = ipaddress.ip_address("168.63.129.16")

DWORD_MAX = 0xFFFFFFFF

TERMINAL_SERVER = "HKLM:\\SYSTEM\\CurrentControlSet\\Control\\Terminal Server"

RDP_TCP = TERMINAL_SERVER + "\\Winstations\\RDP-Tcp"

TS_POLICY = "HKLM:\\SOFTWARE\\Policies\\Microsoft\\Windows NT\\Terminal Services"

def check_rdp(facts: Facts) -> list[Finding]:
    rdp = ps_value(facts.get("rdp")) or {}
    findings = []
    denied = as_int(rdp.get("deny_connections"))
    policy_denied = as_int(rdp.get("policy_deny_connections"))
    if denied != 0 or policy_denied == 1:
        findings.append(new_finding(
            "rdp_disabled", Severity.WARNING,
            "Remote Desktop is disabled (fDenyTSConnections); the VM will be unreachable in Azure",
            set_dword(TERMINAL_SERVER, "fDenyTSConnections", 0) + "; "
            + set_dword(TS_POLICY, "fDenyTSConnections", 0)))
    port = as_int(rdp.get("port"))
    if port != 3389:
        findings.append(new_finding(
            "rdp_port", Severity.WARNING,
            f"the RDP port is {port if port is not None else 'unset'}, not 3389; Azure's "
            "default rules open 3389",
            set_dword(RDP_TCP, "PortNumber", 3389) + " (change the port after deployment)"))
    if as_int(rdp.get("user_authentication")) != 1:
        findings.append(new_finding(
            "rdp_nla", Severity.WARNING, "network-level authentication (NLA) is off for RDP",
            set_dword(RDP_TCP, "UserAuthentication", 1)))
    lan = as_int(rdp.get("lan_adapter"))
    if lan not in (0, None):
        findings.append(new_finding(
            "rdp_listener", Severity.WARNING,
            f"the RDP listener is bound to adapter {lan}, not to every interface",
            set_dword(RDP_TCP, "LanAdapter", 0)))
    if rdp.get("ssl_certificate_hash"):
        findings.append(new_finding(
            "rdp_certificate", Severity.WARNING,
            "a certificate is tied to the RDP listener (SSLCertificateSHA1Hash); a "
            "self-signed one can stop RDP connections after deployment",
            f"Remove-ItemProperty -Path '{RDP_TCP}' -Name SSLCertificateSHA1Hash -Force"))
    return findings or passed("rdp", "RDP is enabled on port 3389 with NLA")

def _differences(rdp: dict[str, Any], expected: Iterable[tuple[str, str, str, int, bool]]
                 ) -> tuple[list[str], list[str]]:
    """(what differs, the page's commands) for (fact, path, name, value, absent_is_ok)."""
    wrong, fixes = [], []
    for fact, path, name, value, absent_ok in expected:
        actual = as_int(rdp.get(fact))
        if actual == value or (actual is None and absent_ok):
            continue
        wrong.append(f"{name} {actual if actual is not None else 'unset'} (expected {value})")
        fixes.append(set_dword(path, name, value))
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
            findings.append(new_finding(code, Severity.INFO, f"{what} differ from Azure's page: "
                                     + "; ".join(wrong), "; ".join(fixes)))
    instances = as_int(rdp.get("max_instance_count"))
    # A DWORD of 0xFFFFFFFF reads back as the Int32 -1 in PowerShell.
    if instances is not None and instances & DWORD_MAX != DWORD_MAX:
        findings.append(new_finding("rdp_max_instances", Severity.INFO,
                                 f"RDP allows at most {instances} concurrent connection(s)",
                                 set_dword(RDP_TCP, "MaxInstanceCount", DWORD_MAX)))
    return findings or passed("rdp_session", "RDP keep-alive and reconnect settings match "
                           "Azure's page")

def _port_ranges(values: list[Any]) -> list[tuple[int, int]]:
    ranges = []
    for value in values:
        for part in as_text(value).split(","):
            low, _, high = part.strip().partition("-")
            if low.isdigit() and (not high or high.isdigit()):
                ranges.append((int(low), int(high or low)))
    return ranges

def _allows_port(rule: dict[str, Any], ports: set[int]) -> bool:
    protocol = as_text(rule.get("protocol")).lower()
    if protocol not in ("tcp", "6", "any", ""):
        return False
    return any(low <= port <= high for low, high in _port_ranges(ps_list(rule.get("local_ports")))
               for port in ports)

def _covers_azure_platform(rule: dict[str, Any]) -> bool:
    for entry in ps_list(rule.get("remote_addresses")):
        text = as_text(entry).strip()
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
    return [as_text(rule.get("name")) for rule in rules
            if isinstance(rule, dict) and match(rule) and rule.get("enabled") is True
            and as_text(rule.get("action") or "Allow").lower() == "allow"
            and as_text(rule.get("direction") or "Inbound").lower() == direction]

def _listener_ports(facts: Facts) -> set[int]:
    listeners, error_reason = read_section(facts, "winrm")
    ports = {as_int(listener.get("port")) for listener in ps_list(listeners.get("listeners"))
             if isinstance(listener, dict)}
    return {port for port in ports if port} | set(WINRM_PORTS)

def check_firewall(facts: Facts) -> list[Finding]:
    firewall, reason = read_section(facts, "firewall")
    if reason:
        return could_not_check("firewall", "the Windows Firewall profiles and rules", reason,
                          "Get-NetFirewallProfile; Get-NetFirewallRule -Enabled True")
    findings = []
    profiles = [p for p in ps_list(firewall.get("profiles")) if isinstance(p, dict)]
    off = [as_text(p.get("name")) for p in profiles if p.get("enabled") is not True]
    if off:
        findings.append(new_finding(
            "firewall_profiles", Severity.WARNING,
            "Windows Firewall is off for profile(s): " + ", ".join(off),
            "Set-NetFirewallProfile -Profile Domain, Public, Private -Enabled True"))
    rules = [r for r in ps_list(firewall.get("rules")) if isinstance(r, dict)]
    rdp_port = as_int((ps_value(facts.get("rdp")) or {}).get("port")) or 3389
    if not _allowing(rules, lambda r: as_text(r.get("group")) == RDP_FIREWALL_GROUP
                     or _allows_port(r, {rdp_port})):
        findings.append(new_finding(
            "firewall_rdp", Severity.WARNING, "no enabled inbound firewall rule allows RDP",
            f"Enable-NetFirewallRule -Group '{RDP_FIREWALL_GROUP}' (the Remote Desktop group "
            "in every language; Azure's page selects it by its English display group)"))
    winrm_ports = _listener_ports(facts)
    if not _allowing(rules, lambda r: as_text(r.get("name")).upper().startswith(WINRM_RULE_PREFIX)
                     or _allows_port(r, winrm_ports)):
        findings.append(new_finding(
            "firewall_winrm", Severity.WARNING,
            "no enabled inbound firewall rule allows WinRM (ports "
            + ", ".join(str(p) for p in sorted(winrm_ports)) + ")",
            "Enable-PSRemoting -Force (it enables the WinRM firewall rules); for HTTPS: "
            "New-NetFirewallRule -DisplayName 'WinRM HTTPS' -Direction Inbound -Protocol TCP "
            "-LocalPort 5986 -Action Allow"))
    if not _allowing(rules, lambda r: as_text(r.get("name")) == ICMP_ECHO_RULE):
        findings.append(new_finding(
            "firewall_icmp", Severity.INFO,
            f"the ping rule {ICMP_ECHO_RULE} is not enabled; the VM will not answer ping "
            "inside its virtual network",
            f"Set-NetFirewallRule -Name {ICMP_ECHO_RULE} -Enabled True"))
    findings.extend(_azure_platform_rules(rules, profiles))
    return findings or passed("firewall", "firewall profiles on; RDP, WinRM, ping and Azure "
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
    outbound_blocked = any(as_text(p.get("default_outbound")).lower() == "block" for p in profiles)
    severity = (Severity.WARNING if "inbound" in missing or outbound_blocked else Severity.INFO)
    return [new_finding("firewall_azure_platform", severity,
                     "no enabled firewall rule allows the Azure platform address "
                     f"{AZURE_PLATFORM_IP} ({' and '.join(missing)}); the guest agent and "
                     "health probes talk to it",
                     "; ".join(commands[direction] for direction in missing))]

def check_winrm_listener(facts: Facts) -> list[Finding]:
    info, reason = read_section(facts, "winrm")
    if reason:
        return could_not_check("winrm_listener", "the WinRM listeners", reason + "; azlift is "
                          "connected through one, so one exists",
                          "winrm enumerate winrm/config/listener", Severity.INFO)
    listeners = [l for l in ps_list(info.get("listeners")) if isinstance(l, dict)]
    enabled = [f"{as_text(l.get('transport'))}:{as_text(l.get('port'))}" for l in listeners
               if l.get("enabled")]
    if enabled:
        return passed("winrm_listener", "WinRM listens on " + ", ".join(enabled))
    return [new_finding("winrm_listener", Severity.WARNING,
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
    info, reason = read_section(facts, "winhttp")
    fix = ("netsh.exe winhttp reset proxy (or, to keep a proxy, add 168.63.129.16 to its "
           "bypass list: netsh.exe winhttp set proxy PROXY 'BYPASS;168.63.129.16')")
    if reason:
        return could_not_check("winhttp_proxy", "the WinHTTP proxy", reason, fix)
    encoded = info.get("settings_base64")
    if not encoded:
        return passed("winhttp_proxy", "WinHTTP connects directly (no proxy)")
    try:
        uses_proxy, proxy, bypass = parse_winhttp_settings(base64.b64decode(as_text(encoded)))
    except (ValueError, struct.error, binascii.Error) as error:
        return could_not_check("winhttp_proxy", "the WinHTTP proxy",
                          f"unreadable WinHttpSettings value: {error}", fix)
    if not uses_proxy:
        return passed("winhttp_proxy", "WinHTTP connects directly (no proxy)")
    if _bypasses_azure_platform(bypass):
        return passed("winhttp_proxy", f"WinHTTP uses proxy {proxy} and bypasses it for "
                   f"{AZURE_PLATFORM_IP}")
    return [new_finding("winhttp_proxy", Severity.WARNING,
                     f"WinHTTP uses proxy {proxy} without a bypass for {AZURE_PLATFORM_IP} "
                     f"(bypass list: {bypass or 'empty'}); the Azure guest agent cannot reach "
                     "the platform",
                     fix)]

"""Facts → findings: each rule, table-tested on the facts check.ps1 prints under Windows
PowerShell 5.1 (fixtures in ps51_shapes)."""
from __future__ import annotations

import base64
import re
import struct
from collections.abc import Callable
from typing import Any

import pytest

from azlift.prep.plan import Finding, Severity, blocking
from azlift.prep.windows import findings_from_facts, parse_bcdedit, script, user_only_appx
from azlift.prep.windows.findings import (
    AUTOMATIC_SERVICES,
    BCD_EXPECTED,
    MANUAL_SERVICES,
    parse_winhttp_settings,
    updated_appx,
)
from tests.prep.windows.ps51_shapes import (
    FROM_VMWARE_SERVER_2019,
    QUERIES_FAILED_SERVER_2016,
    collapsed,
    failed_query,
    get_content_string,
    in_51_shapes,
    load,
    ready_facts,
)
from tests.support.fake_wsman import BCD_DEFAULT_GOOD, BCD_EMSSETTINGS_GOOD

Change = Callable[[dict[str, Any]], None]
ADMIN = "WIN-MIGRATE01\\Administrator"


def by_code(facts: dict[str, Any]) -> dict[str, Finding]:
    """The first finding of each code (codes without the ``windows.`` prefix)."""
    found: dict[str, Finding] = {}
    for finding in findings_from_facts(facts):
        found.setdefault(finding.code.removeprefix("windows."), finding)
    return found


def changed(change: Change) -> dict[str, Finding]:
    facts = ready_facts()
    change(facts)
    return by_code(facts)


def put(path: str, value: Any) -> Change:
    """Set facts[a][b]... = value for the dotted ``path``."""
    def apply(facts: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = facts
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    return apply


def rules(change: Callable[[list[dict[str, Any]]], None]) -> Change:
    return lambda facts: change(facts["firewall"]["rules"])


def without_rule(name: str) -> Change:
    return rules(lambda rs: rs.__setitem__(slice(None), [r for r in rs if r["name"] != name]))


def without_display(display: str) -> Change:
    return rules(lambda rs: rs.__setitem__(slice(None),
                                           [r for r in rs if r["display_name"] != display]))


def winhttp(flags: int, proxy: str = "", bypass: str = "") -> str:
    blob = (struct.pack("<4I", 0x28, 7, flags, len(proxy)) + proxy.encode()
            + struct.pack("<I", len(bypass)) + bypass.encode())
    return base64.b64encode(blob).decode()


def test_the_ready_fixture_has_no_blockers_or_warnings() -> None:
    findings = findings_from_facts(ready_facts())
    assert not blocking(findings)
    assert [f for f in findings if f.severity is not Severity.OK] == [
        f for f in findings if f.code == "windows.pagefile"]  # the after-deployment tip
    assert all(f.code.startswith("windows.") for f in findings)


def test_the_ready_fixture_has_every_section_check_ps1_prints() -> None:
    # The fixture stands for the script's output: the same top-level keys, in order.
    text = script("check")
    body = text[text.index("$facts = [ordered]@{"):text.index("$facts | ConvertTo-Json")]
    keys = re.findall(r"^    (\w+) = ", body, re.MULTILINE)
    assert keys == list(ready_facts())
    # The sections written out in the literal itself have the fixture's keys, too.
    for section in ("pending_reboot", "rdp", "removable_storage"):
        block = re.search(rf"^    {section} = \[ordered\]@{{\n(.*?)^    }}", body,
                          re.MULTILINE | re.DOTALL)
        assert block, section
        assert re.findall(r"^        (\w+) = ", block.group(1), re.MULTILINE) == \
            list(ready_facts()[section]), section


def not_ok(facts: dict[str, Any]) -> dict[str, Severity]:
    return {f.code.removeprefix("windows."): f.severity for f in findings_from_facts(facts)
            if f.severity is not Severity.OK}


def test_a_guest_lifted_from_vmware_gets_the_pages_findings_and_no_blocker() -> None:
    facts = load(FROM_VMWARE_SERVER_2019)
    assert not_ok(facts) == {
        "pending_file_renames": Severity.WARNING, "rdp_keep_alive": Severity.INFO,
        "firewall_icmp": Severity.INFO, "firewall_azure_platform": Severity.WARNING,
        "winhttp_proxy": Severity.WARNING, "virtualization_tools": Severity.WARNING,
        "persistent_routes": Severity.WARNING, "pagefile": Severity.INFO,
        "guest_agent": Severity.WARNING}
    found = by_code(facts)
    assert "C:\\Windows\\Temp\\vmware-Ärger.log" in found["pending_file_renames"].message
    assert "proxy.contoso.local:8080" in found["winhttp_proxy"].message
    assert "VMware Tools, VMTools (vmware), VGAuthService (vmware)" \
        in found["virtualization_tools"].message


def test_a_guest_whose_queries_fail_is_told_what_could_not_be_checked() -> None:
    facts = load(QUERIES_FAILED_SERVER_2016)
    assert not_ok(facts) == {
        "script_blocking": Severity.INFO, "bitlocker": Severity.WARNING,
        "appx": Severity.WARNING, "winrm_listener": Severity.INFO,
        "pagefile": Severity.INFO, "registry_reads": Severity.WARNING}
    found = by_code(facts)
    assert found["appx"].message == (
        "could not check AppX packages (Sysprep fails on packages installed or updated for "
        "one user only) (Get-AppxPackage: A specified logon session does not exist. It may "
        "already have been terminated. (Exception from HRESULT: 0x80070520))")
    assert "RemovableStorageDevices\\Deny_All" in found["registry_reads"].message


CASES: list[tuple[str, Severity, Change]] = [
    ("administrator", Severity.BLOCKER, put("is_admin", False)),
    ("administrator", Severity.BLOCKER, put("is_admin", None)),
    ("language_mode", Severity.WARNING, put("language_mode", "ConstrainedLanguage")),
    ("language_mode", Severity.WARNING, put("lockdown_policy", 4)),
    ("script_blocking", Severity.WARNING, put("script_blocking", {
        "available": True, "asr_rule_ids": ["5BEB7EFE-FD9A-4556-801D-275E5FFC04CC"],
        "asr_rule_actions": ["1"]})),
    ("bitlocker", Severity.BLOCKER, put("bitlocker.protection_status", "On")),
    ("bitlocker", Severity.BLOCKER, put("bitlocker.volume_status", "DecryptionInProgress")),
    ("bitlocker", Severity.BLOCKER, put("bitlocker.volume_status", 3)),
    ("pending_reboot", Severity.BLOCKER, put("pending_reboot.cbs", True)),
    ("pending_reboot", Severity.BLOCKER, put("pending_reboot.cbs_packages_pending", True)),
    ("pending_reboot", Severity.BLOCKER, put("pending_reboot.windows_update", True)),
    ("pending_reboot", Severity.BLOCKER, put("pending_reboot.computer_name", "APP01")),
    ("pending_reboot", Severity.BLOCKER, put("pending_reboot.netlogon_join_domain", True)),
    ("pending_file_renames", Severity.WARNING,
     put("pending_reboot.pending_file_renames", ["\\??\\C:\\x.tmp", ""])),
    ("unattend_files", Severity.BLOCKER,
     put("unattend_files", ["C:\\Windows\\System32\\Sysprep\\unattend.xml"])),
    ("unattend_panther", Severity.INFO, put("unattend_files", ["C:\\Windows\\Panther\\Unattend.xml"])),
    ("rdp_disabled", Severity.WARNING, put("rdp.deny_connections", 1)),
    ("rdp_disabled", Severity.WARNING, put("rdp.policy_deny_connections", 1)),
    ("rdp_port", Severity.WARNING, put("rdp.port", 3390)),
    ("rdp_nla", Severity.WARNING, put("rdp.user_authentication", 0)),
    ("rdp_listener", Severity.WARNING, put("rdp.lan_adapter", 2)),
    ("rdp_certificate", Severity.WARNING, put("rdp.ssl_certificate_hash", True)),
    ("rdp_keep_alive", Severity.INFO, put("rdp.keep_alive_enable", None)),
    ("rdp_reconnect", Severity.INFO, put("rdp.disable_auto_reconnect", 1)),
    ("rdp_max_instances", Severity.INFO, put("rdp.max_instance_count", 2)),
    ("firewall_profiles", Severity.WARNING, put("firewall.profiles.2.enabled", False)),
    ("firewall_rdp", Severity.WARNING, rules(lambda rs: [r.update(enabled=False) for r in rs
                                                         if r["name"].startswith("Remote")])),
    ("firewall_winrm", Severity.WARNING,
     rules(lambda rs: [r.update(enabled=False) for r in rs if "5985" in r["local_ports"]
                       or "5986" in r["local_ports"]])),
    ("firewall_icmp", Severity.INFO, without_rule("FPS-ICMP4-ERQ-In")),
    ("firewall_azure_platform", Severity.WARNING,
     rules(lambda rs: [r.update(action="Block") for r in rs if r["display_name"] == "AzurePlatform"
                       and r["direction"] == "Inbound"])),
    ("winrm_listener", Severity.WARNING, put("winrm.listeners", [])),
    ("winhttp_proxy", Severity.WARNING,
     put("winhttp.settings_base64", winhttp(3, "proxy.corp:8080", "<local>;*.corp"))),
    ("san_policy", Severity.WARNING, put("san_policy.new_disk_policy", "OfflineShared")),
    ("real_time_is_universal", Severity.WARNING, put("real_time_is_universal", None)),
    ("services", Severity.WARNING, put("services.Dhcp", "Disabled")),
    ("services", Severity.WARNING, put("services.TermService", None)),
    ("sacsvr", Severity.INFO, put("services.sacsvr", "Manual")),
    ("bcd", Severity.WARNING, put("bcd.default", BCD_DEFAULT_GOOD.replace(
        "IgnoreAllFailures", "DisplayAllFailures"))),
    ("bcd", Severity.WARNING, put("bcd.bootmgr", "")),
    ("pagefile", Severity.WARNING, put("pagefile.paging_files", ["E:\\pagefile.sys 4096 8192"])),
    ("cdrom", Severity.BLOCKER, put("cdrom_start", 4)),
    ("removable_storage", Severity.BLOCKER, put("removable_storage.deny_all", 1)),
    ("removable_storage", Severity.BLOCKER, put("removable_storage.cd_dvd_deny_read", 1)),
    ("virtualization_tools", Severity.WARNING,
     put("programs.names", ["VMware Tools", "Windows Azure VM Agent - 2.7.41491.1102"])),
    ("virtualization_tools", Severity.WARNING,
     put("all_services.services", [{"name": "VBoxService", "start_mode": "Auto"}])),
    ("temp", Severity.WARNING, put("temp.tmp", "D:\\Temp")),
    ("persistent_routes", Severity.WARNING, put("persistent_routes.routes", [
        {"destination": "10.20.0.0/16", "next_hop": "192.168.1.254", "interface": "Ethernet0"}])),
    ("rearm", Severity.BLOCKER, put("rearm.remaining", 0)),
    ("guest_agent", Severity.WARNING, put("services.WindowsAzureGuestAgent", None)),
    ("registry_reads", Severity.WARNING, put("read_errors", {
        "HKLM:\\SYSTEM\\CurrentControlSet\\Services\\cdrom\\Start": "Requested registry "
        "access is not allowed."})),
]


@pytest.mark.parametrize("code, severity, change", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_each_rule_flags_its_fact(code: str, severity: Severity, change: Change) -> None:
    ready = by_code(ready_facts())
    assert ready.get(code, Finding(code, Severity.OK, "")).severity in (Severity.OK,
                                                                        Severity.INFO)
    found = changed(change)
    assert code in found, sorted(found)
    assert found[code].severity is severity
    assert found[code].remediation, f"{code} has no remediation"


# -- a failed query is "could not check (reason)", never a pass ----------------------------
FAILED_QUERIES = [
    ("bitlocker", "bitlocker", Severity.WARNING, failed_query(
        "Access denied", "CimException,Microsoft.BitLocker.Structures.Get-BitLockerVolume",
        "Get-BitLockerVolume"), "Get-BitLockerVolume: Access denied"),
    ("appx", "appx", Severity.WARNING, failed_query(
        "The service cannot be started, either because it is disabled or because it has no "
        "enabled devices associated with it.", "System.Runtime.InteropServices.COMException,"
        "Microsoft.Windows.Appx.PackageManager.Commands.GetAppxPackageCommand",
        "Get-AppxPackage"), "it is disabled"),
    ("winrm", "winrm_listener", Severity.INFO, failed_query(
        "Access is denied.", "System.UnauthorizedAccessException,Microsoft.WSMan.Management."
        "GetWSManInstanceCommand", "Get-WSManInstance"), "Access is denied."),
    ("firewall", "firewall", Severity.WARNING, failed_query(
        "The RPC server is unavailable.", "Windows System Error 1722,Get-NetFirewallRule",
        "Get-NetFirewallRule"), "The RPC server is unavailable."),
    ("winhttp", "winhttp_proxy", Severity.WARNING, failed_query(
        "Requested registry access is not allowed.", "System.Security.SecurityException",
        "Get-ItemProperty"), "Requested registry access is not allowed."),
    ("san_policy", "san_policy", Severity.WARNING, failed_query(
        "The term 'Get-StorageSetting' is not recognized as the name of a cmdlet",
        "CommandNotFoundException", "Get-StorageSetting"),
     "Get-StorageSetting is not available on this Windows"),
    ("rearm", "rearm", Severity.WARNING, failed_query(
        "Invalid class", "HRESULT 0x80041010,Microsoft.Management.Infrastructure.CimCmdlets."
        "GetCimInstanceCommand", "Get-CimInstance"), "Invalid class"),
    ("temp", "temp", Severity.WARNING, failed_query(
        "Method invocation is supported only on core types in this language mode.",
        "MethodInvocationNotSupportedInConstrainedLanguage", ""),
     "blocked by PowerShell's Constrained Language Mode: Method invocation is supported only"),
    ("persistent_routes", "persistent_routes", Severity.WARNING, failed_query(
        "Invalid namespace", "HRESULT 0x8004100e,Get-NetRoute", "Get-NetRoute"),
     "Invalid namespace"),
]


@pytest.mark.parametrize("section, code, severity, error, reason", FAILED_QUERIES,
                         ids=[c[0] for c in FAILED_QUERIES])
def test_a_failed_query_is_could_not_check_with_its_reason(section: str, code: str,
                                                          severity: Severity, error: dict,
                                                          reason: str) -> None:
    found = changed(put(section, error))[code]
    assert found.severity is severity
    assert found.message.startswith("could not check"), found.message
    assert reason in found.message
    assert found.remediation


def test_a_failed_bcdedit_is_could_not_check() -> None:
    found = changed(put("bcd.default", {"error": "bcdedit /enum {default} exited with 1: The "
                                        "boot configuration data store could not be opened."}))
    assert found["bcd"].severity is Severity.WARNING
    assert "could not check the boot configuration ({default}: bcdedit" in found["bcd"].message


def test_sections_the_script_did_not_report_are_not_passes() -> None:
    # An older or truncated document: nothing absent may read as OK.
    for section, code in (("bitlocker", "bitlocker"), ("appx", "appx"), ("firewall", "firewall"),
                          ("winhttp", "winhttp_proxy"), ("temp", "temp"),
                          ("persistent_routes", "persistent_routes"),
                          ("removable_storage", "removable_storage")):
        facts = ready_facts()
        del facts[section]
        finding = by_code(facts)[code]
        assert finding.severity is not Severity.OK, code
        assert "did not report" in finding.message


def test_empty_facts_do_not_crash_and_nothing_passes() -> None:
    findings = findings_from_facts({})
    assert any(f.severity is Severity.BLOCKER for f in findings)
    assert not [f.code for f in findings if f.severity is Severity.OK]


# -- pending reboot ------------------------------------------------------------------------
def test_pending_file_renames_alone_warn_and_list_their_entries() -> None:
    found = changed(put("pending_reboot.pending_file_renames", [
        "\\??\\C:\\Program Files\\Agent\\old.dll", "", "\\??\\C:\\Temp\\new.sys",
        "!\\??\\C:\\Windows\\System32\\drivers\\new.sys"]))
    assert found["pending_reboot"].severity is Severity.OK
    renames = found["pending_file_renames"]
    assert renames.severity is Severity.WARNING
    assert "delete C:\\Program Files\\Agent\\old.dll" in renames.message
    assert "C:\\Temp\\new.sys -> !\\??\\C:\\Windows\\System32\\drivers\\new.sys" in renames.message


def test_a_pending_computer_rename_and_domain_join_block() -> None:
    def change(facts: dict[str, Any]) -> None:
        facts["pending_reboot"]["computer_name"] = "APP01"
        facts["pending_reboot"]["netlogon_avoid_spn_set"] = True
    finding = changed(change)["pending_reboot"]
    assert finding.severity is Severity.BLOCKER
    assert "computer rename WIN-MIGRATE01 -> APP01" in finding.message
    assert "domain join" in finding.message


# -- AppX ----------------------------------------------------------------------------------
CALC_BUNDLE = "Microsoft.WindowsCalculator_2021.2210.0.0_neutral_~_8wekyb3d8bbwe"
CALC_UPDATED = "Microsoft.WindowsCalculator_2022.2304.0.0_neutral_~_8wekyb3d8bbwe"


def calculator_updated_by(user: str) -> Change:
    """Store updated the provisioned Calculator for ``user`` only: that user now has the
    newer bundle and main package; the provisioned (older) bundle stays for the others."""
    def apply(facts: dict[str, Any]) -> None:
        installed = facts["appx"]["installed"]
        for package in installed:
            if package["name"] == "Microsoft.WindowsCalculator":
                package["users"] = [ADMIN]
        installed.append({"name": "Microsoft.WindowsCalculator", "full_name": CALC_UPDATED,
                          "is_bundle": True, "is_framework": False, "non_removable": False,
                          "signature_kind": "Store", "users": [user]})
        installed.append({"name": "Microsoft.WindowsCalculator",
                          "full_name": "Microsoft.WindowsCalculator_11.2304.0.0_x64__8wekyb3d8bbwe",
                          "is_bundle": False, "is_framework": False, "non_removable": False,
                          "signature_kind": "Store", "users": [user]})
    return apply


def test_a_provisioned_package_updated_by_one_user_blocks_with_the_kb_removal() -> None:
    found = changed(calculator_updated_by("WIN-MIGRATE01\\alice"))
    finding = found["appx_updated"]
    assert finding.severity is Severity.BLOCKER
    assert f"{CALC_UPDATED} (for WIN-MIGRATE01\\alice; provisioned: {CALC_BUNDLE.lower()})" \
        in finding.message
    assert (f"Remove-AppxPackage -Package {CALC_UPDATED} -User 'WIN-MIGRATE01\\alice'"
            in finding.remediation)
    assert (f"Remove-AppxProvisionedPackage -Online -PackageName {CALC_BUNDLE.lower()}"
            in finding.remediation)
    assert "appx_user_only" not in found  # it is provisioned, by name


def test_a_provisioned_bundle_and_its_main_package_as_installed_are_not_updates() -> None:
    # The main package's full name never equals the provisioned (bundle) PackageName.
    updated, unknown = updated_appx(ready_facts())
    assert updated == [] and unknown == []


def test_without_the_installed_bundles_the_versions_cannot_be_compared() -> None:
    def drop_bundles(facts: dict[str, Any]) -> None:
        facts["appx"]["installed"] = [p for p in facts["appx"]["installed"] if not p["is_bundle"]]
    found = changed(drop_bundles)
    assert found["appx_updated"].severity is Severity.INFO
    assert "could not compare" in found["appx_updated"].message


APPX = [
    {"name": "A.System", "is_framework": False, "non_removable": True,
     "signature_kind": "System", "users": ["u"]},
    {"name": "B.Framework", "is_framework": True, "signature_kind": "Store", "users": ["u"]},
    {"name": "C.Provisioned", "signature_kind": "Store", "users": ["u"]},
    {"name": "D.UserOnly", "full_name": "D.UserOnly_1.0_x64__x", "signature_kind": "Store",
     "users": ["WIN\\alice"]},
    {"name": "D.UserOnly", "full_name": "D.UserOnly_1.0_neutral_~_x", "is_bundle": True,
     "signature_kind": "Store", "users": ["WIN\\alice"]},
    {"name": "E.StagedOnly", "signature_kind": "Store", "users": []},
]


def test_user_only_appx_is_what_is_installed_for_a_user_and_not_provisioned() -> None:
    facts = {"appx": {"installed": APPX, "provisioned": [
        {"name": "C.Provisioned", "package_name": "C.Provisioned_1.0_x64__x"}]}}
    assert [p["full_name"] for p in user_only_appx(facts)] == ["D.UserOnly_1.0_x64__x"]
    finding = next(f for f in findings_from_facts(facts) if f.code == "windows.appx_user_only")
    assert finding.severity is Severity.BLOCKER
    assert "D.UserOnly_1.0_x64__x (for WIN\\alice)" in finding.message
    assert "Remove-AppxPackage -Package D.UserOnly_1.0_x64__x -User 'WIN\\alice'" \
        in finding.remediation


# -- firewall: names and ports, never translated display names -----------------------------
def test_a_user_made_https_rule_on_5986_satisfies_the_winrm_check() -> None:
    # Connected over HTTPS 5986: no built-in rule exists for it, the user's own rule counts.
    found = changed(without_rule("WINRM-HTTP-In-TCP"))
    assert "firewall_winrm" not in found


def test_localized_rules_are_recognized_by_name_group_and_port() -> None:
    def german(facts: dict[str, Any]) -> None:
        for rule in facts["firewall"]["rules"]:
            rule["display_name"] = "Remotedesktop - Benutzermodus (TCP eingehend)"
        facts["firewall"]["rules"] = [r for r in facts["firewall"]["rules"]
                                      if not r["display_name"].startswith("WinRM")]
    found = changed(german)
    assert found["firewall"].severity is Severity.OK


def test_the_rdp_firewall_fix_names_the_group_by_its_resource_string() -> None:
    found = changed(rules(lambda rs: [r.update(enabled=False) for r in rs
                                      if r["name"].startswith("Remote")]))
    remediation = found["firewall_rdp"].remediation
    assert remediation.startswith("Enable-NetFirewallRule -Group '@FirewallAPI.dll,-28752'")
    assert "-DisplayGroup" not in remediation


def test_a_user_rule_allowing_the_rdp_port_counts_as_an_rdp_rule() -> None:
    def own_rule(facts: dict[str, Any]) -> None:
        for rule in facts["firewall"]["rules"]:
            if rule["name"].startswith("Remote"):
                rule["enabled"] = False
        facts["firewall"]["rules"].append({
            "name": "{11111111-2222-3333-4444-555555555555}", "display_name": "RDP",
            "group": "", "direction": "Inbound", "enabled": True, "action": "Allow",
            "profile": "Any", "protocol": "TCP", "local_ports": ["3000-4000"],
            "remote_addresses": ["Any"]})
    assert "firewall_rdp" not in changed(own_rule)


@pytest.mark.parametrize("addresses, covered", [
    (["168.63.129.16"], True), (["168.63.129.16/255.255.255.255"], True),
    (["168.63.0.0/16"], True), (["168.63.129.1-168.63.129.20"], True),
    (["Any"], False), (["LocalSubnet"], False), (["10.0.0.0/8", "fe80::/64"], False)])
def test_the_azure_platform_rules_must_cover_168_63_129_16(addresses: list[str],
                                                            covered: bool) -> None:
    found = changed(rules(lambda rs: [r.update(remote_addresses=addresses) for r in rs
                                      if r["display_name"] == "AzurePlatform"]))
    assert ("firewall_azure_platform" not in found) is covered


def test_the_azure_platform_fix_is_the_pages_command_for_each_missing_direction() -> None:
    found = changed(without_display("AzurePlatform"))["firewall_azure_platform"]
    assert found.severity is Severity.WARNING
    assert found.remediation == (
        "New-NetFirewallRule -DisplayName AzurePlatform -Direction Inbound -RemoteAddress "
        "168.63.129.16 -Profile Any -Action Allow -EdgeTraversalPolicy Allow; "
        "New-NetFirewallRule -DisplayName AzurePlatform -Direction Outbound -RemoteAddress "
        "168.63.129.16 -Profile Any -Action Allow")


def test_a_missing_outbound_rule_is_info_while_outbound_traffic_is_allowed() -> None:
    def outbound_only(facts: dict[str, Any]) -> None:
        facts["firewall"]["rules"] = [r for r in facts["firewall"]["rules"]
                                      if not (r["display_name"] == "AzurePlatform"
                                              and r["direction"] == "Outbound")]
    assert changed(outbound_only)["firewall_azure_platform"].severity is Severity.INFO

    def blocked(facts: dict[str, Any]) -> None:
        outbound_only(facts)
        facts["firewall"]["profiles"][0]["default_outbound"] = "Block"
    assert changed(blocked)["firewall_azure_platform"].severity is Severity.WARNING


# -- WinHTTP proxy -------------------------------------------------------------------------
def test_winhttp_settings_are_decoded() -> None:
    assert parse_winhttp_settings(base64.b64decode(winhttp(1))) == (False, "", "")
    assert parse_winhttp_settings(base64.b64decode(
        winhttp(3, "proxy:3128", "<local>;168.63.129.16"))) == (True, "proxy:3128",
                                                              "<local>;168.63.129.16")


@pytest.mark.parametrize("bypass, ok", [("168.63.129.16", True), ("<local>;168.63.*", True),
                                        ("<local>", False), ("168.63.129.160", False)])
def test_a_proxy_needs_a_bypass_for_the_platform_address(bypass: str, ok: bool) -> None:
    found = changed(put("winhttp.settings_base64", winhttp(3, "proxy.corp:8080", bypass)))
    assert (found["winhttp_proxy"].severity is Severity.OK) is ok
    if not ok:
        assert found["winhttp_proxy"].remediation.startswith("netsh.exe winhttp reset proxy")


def test_an_unreadable_winhttp_value_is_could_not_check() -> None:
    found = changed(put("winhttp.settings_base64", base64.b64encode(b"\x28\0\0\0").decode()))
    assert found["winhttp_proxy"].message.startswith("could not check the WinHTTP proxy")


# -- the other Azure page settings -----------------------------------------------------------
def test_hyper_v_drivers_are_not_other_hypervisors_tools() -> None:
    assert by_code(ready_facts())["virtualization_tools"].severity is Severity.OK


def test_vmware_tools_and_drivers_are_named() -> None:
    def vmware(facts: dict[str, Any]) -> None:
        facts["programs"]["names"].append("VMware Tools")
        facts["all_services"]["services"] += [{"name": "vmxnet3ndis6", "start_mode": "Manual"},
                                              {"name": "VMTools", "start_mode": "Auto"}]
    finding = changed(vmware)["virtualization_tools"]
    assert "VMware Tools, vmxnet3ndis6 (vmware), VMTools (vmware)" in finding.message


def test_temp_fix_is_the_pages_command_for_the_wrong_variable_only() -> None:
    finding = changed(put("temp.temp", "C:\\Users\\Public\\Temp"))["temp"]
    assert "TEMP=C:\\Users\\Public\\Temp" in finding.message
    assert finding.remediation == (
        "Set-ItemProperty -Path 'HKLM:\\SYSTEM\\CurrentControlSet\\Control\\Session Manager"
        "\\Environment' -Name TEMP -Value \"%SystemRoot%\\TEMP\" -Type ExpandString -Force")


def test_a_persistent_default_route_is_named_as_a_static_ip_configuration() -> None:
    finding = changed(put("persistent_routes.routes", [
        {"destination": "0.0.0.0/0", "next_hop": "192.168.1.1", "interface": "Ethernet0"},
        {"destination": "10.20.0.0/16", "next_hop": "192.168.1.254", "interface": "Ethernet0"},
    ]))["persistent_routes"]
    assert "0.0.0.0/0 via 192.168.1.1 (Ethernet0)" in finding.message
    assert "static IP configuration" in finding.message
    assert finding.remediation.startswith("route.exe delete 0.0.0.0; route.exe delete 10.20.0.0")


def test_sacsvr_on_a_client_edition_needs_the_capability_first() -> None:
    def client(facts: dict[str, Any]) -> None:
        facts["os"]["product_type"] = 1
        facts["services"]["sacsvr"] = None
    finding = changed(client)["sacsvr"]
    assert finding.remediation.startswith(
        "Add-WindowsCapability -Online -Name 'Windows.Desktop.EMS-SAC.Tools~~~~0.0.1.0'; "
        "Set-Service -Name sacsvr -StartupType Automatic")


def test_rdp_keep_alive_and_reconnect_fixes_are_the_pages_commands() -> None:
    def defaults(facts: dict[str, Any]) -> None:
        rdp = facts["rdp"]
        rdp.update(keep_alive_enable=None, keep_alive_interval=None, keep_alive_timeout=0,
                   inherit_reconnect_same=0, reconnect_same=1)
    found = changed(defaults)
    assert found["rdp_keep_alive"].remediation == "; ".join([
        "Set-ItemProperty -Path 'HKLM:\\SOFTWARE\\Policies\\Microsoft\\Windows NT\\Terminal "
        "Services' -Name KeepAliveEnable -Value 1 -Type DWord -Force",
        "Set-ItemProperty -Path 'HKLM:\\SOFTWARE\\Policies\\Microsoft\\Windows NT\\Terminal "
        "Services' -Name KeepAliveInterval -Value 1 -Type DWord -Force",
        "Set-ItemProperty -Path 'HKLM:\\SYSTEM\\CurrentControlSet\\Control\\Terminal Server\\"
        "Winstations\\RDP-Tcp' -Name KeepAliveTimeout -Value 1 -Type DWord -Force"])
    assert "fInheritReconnectSame 0 (expected 1); fReconnectSame 1 (expected 0)" \
        in found["rdp_reconnect"].message


def test_max_instance_count_reads_back_as_minus_one_and_that_is_the_pages_value() -> None:
    # MaxInstanceCount 4294967295 is a DWORD 0xFFFFFFFF: PowerShell returns it as Int32 -1.
    assert "rdp_max_instances" not in changed(put("rdp.max_instance_count", -1))
    assert "rdp_max_instances" not in changed(put("rdp.max_instance_count", 4294967295))


def test_constrained_language_mode_is_named() -> None:
    finding = changed(put("language_mode", "ConstrainedLanguage"))["language_mode"]
    assert "ConstrainedLanguage" in finding.message
    assert "AppLocker or Windows Defender Application Control" in finding.message


def test_rearm_advice_is_the_registry_value_not_an_answer_file() -> None:
    finding = changed(put("rearm.remaining", 0))["rearm"]
    assert ("Set-ItemProperty -Path 'HKLM:\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\"
            "SoftwareProtectionPlatform' -Name SkipRearm -Value 1 -Type DWord -Force"
            in finding.remediation)
    assert "generalize pass" not in finding.remediation


def test_rearm_exhausted_is_fine_when_skip_rearm_is_set() -> None:
    def skip(facts: dict[str, Any]) -> None:
        facts["rearm"].update(remaining=0, skip_rearm=1)
    assert changed(skip)["rearm"].severity is Severity.OK


def test_bitlocker_absent_is_not_a_blocker() -> None:
    assert changed(put("bitlocker", {"available": False}))["bitlocker"].severity is Severity.OK


# -- Windows PowerShell 5.1 shapes -----------------------------------------------------------
@pytest.mark.parametrize("wrap", ["collapse", "psobject"])
def test_51_shapes_give_the_same_findings_as_plain_json(wrap: str) -> None:
    plain = findings_from_facts(ready_facts())
    assert findings_from_facts(in_51_shapes(ready_facts(), wrap)) == plain


def test_a_single_user_collapsed_to_a_string_is_one_user_not_its_letters() -> None:
    facts = {"appx": {"installed": [
        {"name": "D.UserOnly", "full_name": "D.UserOnly_1.0_x64__x", "signature_kind": "Store",
         "users": collapsed(["WIN\\alice"])}], "provisioned": None}}
    finding = next(f for f in findings_from_facts(facts) if f.code == "windows.appx_user_only")
    assert "(for WIN\\alice)" in finding.message


def test_a_single_pending_rename_collapsed_to_a_string_is_listed_whole() -> None:
    found = changed(put("pending_reboot.pending_file_renames",
                        get_content_string("\\??\\C:\\Temp\\stale.tmp", "C:\\x")))
    assert "delete C:\\Temp\\stale.tmp" in found["pending_file_renames"].message


def test_a_single_unattend_file_collapsed_to_a_string_is_one_path() -> None:
    found = changed(put("unattend_files", "C:\\unattend.xml"))
    assert found["unattend_files"].message.endswith(": C:\\unattend.xml")


# -- remediation text ----------------------------------------------------------------------
def worst_case_findings() -> list[Finding]:
    facts = ready_facts()
    for _code, _severity, change in CASES:
        change(facts)
    calculator_updated_by("WIN-MIGRATE01\\alice")(facts)
    return [f for f in findings_from_facts(facts) if f.remediation]


def test_remediations_use_powershell_paths() -> None:
    # The PowerShell registry drive needs its colon, and PowerShell does not expand %VAR%
    # (the page's %SystemRoot%\TEMP is a registry value, written as the page writes it).
    for finding in worst_case_findings():
        assert not re.search(r"\bHKLM\\", finding.remediation), finding
        assert "%windir%" not in finding.remediation.lower(), finding


def test_bcd_finding_lists_the_fix_commands() -> None:
    finding = changed(put("bcd.default", BCD_DEFAULT_GOOD.replace(
        "recoveryenabled         No", "recoveryenabled         Yes")))["bcd"]
    assert "recoveryenabled Yes (expected No)" in finding.message
    assert finding.remediation == 'bcdedit /set "{default}" recoveryenabled Off'


def test_parse_bcdedit_reads_settings_and_skips_headers() -> None:
    parsed = parse_bcdedit(BCD_DEFAULT_GOOD)
    assert parsed["bootstatuspolicy"] == "IgnoreAllFailures"
    assert parsed["device"] == "partition=C:"
    assert "windows" not in parsed and "-------------------" not in parsed


def test_the_services_finding_names_each_wrong_service() -> None:
    def change(facts: dict[str, Any]) -> None:
        facts["services"].update(BFE="Manual", Netman="Automatic")
    message = changed(change)["services"].message
    assert "BFE Manual (expected Automatic)" in message
    assert "Netman Automatic (expected Manual)" in message


def test_check_script_asks_for_every_service_the_rules_judge() -> None:
    line = next(l for l in script("check").splitlines() if l.startswith("$ServiceNames = @("))
    asked = set(re.findall(r"'([^']+)'", line))
    assert set(AUTOMATIC_SERVICES) | set(MANUAL_SERVICES) | {"WindowsAzureGuestAgent",
                                                              "sacsvr"} <= asked


def test_check_script_reads_every_bcd_entry_the_rules_judge() -> None:
    text = script("check")
    for entry in BCD_EXPECTED:
        assert f"{entry} = (Get-BcdEntry '{{{entry}}}')" in text


def test_check_script_ends_successfully_whatever_bcdedit_returned() -> None:
    # The stdin loader exits with $LASTEXITCODE; bcdedit's "access denied" must not turn the
    # facts of a non-administrator into a failed check (the administrator finding says it).
    lines = [line for line in script("check").splitlines() if line and not line.startswith("#")]
    assert lines[-1] == "$global:LASTEXITCODE = 0"


def test_check_script_never_matches_translated_display_groups() -> None:
    assert "DisplayGroup" not in script("check")


# The remediation each finding gives is the command Azure's preparation page gives.
PAGE_COMMANDS = [
    ("rdp_disabled", put("rdp.deny_connections", 1),
     "Set-ItemProperty -Path 'HKLM:\\SYSTEM\\CurrentControlSet\\Control\\Terminal Server' "
     "-Name fDenyTSConnections -Value 0 -Type DWord -Force"),
    ("rdp_disabled", put("rdp.policy_deny_connections", 1),
     "Set-ItemProperty -Path 'HKLM:\\SOFTWARE\\Policies\\Microsoft\\Windows NT\\Terminal Services'"
     " -Name fDenyTSConnections -Value 0 -Type DWord -Force"),
    ("rdp_port", put("rdp.port", 3390),
     "Set-ItemProperty -Path 'HKLM:\\SYSTEM\\CurrentControlSet\\Control\\Terminal Server\\"
     "Winstations\\RDP-Tcp' -Name PortNumber -Value 3389 -Type DWord -Force"),
    ("rdp_listener", put("rdp.lan_adapter", 1), "-Name LanAdapter -Value 0 -Type DWord -Force"),
    ("rdp_nla", put("rdp.user_authentication", 0),
     "-Name UserAuthentication -Value 1 -Type DWord -Force"),
    ("rdp_certificate", put("rdp.ssl_certificate_hash", True),
     "Remove-ItemProperty -Path 'HKLM:\\SYSTEM\\CurrentControlSet\\Control\\Terminal Server\\"
     "Winstations\\RDP-Tcp' -Name SSLCertificateSHA1Hash -Force"),
    ("rdp_max_instances", put("rdp.max_instance_count", 2),
     "-Name MaxInstanceCount -Value 4294967295 -Type DWord -Force"),
    ("firewall_profiles", put("firewall.profiles.0.enabled", False),
     "Set-NetFirewallProfile -Profile Domain, Public, Private -Enabled True"),
    ("firewall_winrm", rules(lambda rs: rs.clear()), "Enable-PSRemoting -Force"),
    ("firewall_icmp", without_rule("FPS-ICMP4-ERQ-In"),
     "Set-NetFirewallRule -Name FPS-ICMP4-ERQ-In -Enabled True"),
    ("winhttp_proxy", put("winhttp.settings_base64", winhttp(3, "p:80")),
     "netsh.exe winhttp reset proxy"),
    ("san_policy", put("san_policy.new_disk_policy", "OfflineShared"), "san policy=onlineall"),
    ("real_time_is_universal", put("real_time_is_universal", 0),
     "Set-ItemProperty -Path HKLM:\\SYSTEM\\CurrentControlSet\\Control\\TimeZoneInformation "
     "-Name RealTimeIsUniversal -Value 1 -Type DWord -Force"),
    ("services", put("services.w32time", "Manual"),
     "Set-Service -Name w32time -StartupType Automatic"),
    ("services", put("services.TermService", "Disabled"),
     "Set-Service -Name TermService -StartupType Manual"),
    ("sacsvr", put("services.sacsvr", "Manual"), "Set-Service -Name sacsvr -StartupType Automatic"),
    ("bcd", put("bcd.emssettings", ""), "bcdedit /emssettings EMSPORT:1 EMSBAUDRATE:115200"),
    ("bcd", put("bcd.bootmgr", ""), 'bcdedit /set "{bootmgr}" bootems yes'),
    ("bcd", put("bcd.default", BCD_DEFAULT_GOOD.replace("ems                     Yes", "")),
     'bcdedit /ems "{current}" ON'),
    ("persistent_routes", put("persistent_routes.routes", [
        {"destination": "10.0.0.0/8", "next_hop": "10.1.1.1", "interface": "Ethernet"}]),
     "route.exe delete 10.0.0.0"),
]


@pytest.mark.parametrize("code, change, command", PAGE_COMMANDS,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(PAGE_COMMANDS)])
def test_remediations_are_the_commands_of_azures_page(code: str, change: Change,
                                                      command: str) -> None:
    finding = changed(change)[code]
    assert finding.severity in (Severity.WARNING, Severity.INFO)
    assert command in finding.remediation


def test_ems_port_and_speed_are_checked_and_fixed_by_one_command() -> None:
    finding = changed(put("bcd.emssettings", BCD_EMSSETTINGS_GOOD.replace("115200", "9600")
                          .replace("emsport                 1", "emsport                 2")))["bcd"]
    assert "{emssettings} emsport 2 (expected 1)" in finding.message
    assert "{emssettings} emsbaudrate 9600 (expected 115200)" in finding.message
    assert finding.remediation == "bcdedit /emssettings EMSPORT:1 EMSBAUDRATE:115200"

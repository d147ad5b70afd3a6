"""Rules about the guest's own state: rights, PowerShell policy, BitLocker, pending work,
unattend files left behind, activation re-arms, the guest agent and unreadable values."""
from __future__ import annotations

import re

from typing import Any

from ...plan import Finding, Severity
from .shapes import (
    as_int, as_text, could_not_check, Facts, new_finding, passed, ps_list, ps_value,
    read_section, set_dword,
)


# Defender attack surface reduction: "Block execution of potentially obfuscated scripts".
ASR_OBFUSCATED_SCRIPTS = "5beb7efe-fd9a-4556-801d-275e5ffc04cc"

ASR_BLOCK = 1

SOFTWARE_PROTECTION = ("HKLM:\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\"
                       "SoftwareProtectionPlatform")

def check_administrator(facts: Facts) -> list[Finding]:
    is_admin = ps_value(facts.get("is_admin"))
    if is_admin is True:
        return passed("administrator", "the WinRM user is an administrator")
    message = ("the WinRM user is not an administrator" if is_admin is False else
               "could not confirm that the WinRM user is an administrator")
    return [new_finding("administrator", Severity.BLOCKER,
                     message + ": Sysprep and the checks need it",
                     "connect as a member of the local Administrators group")]

def check_language_mode(facts: Facts) -> list[Finding]:
    if "language_mode" not in facts:
        return could_not_check("language_mode", "the PowerShell language mode",
                          "the check script did not report it",
                          "run $ExecutionContext.SessionState.LanguageMode on the VM")
    mode = as_text(facts.get("language_mode"))
    lockdown = as_int(facts.get("lockdown_policy"))
    if mode.lower() == "fulllanguage" and lockdown != 4:
        return passed("language_mode", "PowerShell runs in FullLanguage mode")
    cause = ("__PSLockdownPolicy=4 in the machine environment" if lockdown == 4
             else "an AppLocker or Windows Defender Application Control policy")
    return [new_finding("language_mode", Severity.WARNING,
                     f"PowerShell runs in {mode or 'a restricted'} mode ({cause}): azlift's "
                     "scripts and the Azure provisioning scripts that run at first boot can "
                     "be blocked",
                     "allow the scripts in the AppLocker/WDAC policy (or remove "
                     "__PSLockdownPolicy) for the duration of the migration")]

def check_script_blocking(facts: Facts) -> list[Finding]:
    info, reason = read_section(facts, "script_blocking")
    if reason:
        return could_not_check("script_blocking", "Defender's script-blocking rules", reason,
                          "Get-MpPreference | Select-Object AttackSurfaceReductionRules_*",
                          Severity.INFO)
    if not info.get("available"):
        return passed("script_blocking", "Microsoft Defender's cmdlets are not installed")
    rules = dict(zip((str(i).lower() for i in ps_list(info.get("asr_rule_ids"))),
                     (as_int(a) for a in ps_list(info.get("asr_rule_actions")))))
    if rules.get(ASR_OBFUSCATED_SCRIPTS) == ASR_BLOCK:
        return [new_finding("script_blocking", Severity.WARNING,
                         "Defender's attack surface reduction rule 'Block execution of "
                         "potentially obfuscated scripts' is in block mode; Azure's page asks "
                         "to disable script blockers that can stop the provisioning scripts",
                         "Add-MpPreference -AttackSurfaceReductionRules_Ids "
                         f"{ASR_OBFUSCATED_SCRIPTS} -AttackSurfaceReductionRules_Actions "
                         "AuditMode (for the migration)")]
    return passed("script_blocking", "no Defender rule blocks obfuscated scripts")

BITLOCKER_PROTECTION = {0: "Off", 1: "On", 2: "Unknown"}

BITLOCKER_VOLUME = {0: "FullyDecrypted", 1: "FullyEncrypted", 2: "EncryptionInProgress",
                    3: "DecryptionInProgress", 4: "EncryptionPaused", 5: "DecryptionPaused"}

def check_bitlocker(facts: Facts) -> list[Finding]:
    info, reason = read_section(facts, "bitlocker")
    if reason:
        return could_not_check("bitlocker", "BitLocker on the OS volume", reason,
                          "check with 'manage-bde -status C:' that the volume is "
                          "FullyDecrypted")
    if info.get("available") is False:
        return passed("bitlocker", "BitLocker is not installed")

    def named(value: Any, names: dict[int, str]) -> str:
        number = as_int(value)
        return names.get(number, str(number)) if number is not None else as_text(value)

    protection = named(info.get("protection_status"), BITLOCKER_PROTECTION)
    status = named(info.get("volume_status"), BITLOCKER_VOLUME)
    if protection.lower() == "off" and status.lower() == "fullydecrypted":
        return passed("bitlocker", "BitLocker is off on the OS volume")
    return [new_finding("bitlocker", Severity.BLOCKER,
                     f"BitLocker on the OS volume: protection {protection or '?'}, "
                     f"volume {status or '?'}; Sysprep needs the drive fully decrypted",
                     "run 'manage-bde -off C:' (or Disable-BitLocker -MountPoint C:) and "
                     "wait until the volume reports FullyDecrypted")]

def _rename_pairs(entries: list[Any]) -> list[str]:
    """PendingFileRenameOperations: (source, destination) pairs; empty destination = delete."""
    texts = [as_text(entry).removeprefix("\\??\\") for entry in entries]
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
        return could_not_check("pending_reboot", "for a pending reboot",
                          "the check script did not report it",
                          "restart the VM, then run this again")
    reasons = []
    if info.get("cbs") or info.get("cbs_reboot_in_progress") or info.get("cbs_packages_pending"):
        reasons.append("Component Based Servicing")
    if info.get("windows_update"):
        reasons.append("Windows Update")
    active, pending = as_text(info.get("active_computer_name")), as_text(info.get("computer_name"))
    if active and pending and active.lower() != pending.lower():
        reasons.append(f"computer rename {active} -> {pending}")
    if info.get("netlogon_join_domain") or info.get("netlogon_avoid_spn_set"):
        reasons.append("domain join")
    findings = [new_finding(
        "pending_reboot", Severity.BLOCKER,
        "a reboot is pending (" + ", ".join(reasons) + "); Sysprep fails or the first "
        "boot in Azure restarts unexpectedly",
        "finish installing updates and restart the VM, then run this again")] if reasons \
        else passed("pending_reboot", "no reboot is pending (Component Based Servicing, Windows "
                 "Update, computer rename, domain join)")
    renames = _rename_pairs(ps_list(info.get("pending_file_renames"))
                            + ps_list(info.get("pending_file_renames_2")))
    if renames:
        shown = "; ".join(renames[:10]) + (f"; and {len(renames) - 10} more"
                                           if len(renames) > 10 else "")
        findings.append(new_finding(
            "pending_file_renames", Severity.WARNING,
            f"{len(renames)} file operation(s) wait for a restart "
            f"(PendingFileRenameOperations): {shown}",
            "restart the VM to let Windows apply them; entries that some software queues "
            "again at every boot can be left"))
    return findings

def check_unattend(facts: Facts) -> list[Finding]:
    if "unattend_files" not in facts:
        return could_not_check("unattend_files", "for leftover answer files",
                          "the check script did not report it",
                          "look for unattend.xml and autounattend.xml in C:\\, "
                          "C:\\Windows\\Panther and C:\\Windows\\System32\\Sysprep")
    files = [as_text(path) for path in ps_list(facts.get("unattend_files"))]
    if not files:
        return passed("unattend_files", "no leftover unattend/answer files")
    in_panther = [f for f in files if re.search(r"\\Windows\\Panther\\", f, re.IGNORECASE)]
    elsewhere = [f for f in files if f not in in_panther]
    findings = []
    if elsewhere:
        findings.append(new_finding(
            "unattend_files", Severity.BLOCKER,
            "leftover answer files Windows Setup would apply on first boot in Azure "
            "(a custom unattend.xml is not supported there): " + ", ".join(elsewhere),
            "delete or move them out of the system drive before generalizing"))
    if in_panther:
        findings.append(new_finding(
            "unattend_panther", Severity.INFO,
            "answer files in the Panther folder: " + ", ".join(in_panther),
            "the plan deletes C:\\Windows\\Panther before Sysprep, as Azure's page says"))
    return findings

SHOW_REARM_COUNT = ("cscript //nologo \"$env:WINDIR\\System32\\slmgr.vbs\" /dlv (Remaining "
                    "Windows rearm count)")

def check_rearm(facts: Facts) -> list[Finding]:
    info, reason = read_section(facts, "rearm")
    remaining = as_int(info.get("remaining"))
    if reason or remaining is None:
        return could_not_check("rearm", "the Windows rearm count", reason or "it was not reported",
                          SHOW_REARM_COUNT)
    skip = as_int(info.get("skip_rearm")) == 1
    if remaining <= 0 and not skip:
        return [new_finding("rearm", Severity.BLOCKER,
                         "no Windows rearm left (RemainingWindowsReArmCount 0): Sysprep "
                         "/generalize fails with a fatal error",
                         "set the SkipRearm registry value (an answer file is not an option: "
                         "Azure does not support custom answer files): "
                         + set_dword(SOFTWARE_PROTECTION, "SkipRearm", 1)
                         + "; or rebuild from a fresh installation")]
    return passed("rearm", f"{remaining} Windows rearm(s) left"
               + (" (SkipRearm is set)" if skip else ""))

def check_guest_agent(facts: Facts) -> list[Finding]:
    services = ps_value(facts.get("services")) or {}
    if services.get("WindowsAzureGuestAgent") is not None:
        return passed("guest_agent", "the Windows Azure Guest Agent is installed")
    return [new_finding("guest_agent", Severity.WARNING,
                     "the Windows Azure Guest Agent is not installed: VM extensions (password "
                     "reset, RDP repair) will not work",
                     "install the Azure VM Agent (WindowsAzureVmAgent.msi) before generalizing")]

def check_read_errors(facts: Facts) -> list[Finding]:
    """Registry values the script could not read: the rules above saw them as unset."""
    errors = ps_value(facts.get("read_errors"))
    if not isinstance(errors, dict) or not errors:
        return []
    return [new_finding("registry_reads", Severity.WARNING,
                     "could not read registry values, so the checks that use them are "
                     "unconfirmed: " + "; ".join(f"{path} ({' '.join(as_text(reason).split())})"
                                                 for path, reason in errors.items()),
                     "run the check as a member of the local Administrators group")]

"""Raw facts from check.ps1 → readiness findings (code, severity, remediation).

The guest script only gathers facts; every decision lives here, as small rules that take
the facts dictionary and return findings, grouped by what they are about. Expected values
follow Microsoft's "Prepare a Windows VHD or VHDX to upload to Azure" page and its
"generalize" page.
"""
from __future__ import annotations

from collections.abc import Iterable

from ...plan import Finding
from .shapes import PAGE, Facts, Rule
from .appx import check_appx, updated_appx, user_only_appx
from .guest_state import (
    check_administrator, check_bitlocker, check_guest_agent, check_language_mode,
    check_pending_reboot, check_read_errors, check_rearm, check_script_blocking,
    check_unattend,
)
from .remote_access import (
    parse_winhttp_settings,
    check_firewall, check_rdp, check_rdp_session, check_winhttp_proxy, check_winrm_listener,
)
from .system import (
    AUTOMATIC_SERVICES, BCD_EXPECTED, MANUAL_SERVICES, parse_bcdedit,
    check_bcd, check_cdrom, check_pagefile, check_persistent_routes,
    check_real_time_is_universal, check_removable_storage, check_sacsvr, check_san_policy,
    check_services, check_temp, check_virtualization_tools,
)

__all__ = [
    "AUTOMATIC_SERVICES", "BCD_EXPECTED", "MANUAL_SERVICES", "PAGE", "RULES", "Facts", "Rule",
    "findings_from_facts", "parse_bcdedit", "parse_winhttp_settings", "updated_appx",
    "user_only_appx",
]

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

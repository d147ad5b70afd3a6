"""AppX packages that make Sysprep fail: installed for one user only, or updated by one
user after being provisioned (KB2769827)."""
from __future__ import annotations

from typing import Any

from ...plan import Finding, Severity
from .shapes import (
    as_text, could_not_check, Facts, new_finding, passed, ps_list, ps_value, read_section,
)


def _removable_appx(package: dict[str, Any]) -> bool:
    return (isinstance(package, dict) and not package.get("is_framework")
            and not package.get("non_removable")
            and as_text(package.get("signature_kind")).lower() != "system"
            and bool(ps_list(package.get("users"))))

def _provisioned(appx: dict[str, Any]) -> dict[str, set[str]]:
    """Provisioned display name → its provisioned package (full) names, lower case.
    A bare string is a name whose package name was not reported."""
    found: dict[str, set[str]] = {}
    for entry in ps_list(appx.get("provisioned")):
        if isinstance(entry, dict):
            names = found.setdefault(as_text(entry.get("name")).lower(), set())
            if entry.get("package_name"):
                names.add(as_text(entry.get("package_name")).lower())
        else:
            found.setdefault(as_text(entry).lower(), set())
    return found

def user_only_appx(facts: Facts) -> list[dict[str, Any]]:
    """AppX packages installed for some user but not provisioned for all users."""
    appx = ps_value(facts.get("appx"))
    if not isinstance(appx, dict):
        return []
    provisioned = _provisioned(appx)
    packages = [p for p in ps_list(appx.get("installed")) if _removable_appx(p)]
    has_main = {as_text(p.get("name")).lower() for p in packages if not p.get("is_bundle")}
    return [p for p in packages if as_text(p.get("name")).lower() not in provisioned
            and not (p.get("is_bundle") and as_text(p.get("name")).lower() in has_main)]

def updated_appx(facts: Facts) -> tuple[list[tuple[dict[str, Any], list[str]]], list[str]]:
    """Provisioned packages that a user updated (KB2769827 scenario 3): ([(installed
    package, provisioned package names)], names that could not be compared)."""
    appx = ps_value(facts.get("appx"))
    if not isinstance(appx, dict):
        return [], []
    packages = [p for p in ps_list(appx.get("installed")) if _removable_appx(p)]
    updated, unknown = [], []
    for name, package_names in _provisioned(appx).items():
        mine = [p for p in packages if as_text(p.get("name")).lower() == name]
        if not mine:
            continue
        # A provisioned bundle's PackageName is the bundle's full name ("..._neutral_~_...").
        bundled = any("_~_" in package_name for package_name in package_names)
        comparable = [p for p in mine if bool(p.get("is_bundle")) == bundled]
        if not package_names or not comparable:
            unknown.append(name)
            continue
        updated.extend((p, sorted(package_names)) for p in comparable
                       if as_text(p.get("full_name")).lower() not in package_names)
    return updated, unknown

def _for_users(package: dict[str, Any]) -> str:
    return ", ".join(as_text(user) for user in ps_list(package.get("users")))

def _remove_for_users(package: dict[str, Any]) -> list[str]:
    full = as_text(package.get("full_name")) or as_text(package.get("name"))
    return [f"Remove-AppxPackage -Package {full} -User '{as_text(user)}'"
            for user in ps_list(package.get("users"))]

def check_appx(facts: Facts) -> list[Finding]:
    appx, reason = read_section(facts, "appx")
    if reason:
        return could_not_check("appx", "AppX packages (Sysprep fails on packages installed or "
                          "updated for one user only)", reason,
                          "as an administrator: Get-AppxPackage -AllUsers | Format-List "
                          "PackageFullName, PackageUserInformation (KB2769827)")
    findings = []
    user_only = user_only_appx(facts)
    if user_only:
        described = ", ".join(f"{as_text(p.get('full_name')) or as_text(p.get('name'))} "
                              f"(for {_for_users(p)})" for p in user_only)
        commands = [c for p in user_only for c in _remove_for_users(p)]
        findings.append(new_finding(
            "appx_user_only", Severity.BLOCKER,
            "AppX packages installed for a user but not provisioned for all users "
            f"(Sysprep fails on these): {described}",
            "remove them for each user listed, as KB2769827 says (as that user, or as an "
            "administrator with -User): " + "; ".join(commands)))
    updated, unknown = updated_appx(facts)
    if updated:
        described = ", ".join(f"{as_text(p.get('full_name'))} (for {_for_users(p)}; "
                              f"provisioned: {', '.join(names)})" for p, names in updated)
        commands = [c for p, _names in updated for c in _remove_for_users(p)]
        commands += [f"Remove-AppxProvisionedPackage -Online -PackageName {name}"
                     for _p, names in updated for name in names]
        findings.append(new_finding(
            "appx_updated", Severity.BLOCKER,
            "provisioned AppX packages that a user updated (Sysprep fails on these, "
            f"KB2769827): {described}",
            "remove the package for each user listed and its provisioning, as KB2769827 "
            "says (reprovision the app afterwards if it is needed): "
            + "; ".join(dict.fromkeys(commands))))
    if unknown:
        findings.append(new_finding(
            "appx_updated", Severity.INFO,
            "could not compare the installed and provisioned versions of: "
            + ", ".join(sorted(unknown)),
            "Get-AppxPackage -AllUsers -PackageTypeFilter Bundle lists the installed bundles"))
    return findings or passed("appx", "every AppX package installed for a user is provisioned "
                           "as it is")

"""Reading check.ps1's facts as Windows PowerShell 5.1 writes them, and building findings.

5.1's ``ConvertTo-Json`` wraps strings that carry note properties as ``{"value": ..,
"PSPath": ..}``, arrays in a PSObject as ``{"value": [...], "Count": n}``, and can collapse a
one-element list to the bare element; ``ps_value``/``ps_list`` undo that. A section the script
could not query comes as ``{"error": ...}``: ``read_section`` turns it into a reason, so the
rule reports "could not check", never a pass.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...plan import Finding, Severity


PAGE = "Azure 'Prepare a Windows VHD to upload to Azure'"

Facts = dict[str, Any]

Rule = Callable[[Facts], list[Finding]]

PS_NOTE_PROPERTIES = {"PSPath", "PSParentPath", "PSChildName", "PSDrive", "PSProvider",
                      "ReadCount", "Count", "Length"}

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

def as_text(value: Any) -> str:
    value = ps_value(value)
    return "" if value is None else str(value)

def as_int(value: Any) -> int | None:
    try:
        return int(ps_value(value))
    except (TypeError, ValueError):
        return None

def read_section(facts: Facts, key: str) -> tuple[dict[str, Any], str | None]:
    """(section, reason it could not be checked, or None)."""
    if key not in facts:
        return {}, "the check script did not report it"
    value = ps_value(facts[key])
    if isinstance(value, dict) and value.get("error") is not None:
        return {}, error_reason(value)
    return (value if isinstance(value, dict) else {}), None

def error_reason(error: dict[str, Any]) -> str:
    message = " ".join(as_text(error.get("error")).split()) or "unknown error"
    command = as_text(error.get("command"))
    error_id = as_text(error.get("error_id"))
    if error_id.startswith("CommandNotFoundException"):
        return f"{command or 'a cmdlet it needs'} is not available on this Windows"
    if "ConstrainedLanguage" in error_id:
        message = f"blocked by PowerShell's Constrained Language Mode: {message}"
    return f"{command}: {message}" if command and command not in message else message

def new_finding(code: str, severity: Severity, message: str, remediation: str = "") -> Finding:
    return Finding(code=f"windows.{code}", severity=severity, message=message,
                   remediation=remediation)

def passed(code: str, message: str) -> list[Finding]:
    return [new_finding(code, Severity.OK, message)]

def could_not_check(code: str, what: str, reason: str, remediation: str,
               severity: Severity = Severity.WARNING) -> list[Finding]:
    return [new_finding(code, severity, f"could not check {what} ({reason})", remediation)]

def set_dword(path: str, name: str, value: int) -> str:
    """The page's own command for one registry setting."""
    return f"Set-ItemProperty -Path '{path}' -Name {name} -Value {value} -Type DWord -Force"

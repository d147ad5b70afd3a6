"""Reading Sysprep's logs: the error lines worth showing and the AppX packages they name."""
from __future__ import annotations

import re

# setuperr.log / setupact.log lines: "2024-05-01 10:00:00, Error  SYSPRP Package ... "
_ERROR_LINE = re.compile(r",\s*(Error|Fatal)\s", re.IGNORECASE)
# "SYSPRP Package Microsoft.BingWeather_4.53.1_x64__8wekyb3d8bbwe was installed for a
# user, but not provisioned for all users."
_APPX_PACKAGE = re.compile(r"Package\s+(\S+?)\s+was installed for a user", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")


def log_text(value: object) -> str | None:
    """A log as fetch_logs.ps1 reported it, as text. Windows PowerShell 5.1 serializes a
    string read by Get-Content with its note properties, as ``{"value": ..., "PSPath": ...}``;
    the script avoids that, and this accepts it anyway (and a list of lines)."""
    if value is None:
        return None
    if isinstance(value, dict):
        return log_text(value.get("value"))
    if isinstance(value, list):
        return "\n".join(text for item in value if (text := log_text(item)) is not None)
    return str(value)


def error_lines(*logs: str | None, limit: int = 12) -> list[str]:
    """The distinct error lines of the given logs, in order, whitespace folded."""
    found: list[str] = []
    for log in logs:
        for line in (log or "").splitlines():
            if _ERROR_LINE.search(line):
                folded = _WHITESPACE.sub(" ", line).strip()
                if folded not in found:
                    found.append(folded)
    return found[:limit]


def appx_packages(*logs: str | None) -> list[str]:
    """AppX packages Sysprep refused because they are installed for a user only."""
    names: list[str] = []
    for log in logs:
        for name in _APPX_PACKAGE.findall(log or ""):
            if name not in names:
                names.append(name)
    return names


def failure_summary(setuperr: object, setupact_tail: object) -> str:
    """One line for the error message: AppX packages first, then the error lines. The logs
    may come in any shape ``log_text`` reads."""
    setuperr, setupact_tail = log_text(setuperr), log_text(setupact_tail)
    parts = []
    packages = appx_packages(setuperr, setupact_tail)
    if packages:
        parts.append("AppX package(s) installed for a user but not provisioned for all users: "
                     + ", ".join(packages) + " (remove them with Remove-AppxPackage for each "
                     "user, or provision them, then run again)")
    lines = error_lines(setuperr, setupact_tail)
    if lines:
        parts.append("setuperr.log/setupact.log: " + " | ".join(lines))
    if not parts:
        parts.append("no error lines in setuperr.log or the tail of setupact.log")
    return "; ".join(parts)

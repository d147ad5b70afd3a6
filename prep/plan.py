"""Plan, then act: typed findings and steps shared by the Linux and Windows preparers."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Severity(str, Enum):
    """How much a finding matters: ``blocker`` makes a check exit 1."""

    BLOCKER = "blocker"
    WARNING = "warning"
    INFO = "info"
    OK = "ok"


@dataclass(frozen=True)
class Finding:
    """One readiness check result: a stable code, a severity and what to do about it."""

    code: str
    severity: Severity
    message: str
    remediation: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "severity": self.severity.value,
                "message": self.message, "remediation": self.remediation}


@dataclass(frozen=True)
class Step:
    """One action of a plan: what it does, the command that does it, whether it destroys."""

    description: str
    command: str
    destructive: bool = False
    source: str = ""  # where the step comes from (documentation page, agent behaviour)

    def to_dict(self) -> dict[str, Any]:
        return {"description": self.description, "command": self.command,
                "destructive": self.destructive, "source": self.source}


@dataclass(frozen=True)
class Plan:
    """Ordered steps plus warnings, built before anything runs."""

    target: str
    steps: tuple[Step, ...]
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def destructive(self) -> bool:
        return any(step.destructive for step in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "steps": [s.to_dict() for s in self.steps],
                "warnings": list(self.warnings)}


BACKUP_REMINDER = (
    "Generalizing destroys this machine's identity (accounts, host keys, machine id) and "
    "powers it off: back the VM up or take a snapshot first, and run this on a copy you "
    "can throw away."
)


def blocking(findings: list[Finding]) -> list[Finding]:
    """The findings that make the guest not ready."""
    return [f for f in findings if f.severity is Severity.BLOCKER]

"""Linux guests: distribution families, readiness checks and deprovision plans."""
from __future__ import annotations

from .checks import CHECKS, evaluate
from .deprovision import DeprovisionPlan, build_plan, check_deleted_user
from .facts import Facts, gather
from .families import FAMILIES_BY_ID, Detection, Family, detect_family
from .os_release import OsRelease, parse_os_release
from .prepare import Inspection, Outcome, deprovision, inspect

__all__ = [
    "CHECKS", "FAMILIES_BY_ID", "Detection", "DeprovisionPlan", "Facts", "Family",
    "Inspection", "OsRelease", "Outcome", "build_plan", "check_deleted_user", "deprovision",
    "detect_family",
    "evaluate", "gather", "inspect", "parse_os_release",
]

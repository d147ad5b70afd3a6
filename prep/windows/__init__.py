"""Windows guests over WinRM: readiness checks, the Sysprep plan, completion detection."""
from __future__ import annotations

from .findings import findings_from_facts, parse_bcdedit, user_only_appx
from .logs import appx_packages, error_lines, failure_summary
from .preparer import (
    WindowsPrepOptions,
    WindowsPrepResult,
    build_plan,
    execute,
    gather_facts,
    refuse_if_blocked,
    run_checks,
)
from .scripts import ps_literal, script
from .shutdown import host_answers, shut_down, wait_until_unreachable
from .sysprep import (
    GENERALIZED,
    MODE_VM_HELP,
    UNDEPLOYABLE,
    ImageStatePoll,
    SysprepStart,
    read_image_state,
    start_sysprep,
    sysprep_arguments,
    wait_for_generalized,
)

__all__ = [
    "GENERALIZED",
    "MODE_VM_HELP",
    "UNDEPLOYABLE",
    "ImageStatePoll",
    "SysprepStart",
    "WindowsPrepOptions",
    "WindowsPrepResult",
    "appx_packages",
    "build_plan",
    "error_lines",
    "execute",
    "failure_summary",
    "findings_from_facts",
    "gather_facts",
    "host_answers",
    "parse_bcdedit",
    "ps_literal",
    "read_image_state",
    "refuse_if_blocked",
    "run_checks",
    "script",
    "shut_down",
    "start_sysprep",
    "sysprep_arguments",
    "user_only_appx",
    "wait_for_generalized",
    "wait_until_unreachable",
]

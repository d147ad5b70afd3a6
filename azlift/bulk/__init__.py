"""Bulk runs: many VMs' disks from a manifest, on Dask, resumable, with a report.

The orchestration layer above ``upload`` and ``vhd``: manifest schema, state store, the
engine seam, the tasks workers run, Azure throttling and the report. No typer or tqdm
here: progress reaches the CLI through callbacks. Dask is imported only when an engine
is built.
"""
from __future__ import annotations

from .errors import (
    BulkError,
    ClusterError,
    InsecureListenError,
    ManifestError,
    RunInterrupted,
    SecretInManifestError,
    StateError,
    TlsConfigError,
    TlsRefusedError,
    VerifyFailedError,
)
from .manifest import (
    SCHEMA,
    DiskSpec,
    Limits,
    Manifest,
    Settings,
    SourceSpec,
    VmSpec,
    load_manifest,
    parse_manifest,
)
from .prep_spec import PrepSpec
from .state import StateStore, default_state_path
from .report import build_report, report_csv
from .engine import DaskEngine, InProcessEngine, TaskContext
from .throttle import LeasedWindow, ThrottledTarget
from .runner import (
    Coordinator,
    check_all,
    embedded_resources,
    new_run_id,
    plan,
    source_resources,
)
from .prep_phase import guests_to_prep, plan_guests

__all__ = [
    "BulkError",
    "ClusterError",
    "Coordinator",
    "DaskEngine",
    "DiskSpec",
    "InProcessEngine",
    "InsecureListenError",
    "LeasedWindow",
    "Limits",
    "Manifest",
    "ManifestError",
    "PrepSpec",
    "RunInterrupted",
    "SCHEMA",
    "SecretInManifestError",
    "Settings",
    "SourceSpec",
    "StateError",
    "StateStore",
    "TaskContext",
    "TlsConfigError",
    "TlsRefusedError",
    "ThrottledTarget",
    "VerifyFailedError",
    "VmSpec",
    "build_report",
    "check_all",
    "default_state_path",
    "embedded_resources",
    "guests_to_prep",
    "load_manifest",
    "new_run_id",
    "parse_manifest",
    "plan",
    "plan_guests",
    "report_csv",
    "source_resources",
]

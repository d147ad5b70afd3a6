"""Upload disk images to Azure page blobs or managed disks, then register them."""
from __future__ import annotations

import importlib
from typing import Any

from .errors import (
    ArmError,
    AuthError,
    BlobCheckError,
    ContainerNotFoundError,
    DiskBusyError,
    HintConflictError,
    JournalError,
    NotReadyError,
    ResumeMismatchError,
    ServiceError,
    TargetExistsError,
    TargetSizeError,
    TransientServiceError,
    UnreachableError,
    UploadError,
    UploadInterrupted,
    UsageError,
)

# Everything but the errors loads on first use (PEP 562): `azlift upload` must not pay
# for the ARM SDK (azure-mgmt-compute), which only registration and managed disks need.
_LAZY = {
    "AuthOptions": "auth",
    "ResolvedBlob": "auth",
    "resolve_blob": "auth",
    "Fingerprint": "journal",
    "Journal": "journal",
    "state_dir": "journal",
    "FixedVhdLayout": "stream",
    "fixed_vhd_layout": "stream",
    "BlobPageTarget": "target",
    "DiskPageTarget": "target",
    "BlobState": "target",
    "PageTarget": "target",
    "RetrySettings": "target",
    "ProgressEvent": "uploader",
    "UploadSummary": "uploader",
    "upload_image": "uploader",
    "upload_stream": "pipe",
    "Difference": "verify",
    "VerifyReport": "verify",
    "verify_upload": "verify",
    "ArmTarget": "arm",
    "RecordingTransport": "arm",
    "compute_client": "arm",
    "BlobDiskImage": "blob_source",
    "BlobFacts": "blob_source",
    "inspect_blob": "blob_source",
    "Outcome": "register",
    "Reconciled": "register",
    "Registrar": "register",
    "reconcile_with_hints": "register",
}

__all__ = [
    "AuthError",
    "AuthOptions",
    "BlobPageTarget",
    "DiskPageTarget",
    "BlobState",
    "ContainerNotFoundError",
    "Fingerprint",
    "FixedVhdLayout",
    "Journal",
    "PageTarget",
    "ProgressEvent",
    "ResolvedBlob",
    "RetrySettings",
    "TargetSizeError",
    "TransientServiceError",
    "UploadInterrupted",
    "UploadSummary",
    "fixed_vhd_layout",
    "resolve_blob",
    "state_dir",
    "upload_image",
    "upload_stream",
    "Difference",
    "VerifyReport",
    "verify_upload",
    "JournalError",
    "NotReadyError",
    "ResumeMismatchError",
    "ServiceError",
    "TargetExistsError",
    "UnreachableError",
    "UploadError",
    "UsageError",
    "ArmError",
    "ArmTarget",
    "BlobCheckError",
    "BlobDiskImage",
    "BlobFacts",
    "DiskBusyError",
    "HintConflictError",
    "Outcome",
    "Reconciled",
    "RecordingTransport",
    "Registrar",
    "compute_client",
    "inspect_blob",
    "reconcile_with_hints",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'upload' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

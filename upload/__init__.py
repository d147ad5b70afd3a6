"""Upload disk images to Azure page blobs or managed disks, then register them."""
from __future__ import annotations

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
from .auth import AuthOptions, ResolvedBlob, resolve_blob
from .journal import Fingerprint, Journal, state_dir
from .stream import FixedVhdLayout, fixed_vhd_layout
from .target import BlobPageTarget, BlobState, PageTarget, RetrySettings
from .uploader import ProgressEvent, UploadSummary, upload_image
from .pipe import upload_stream
from .verify import Difference, VerifyReport, verify_upload
from .arm import ArmTarget, RecordingTransport, compute_client
from .blob_source import BlobDiskImage, BlobFacts, inspect_blob
from .register import Outcome, Reconciled, Registrar, reconcile_with_hints

__all__ = [
    "AuthError",
    "AuthOptions",
    "BlobPageTarget",
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

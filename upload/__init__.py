"""Upload disk images to Azure page blobs or managed disks, then register them."""
from __future__ import annotations

from .errors import (
    AuthError,
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

__all__ = [
    "AuthError",
    "AuthOptions",
    "BlobPageTarget",
    "BlobState",
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
    "NotReadyError",
    "ResumeMismatchError",
    "ServiceError",
    "TargetExistsError",
    "UnreachableError",
    "UploadError",
    "UsageError",
]

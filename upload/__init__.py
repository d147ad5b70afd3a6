"""Upload disk images to Azure page blobs or managed disks, then register them."""
from __future__ import annotations

from .errors import (
    AuthError,
    NotReadyError,
    ResumeMismatchError,
    ServiceError,
    TargetExistsError,
    UnreachableError,
    UploadError,
    UsageError,
)

__all__ = [
    "AuthError",
    "NotReadyError",
    "ResumeMismatchError",
    "ServiceError",
    "TargetExistsError",
    "UnreachableError",
    "UploadError",
    "UsageError",
]

"""The upload package's exception tree (page blobs, managed disks, registration)."""
from __future__ import annotations


class UploadError(Exception):
    """Base of every error the upload package raises."""

    code = "upload_error"
    exit_code = 4


class ServiceError(UploadError):
    """Azure (or the emulator) answered with an error after retries."""

    code = "service_error"

    def __init__(self, message: str, *, service_code: str | None = None,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.service_code = service_code
        self.status = status


class AuthError(ServiceError):
    """The credential was refused or is missing."""

    code = "auth_failed"


class ContainerNotFoundError(ServiceError):
    """The blob's container does not exist, and it may or could not be created."""

    code = "container_not_found"


class UnreachableError(ServiceError):
    """The endpoint could not be reached within the time allowed."""

    code = "unreachable"


class TargetExistsError(UploadError):
    """The blob or disk exists and neither overwrite nor resume was asked for."""

    code = "target_exists"
    exit_code = 5


class ResumeMismatchError(UploadError):
    """The recorded upload does not belong to this source or target."""

    code = "resume_mismatch"
    exit_code = 5


class NotReadyError(UploadError):
    """The image breaks an Azure rule; nothing was sent."""

    code = "not_ready"
    exit_code = 1


class UsageError(UploadError):
    """Options that contradict each other or name something malformed."""

    code = "usage"
    exit_code = 2


class ArmError(ServiceError):
    """Azure Resource Manager refused a request or a long-running operation failed."""

    code = "arm_error"


class BlobCheckError(NotReadyError):
    """The source blob is missing or is not an Azure-ready fixed VHD page blob."""

    code = "blob_not_ready"


class HintConflictError(NotReadyError):
    """The requested OS type or Hyper-V generation contradicts what the disk itself shows."""

    code = "hint_conflict"


class DiskBusyError(UploadError):
    """A managed disk is in a state that blocks the request (e.g. left in ActiveUpload)."""

    code = "disk_busy"
    exit_code = 5


class TransientServiceError(ServiceError):
    """A failure worth re-trying (5xx, timeout, reset) that outlived the retry policy."""

    code = "service_unavailable"


class TargetSizeError(UploadError):
    """The existing blob or disk has another length than the fixed VHD needs."""

    code = "target_size"
    exit_code = 5


class UploadInterrupted(UploadError):
    """The upload was cancelled; acknowledged ranges are kept for ``--resume``."""

    code = "interrupted"
    exit_code = 130


class JournalError(UploadError):
    """The resume journal cannot be written in the state directory."""

    code = "journal_error"
    exit_code = 3

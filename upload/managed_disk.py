"""Direct upload into a managed disk: create (Upload), grant Write, send pages, revoke.

No storage account is involved: ARM creates the disk with the exact upload size (the
fixed VHD's length including its footer), hands out a write SAS for the disk's hidden
page blob, and seals the disk when access is revoked. Revoke is attempted on every way
out unless the caller asked to keep the disk open for a later resume.
"""
from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from azure.mgmt.compute import models

from azlift.vhd import MIB
from azlift.vhd._vhd_structs import FOOTER_SIZE

from .arm import ResourceId, arm_errors, read_or_none
from .errors import (
    ArmError,
    DiskBusyError,
    NotReadyError,
    ResumeMismatchError,
    TargetExistsError,
)
from .register import Registrar, disk_sku

MIN_UPLOAD_BYTES = 20 * MIB + FOOTER_SIZE
MAX_UPLOAD_BYTES = 32 * 1024 * 1024 * MIB + FOOTER_SIZE
GRANT_SECONDS = 24 * 3600

SendPages = Callable[[str, bool], Any]  # (write SAS URL, resume) -> UploadSummary
ArmGate = Callable[[], AbstractContextManager[Any]]  # held around each ARM write


def check_upload_size(size: int) -> None:
    """ARM's rule for uploadSizeBytes: whole MiB + 512, 20 MiB + 512 .. 32 TiB + 512."""
    if (size - FOOTER_SIZE) % MIB:
        raise NotReadyError(f"upload size {size} is not a whole number of MiB + 512")
    if size < MIN_UPLOAD_BYTES:
        raise NotReadyError(f"managed disks need at least 20 MiB; this disk is "
                            f"{(size - FOOTER_SIZE) // MIB} MiB (grow it with `azlift vhd convert "
                            "--size 20M`)")
    if size > MAX_UPLOAD_BYTES:
        raise NotReadyError(f"managed disks hold at most 32 TiB; this disk needs {size} bytes")


def upload_disk_model(*, location: str, upload_size: int, sku: str | None = None,
                      os_type: str | None = None, generation: str | None = None) -> models.Disk:
    """An empty disk waiting for ``upload_size`` bytes through a write SAS."""
    check_upload_size(upload_size)
    return models.Disk(
        location=location, sku=disk_sku(sku), os_type=os_type, hyper_v_generation=generation,
        creation_data=models.CreationData(create_option="Upload", upload_size_bytes=upload_size))


def finish_hint(resource_id: str) -> str:
    """The commands that finish or abandon an upload left open."""
    return (f"continue it with `azlift upload SOURCE --managed-disk {resource_id} --resume`, "
            f"or close it with `az disk revoke-access --ids {resource_id}`")


@dataclass(frozen=True)
class DirectUploadResult:
    """The disk after the upload, and what the page engine reported."""

    id: str
    disk_state: str
    created: bool
    summary: Any

    def as_dict(self) -> dict[str, Any]:
        summary = self.summary.to_dict() if hasattr(self.summary, "to_dict") else None
        return {"id": self.id, "diskState": self.disk_state, "created": self.created,
                "upload": summary}


def enum_text(value: Any) -> str:
    """An SDK enum (or plain string) as its text; "" for None."""
    return str(getattr(value, "value", value)) if value is not None else ""


class DirectUpload:
    """One direct upload to the disk ``resource_id`` through ``registrar``'s client."""

    def __init__(self, registrar: Registrar, resource_id: str,
                 on_note: Callable[[str], None] | None = None,
                 arm_gate: ArmGate | None = None) -> None:
        """``arm_gate`` is entered around each ARM write (create, grant, revoke): a bulk
        run caps its concurrent ARM writes there; the single command needs no gate."""
        self.registrar = registrar
        self.client = registrar.client
        self.disk = ResourceId.parse_disk(resource_id)
        self.resource_id = resource_id
        self.note = on_note or (lambda message: None)
        self.gate = arm_gate or nullcontext

    def _get(self) -> Any:
        return read_or_none(f"reading disk {self.disk.name}",
                            lambda: self.client.disks.get(self.disk.resource_group,
                                                          self.disk.name))

    def _prepare(self, model: models.Disk, upload_size: int, resume: bool) -> tuple[bool, bool]:
        """Create the disk or accept the one there; return (created, pages already sent)."""
        existing = self._get()
        if existing is None:
            if resume:
                raise ResumeMismatchError(f"--resume: disk {self.disk.name} does not exist; "
                                          "start the upload without --resume")
            with self.gate():
                self.registrar.create_disk(self.disk.resource_group, self.disk.name, model)
            return True, False
        state = enum_text(existing.disk_state)
        size = existing.creation_data.upload_size_bytes if existing.creation_data else None
        if state == "ActiveUpload" and not resume:
            raise DiskBusyError(f"disk {self.disk.name} is still in ActiveUpload from an earlier "
                                f"run; {finish_hint(self.resource_id)}")
        if state not in ("ActiveUpload", "ReadyToUpload"):
            raise TargetExistsError(f"disk {self.disk.name} already exists (state {state}); "
                                    "choose another name or delete it first")
        if not resume:
            raise TargetExistsError(f"disk {self.disk.name} exists and waits for an upload "
                                    "(ReadyToUpload); pass --resume to upload into it")
        if size != upload_size:
            raise ResumeMismatchError(f"--resume refused: disk {self.disk.name} expects "
                                      f"{size} bytes, this source needs {upload_size}")
        return False, state == "ActiveUpload"

    def _grant(self) -> str:
        what = f"write access to {self.disk.name}"
        with self.gate(), arm_errors(f"granting {what}"):
            poller = self.client.disks.begin_grant_access(
                self.disk.resource_group, self.disk.name,
                models.GrantAccessData(access="Write", duration_in_seconds=GRANT_SECONDS))
            access = poller.result()
        self.registrar.on_status(what, "Granted")
        return access.access_sas

    def revoke(self) -> None:
        """End write access: the disk leaves ActiveUpload and becomes usable."""
        with self.gate(), arm_errors(f"revoking access to {self.disk.name}"):
            self.client.disks.begin_revoke_access(self.disk.resource_group,
                                                  self.disk.name).result()
        self.registrar.on_status(f"access to {self.disk.name}", "Revoked")

    def plan(self, model: models.Disk, *, resume: bool = False) -> None:
        """Make the requests of an upload on a recording client: no pages, nothing sent.

        A dry-run client knows no existing disk, so ``resume`` only reads the disk.
        """
        if resume:
            self._get()
        else:
            self._prepare(model, model.creation_data.upload_size_bytes, resume=False)
        self._grant()
        self.revoke()

    def run(self, model: models.Disk, send: SendPages, *, resume: bool = False,
            keep_open: bool = False) -> DirectUploadResult:
        """Create or reuse the disk, upload through a fresh write SAS, then revoke."""
        upload_size = model.creation_data.upload_size_bytes
        created, started = self._prepare(model, upload_size, resume)
        try:
            # A grant that failed may still have opened the disk: revoke after it too.
            summary = send(self._grant(), started)
        except BaseException:
            if keep_open:
                self.note(f"disk {self.disk.name} left open for upload (--keep-open); "
                          f"{finish_hint(self.resource_id)}")
            else:
                self._revoke_after_failure()
            raise
        try:
            self.revoke()
        except ArmError:
            self.note(f"all pages of disk {self.disk.name} were sent, but its write access is "
                      f"still open; close it with `az disk revoke-access --ids {self.resource_id}`")
            raise
        except KeyboardInterrupt:
            self._note_interrupted_revoke()
            raise
        disk = self._get()
        return DirectUploadResult(id=getattr(disk, "id", None) or self.resource_id,
                                  disk_state=enum_text(getattr(disk, "disk_state", None)),
                                  created=created, summary=summary)

    def _note_interrupted_revoke(self) -> None:
        self.note(f"interrupted while revoking access to disk {self.disk.name}: its write "
                  f"access may still be open; close it with `az disk revoke-access --ids "
                  f"{self.resource_id}`")

    def _revoke_after_failure(self) -> None:
        try:
            self.revoke()
        except KeyboardInterrupt:  # a second Ctrl-C during the clean-up
            self._note_interrupted_revoke()
            raise
        except Exception as error:  # noqa: BLE001 - the upload's own error matters more
            self.note(f"could not revoke access to disk {self.disk.name} ({error}); close it "
                      f"with `az disk revoke-access --ids {self.resource_id}`")
        else:
            self.note(f"upload failed; access to disk {self.disk.name} revoked, so the disk is "
                      "sealed with an incomplete copy: delete it (`az disk delete --ids "
                      f"{self.resource_id}`) and upload again; --keep-open keeps a failed "
                      "upload open for --resume instead")

"""Direct upload of one disk into a managed disk, as a bulk task.

The library path of `azlift upload SOURCE --managed-disk ID` (``upload.managed_disk``):
create the empty disk (create option Upload, the fixed VHD's exact size), grant write
access, send the pages through the run's account cap, read them back and compare them with
the source through the same SAS, revoke. Access is revoked on every way out, so a failure
never leaves the disk in ActiveUpload. Every ARM write (create, grant, revoke, delete, tag)
holds the cluster-wide ARM lease. The write SAS lives only inside this task: never in its
arguments, its result, a progress event or an error.

A disk carries its source's fingerprint as a tag from its create request on, and a
completion tag once revoked after a verified upload, so a rerun decides from Azure itself:
no disk → create it; this source's, ReadyToUpload or ActiveUpload (a worker died) →
re-grant and send what its page ranges lack; this source's, complete → nothing to send;
this source's, revoked without the completion tag (a failed upload, sealed with an
incomplete copy) → delete it and start over; anything else → refused.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from azlift.upload.target import DiskPageTarget

from .engine import TaskContext
from .manifest import Settings
from .throttle import ArmThrottles, leased

TAG_FINGERPRINT = "azlift_fingerprint"
TAG_STATE = "azlift_state"
UPLOADING, COMPLETE = "uploading", "complete"
REUSABLE_STATES = ("ReadyToUpload", "ActiveUpload")


@dataclass(frozen=True)
class ManagedDiskJob:
    """One disk to upload into the managed disk ``resource_group``/``name`` (no secret)."""

    vm_id: str
    label: str
    path: str
    format: str | None
    role: str
    name: str
    settings: Settings


class TaggedDiskTarget(DiskPageTarget):
    """A disk's write-SAS page target, named by the disk's resource id, whose metadata is
    the disk's azlift tags.

    The uploader checks a resume against the target's recorded fingerprint; a disk's
    hidden blob holds no metadata, so the fingerprint comes from the disk's tag (written in
    its create request). The completion mark is a tag set after revoke, not blob metadata:
    ``set_metadata`` has nothing to write to.
    """

    def __init__(self, inner: Any, resource_id: str, fingerprint: str) -> None:
        super().__init__(inner, resource_id)
        self._fingerprint = fingerprint

    @property
    def supports_metadata(self) -> bool:
        return True

    def properties(self) -> Any:
        from dataclasses import replace

        from azlift.upload.uploader import META_FINGERPRINT

        return replace(self._inner.properties(), metadata={META_FINGERPRINT: self._fingerprint})

    def set_metadata(self, metadata: dict[str, str]) -> None:
        pass


class _Disk:
    """The ARM side of one managed disk: read it, judge it, delete it, tag it."""

    def __init__(self, job: ManagedDiskJob, ctx: TaskContext) -> None:
        from azlift.upload import register as reg
        from azlift.upload.arm import ArmTarget, compute_client

        settings = job.settings
        target = ArmTarget.resolve(settings.subscription, settings.cloud, settings.arm_endpoint)
        self.arm_throttles = ArmThrottles()
        self.client = compute_client(target, on_status=self.arm_throttles)
        self.notes: list[str] = []
        self.registrar = reg.Registrar(self.client, wait=True)
        lease = ctx.arm_lease()
        self.gate = lambda: leased(lease)
        self.rg = settings.resource_group or ""
        self.name = job.name
        self.id = (f"/subscriptions/{target.subscription}/resourceGroups/{self.rg}/providers/"
                   f"Microsoft.Compute/disks/{self.name}")

    def get(self) -> Any:
        from azlift.upload.arm import read_or_none

        return read_or_none(f"reading disk {self.name}",
                            lambda: self.client.disks.get(self.rg, self.name))

    def delete(self) -> None:
        from azlift.upload.arm import arm_errors

        with self.gate(), arm_errors(f"deleting disk {self.name}"):
            self.client.disks.begin_delete(self.rg, self.name).result()

    def tag(self, tags: dict[str, str]) -> None:
        from azure.mgmt.compute import models

        from azlift.upload.arm import arm_errors

        with self.gate(), arm_errors(f"tagging disk {self.name}"):
            self.client.disks.begin_update(self.rg, self.name,
                                           models.DiskUpdate(tags=tags)).result()


def decide(existing: Any, fingerprint: str, *, overwrite: bool, disk_id: str) -> str:
    """What to do with the disk found under the job's name: ``create``, ``resume``,
    ``done``, ``replace`` (delete it, then create), or raise TargetExistsError."""
    from azlift.upload.errors import TargetExistsError

    if existing is None:
        return "create"
    from azlift.upload.managed_disk import enum_text

    tags = dict(existing.tags or {})
    state = enum_text(existing.disk_state)
    recorded = tags.get(TAG_FINGERPRINT)
    if recorded is None:
        raise TargetExistsError(f"disk {disk_id} exists (state {state}) and was not created by "
                                "azlift; delete it or set disk_name to another name")
    if recorded != fingerprint and not overwrite:
        raise TargetExistsError(f"disk {disk_id} was started from another source or size (its "
                                "azlift_fingerprint tag differs); set overwrite = true to "
                                "replace it, or set disk_name to another name")
    if state not in (*REUSABLE_STATES, "Unattached"):
        raise TargetExistsError(f"disk {disk_id} is {state}; only a disk waiting for an upload "
                                "or unattached can be replaced")
    if recorded != fingerprint:
        return "replace"
    if state in REUSABLE_STATES:
        return "resume"
    return "done" if tags.get(TAG_STATE) == COMPLETE else "replace"


def _hints(image: Any, job: ManagedDiskJob) -> Any:
    """OS type and generation for the disk: the manifest's, checked against (and filled
    from) what an OS disk's partition table shows; a data disk has neither."""
    from azlift.upload import register as reg
    from azlift.vhd.partitions import analyze

    from .tasks import decide_hints

    if job.role != "os":
        return reg.Reconciled(None, None)
    return decide_hints(job.settings, analyze(image))


def upload_managed_disk(job: ManagedDiskJob, ctx: TaskContext) -> dict[str, Any]:
    """Upload one disk straight into its managed disk (see the module docstring)."""
    from azlift import vhd

    from .tasks import _base, error_result, sent_fields

    result = _base("upload", job, ctx)
    started = time.monotonic()
    seen, throttled = {"sent": 0}, {"count": 0}
    disk = None
    try:
        disk = _Disk(job, ctx)
        result["target"] = disk.id
        with vhd.open_image(job.path, job.format) as image:
            summary = _upload(image, job, ctx, disk, seen, throttled)
        result["ok"] = True
        result.update(sent_fields(summary) if summary is not None else
                      {"bytes_sent": 0, "zero_bytes_skipped": 0, "already": True, "retries": 0})
    except Exception as error:  # noqa: BLE001 - a task reports, the coordinator decides
        result["error"] = error_result(error)
        result["bytes_sent"] = seen["sent"]
    finally:
        result["throttled"] = throttled["count"]
        result["arm_throttled"] = disk.arm_throttles.count if disk is not None else 0
        result["notes"] = disk.notes if disk is not None else []
        result["seconds"] = round(time.monotonic() - started, 3)
    return result


def _upload(image: Any, job: ManagedDiskJob, ctx: TaskContext, disk: _Disk,
            seen: dict[str, int], throttled: dict[str, int]) -> Any:
    """Create or reuse the disk, upload and verify through a fresh write SAS, revoke, tag
    it complete; None when the disk already held this source, complete."""
    from azlift.upload import register as reg
    from azlift.upload.auth import account_from_url
    from azlift.upload.journal import fingerprint
    from azlift.upload.managed_disk import DirectUpload, upload_disk_model
    from azlift.upload.stream import fixed_vhd_layout
    from azlift.upload.target import BlobPageTarget
    from azlift.upload.uploader import check_rules, upload_image

    from .tasks import _progress, verify_target
    from .throttle import ThrottledTarget

    settings = job.settings
    layout = fixed_vhd_layout(image)
    check_rules(layout.virtual_size, job.role)
    decided = _hints(image, job)
    model = upload_disk_model(location=settings.location or "", upload_size=layout.blob_length,
                              sku=reg.normalize_sku(settings.disk_sku), os_type=decided.os_type,
                              generation=decided.generation)
    digest = fingerprint(image, layout, disk.id).digest()
    tags = {**dict(settings.tags), TAG_FINGERPRINT: digest}
    model.tags = {**tags, TAG_STATE: UPLOADING}
    action = decide(disk.get(), digest, overwrite=settings.overwrite, disk_id=disk.id)
    if action == "done":
        return None
    if action == "replace":
        disk.delete()
        disk.notes.append(f"disk {disk.id} held an incomplete or older upload of this disk: "
                          "deleted and created again")

    def send(sas_url: str, already_started: bool) -> Any:
        inner = BlobPageTarget.from_sas_url(sas_url, connections=max(settings.threads + 2, 10))
        window = ctx.account_window(account_from_url(inner.identity), settings.threads)
        target = TaggedDiskTarget(ThrottledTarget(inner, window), disk.id, digest)
        try:
            summary = upload_image(image, target, threads=settings.threads,
                                   resume=already_started, create=False,
                                   progress=_progress(job, ctx, seen), cancel=ctx.cancel_flag(),
                                   role=job.role)
            verify_target(image, target, threads=settings.threads, marked=False,
                          level=settings.verify)
            return summary
        finally:
            throttled["count"] += window.throttled
            target.close()

    upload = DirectUpload(disk.registrar, disk.id, on_note=disk.notes.append, arm_gate=disk.gate)
    outcome = upload.run(model, send, resume=action == "resume")
    disk.tag({**tags, TAG_STATE: COMPLETE})
    return outcome.summary

"""What runs on the workers: check a disk, upload it, register a VM.

Each task calls the same library functions as the single commands (``vhd.check_path``,
``upload.upload_image``, ``upload.register``) and returns a plain dict: the outcome, or
the error's stable code and one-line message. Arguments and results carry no secret:
credentials come from the worker's own environment or sign-in, as for `azlift upload`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from .engine import TaskContext
from .manifest import Settings
from .throttle import ArmThrottles, leased

PROGRESS_INTERVAL_S = 1.0
VERIFY_FAILED = "verify_failed"  # the blob mark of an upload that did not verify
MAX_FINDINGS = 5


@dataclass(frozen=True)
class DiskJob:
    """One disk to check or upload (no secret: the target URL carries no query)."""

    vm_id: str
    label: str
    path: str
    format: str | None
    role: str
    target: str  # blob URL, or CONTAINER/BLOB with the emulator
    emulator: bool = False
    auth_mode: str = "key"
    threads: int = 8
    overwrite: bool = False
    verify: str = "pages"


@dataclass(frozen=True)
class RegisterJob:
    """One VM to register from its uploaded blobs."""

    vm_id: str
    settings: Settings
    disks: tuple[tuple[str, str, int | None, str], ...]  # (label, role, lun, blob URL)
    os_type_hint: str | None = None
    generation_hint: str | None = None
    reasons: tuple[str, ...] = ()


def error_result(error: BaseException) -> dict[str, str]:
    """The stable code and the first line of the message (secrets masked)."""
    from ..redact import redact_text

    code = getattr(error, "code", None)
    if not isinstance(code, str):
        code = "os_error" if isinstance(error, OSError) else "internal_error"
    text = str(error).strip().splitlines()
    message = text[0] if text else type(error).__name__
    if code == "internal_error":
        message = f"{type(error).__name__}: {message}"
    return {"code": code, "message": redact_text(message)}


def _base(kind: str, job: Any, ctx: TaskContext) -> dict[str, Any]:
    return {"kind": kind, "vm": job.vm_id, "disk": getattr(job, "label", None),
            "worker": ctx.worker_name(), "ok": False, "error": None}


# ---- check ------------------------------------------------------------------------------

def check_disk(job: DiskJob, ctx: TaskContext) -> dict[str, Any]:
    """Read the disk and judge it against every Azure rule; nothing is sent."""
    from azlift import vhd

    result = _base("check", job, ctx)
    try:
        report = vhd.check_path(job.path, job.role, job.format)
    except Exception as error:  # noqa: BLE001 - a task reports, the coordinator decides
        result["error"] = error_result(error)
        return result
    errors = [f for f in report.findings if f.severity == "error"]
    layout = report.layout
    result.update(
        ok=report.ready, format=report.format, virtual_size=report.virtual_size,
        findings=[{"code": f.code, "severity": f.severity, "message": f.message}
                  for f in report.findings if f.severity in ("error", "warning")][:MAX_FINDINGS],
        os_type_hint=layout.os_type_hint if layout else None,
        generation_hint=layout.generation_hint if layout else None,
        reasons=list(layout.reasons) if layout else [])
    blocking = [f for f in errors if not converted_on_the_fly(f.code, report.format)]
    result["ok"] = not blocking
    if blocking:
        first = blocking[0]
        result["error"] = {"code": "not_ready", "message": f"{job.path}: {first.code}: "
                                                          f"{first.message}"}
    return result


def converted_on_the_fly(code: str, image_format: str) -> bool:
    """A finding `azlift upload` answers itself: any format but a fixed VHD is converted
    while it is sent, its size rounded up to a whole MiB."""
    return code == "size_not_whole_mib" and image_format != "vhd-fixed"


# ---- upload -----------------------------------------------------------------------------

def _target(job: DiskJob, ctx: TaskContext) -> Any:
    from azlift.upload.auth import AuthOptions, account_from_url, resolve_blob
    from azlift.upload.target import BlobPageTarget

    from .throttle import ThrottledTarget

    resolved = resolve_blob(job.target, AuthOptions(login=job.auth_mode == "login",
                                                    emulator=job.emulator))
    target = BlobPageTarget(resolved.url, resolved.credential,
                            connections=max(job.threads + 2, 10))
    return ThrottledTarget(target, ctx.account_window(account_from_url(resolved.url),
                                                      job.threads))


def _progress(job: DiskJob, ctx: TaskContext, seen: dict[str, int]) -> Any:
    """Progress events for the coordinator, at most one a second per disk; ``seen`` keeps
    the bytes sent so far (a failed or interrupted upload still reports them)."""
    last = 0.0

    def report(event: Any) -> None:
        nonlocal last
        seen["sent"] = event.sent_bytes
        now = time.monotonic()
        if now - last < PROGRESS_INTERVAL_S and event.done_bytes < event.total_bytes:
            return
        last = now
        ctx.emit({"kind": "progress", "vm": job.vm_id, "disk": job.label,
                  "done": event.done_bytes, "total": event.total_bytes,
                  # Not "worker": Dask overwrites that key with the worker's address.
                  "sent": event.sent_bytes, "worker_name": ctx.worker_name()})
    return report


def _our_layout(image: Any, target: Any, state: Any) -> Any | None:
    """The source's fixed-VHD layout when the blob (``state``: its properties) records this
    source's fingerprint (same file, size, data map), else None: one walk of the extents."""
    from azlift.upload.journal import fingerprint
    from azlift.upload.stream import fixed_vhd_layout
    from azlift.upload.uploader import META_FINGERPRINT

    layout = fixed_vhd_layout(image)
    digest = fingerprint(image, layout, target.identity).digest()
    return layout if state.metadata.get(META_FINGERPRINT) == digest else None


def _unclaimed_and_empty(target: Any) -> bool:
    """A blob created by an upload that died before it marked the blob or wrote a page
    (a worker killed right after create): starting over loses nothing."""
    from azlift.upload.uploader import META_FINGERPRINT

    return (META_FINGERPRINT not in target.properties().metadata
            and not target.list_page_ranges())


def verify_target(image: Any, target: Any, *, threads: int, marked: bool = True,
                  level: str = "pages") -> None:
    """After the upload: the target holds this source's fixed VHD, judged as `azlift upload
    verify` judges it: type, length, footer field by field, written page ranges against the
    source's data map; at ``level`` "full" also every data range read back and compared
    (zeros are not read back, memory stays within the read window). A blob is also marked
    complete (``marked``; a managed disk records completion by tag after revoke). A blob
    that differs is marked so that the next attempt starts it over."""
    from azlift.upload.uploader import META_STATE
    from azlift.upload.verify import verify_upload

    from .errors import VerifyFailedError

    report = verify_upload(image, target, threads=threads, read_back=level == "full")
    if report.ok and marked:
        mark = target.properties().metadata.get(META_STATE)
        if mark != "complete":
            raise VerifyFailedError(f"{target.identity}: expected a blob marked complete, "
                                    f"found it marked {mark!r}")
    if report.ok:
        return
    if marked:
        metadata = dict(target.properties().metadata)
        target.set_metadata({**metadata, META_STATE: VERIFY_FAILED})
    first = report.differences[0]
    more = len(report.differences) - 1
    raise VerifyFailedError(f"{target.identity} differs from the source after the upload: "
                            f"{first.message}" + (f" (and {more} more difference"
                                                  f"{'s' * (more > 1)})" if more else ""))



def sent_fields(summary: Any) -> dict[str, Any]:
    """An upload task's counters from the page engine's summary."""
    return {"bytes_sent": summary.data_bytes_sent,
            "zero_bytes_skipped": summary.zero_bytes_skipped,
            "resumed_bytes": summary.resumed_bytes, "retries": summary.retries,
            "already": False}


def upload_disk(job: DiskJob, ctx: TaskContext) -> dict[str, Any]:
    """Upload one disk (sparse, resumable from what the blob holds), then verify it."""
    from azlift import vhd
    from azlift.upload.errors import ResumeMismatchError
    from azlift.upload.uploader import META_STATE, upload_image

    result = _base("upload", job, ctx)
    started = time.monotonic()
    seen = {"sent": 0}
    target = None
    try:
        target = _target(job, ctx)
        result["target"] = target.identity
        with vhd.open_image(job.path, job.format) as image:
            state = target.properties() if target.exists() else None
            ours = _our_layout(image, target, state) if state is not None else None
            mark = state.metadata.get(META_STATE) if state is not None else None
            if ours is not None and mark == "complete" and state.length == ours.blob_length:
                verify_target(image, target, threads=job.threads, level=job.verify)
                result.update(ok=True, bytes_sent=0, zero_bytes_skipped=0, resumed_bytes=
                              ours.blob_length, already=True, throttled=0, retries=0,
                              seconds=round(time.monotonic() - started, 3))
                return result
            common = dict(threads=job.threads, progress=_progress(job, ctx, seen),
                          cancel=ctx.cancel_flag(), role=job.role)
            # A blob of this source that failed verification is sent again whole: its
            # page ranges cannot tell the bad pages from the good ones.
            restart = ours is not None and mark == VERIFY_FAILED
            try:
                summary = upload_image(image, target, overwrite=restart,
                                       resume=state is not None and not restart, **common)
            except ResumeMismatchError:
                if not (job.overwrite or _unclaimed_and_empty(target)):
                    raise
                summary = upload_image(image, target, overwrite=True, **common)
            verify_target(image, target, threads=job.threads, level=job.verify)
        result.update(ok=True, throttled=target.throttled, **sent_fields(summary))
    except Exception as error:  # noqa: BLE001 - a task reports, the coordinator decides
        result["error"] = error_result(error)
        result["bytes_sent"] = seen["sent"]
        if target is not None:
            result["throttled"] = target.throttled
    finally:
        if target is not None:
            target.close()
        result["seconds"] = round(time.monotonic() - started, 3)
    return result


# ---- register ---------------------------------------------------------------------------

class _Hints:
    """The OS disk's partition hints, shaped as register.reconcile_with_hints reads them."""

    def __init__(self, job: RegisterJob) -> None:
        self.os_type_hint = job.os_type_hint
        self.generation_hint = job.generation_hint
        self.reasons = job.reasons


def decide_hints(settings: Settings, hints: Any) -> Any:
    """OS type and generation: the manifest's, checked against (and filled from) an OS
    disk's partition ``hints`` (None: nothing to check against)."""
    from azlift.upload import register as reg

    return reg.reconcile_with_hints(
        reg.normalize_os_type(settings.os_type),
        reg.normalize_generation(settings.hyper_v_generation), hints,
        advice="set os_type / hyper_v_generation in the manifest to what the disk holds")


def register_vm(job: RegisterJob, ctx: TaskContext) -> dict[str, Any]:
    """Create the VM's image, gallery version or disks (idempotent create-or-update)."""
    result = _base("register", job, ctx)
    lease = ctx.arm_lease()
    throttles = ArmThrottles()
    try:
        outcomes = _register(job, lease, throttles)
        result.update(ok=True, resources=[{"kind": o.kind, "id": o.id} for o in outcomes])
    except Exception as error:  # noqa: BLE001 - a task reports, the coordinator decides
        result["error"] = error_result(error)
    finally:
        result["arm_throttled"] = throttles.count
    return result


def _register(job: RegisterJob, lease: Any, throttles: ArmThrottles) -> list[Any]:
    from azlift.upload import register as reg
    from azlift.upload.arm import ArmTarget, compute_client

    settings = job.settings
    client = compute_client(ArmTarget.resolve(settings.subscription, settings.cloud,
                                              settings.arm_endpoint), on_status=throttles)
    registrar = reg.Registrar(client, wait=True)
    os_disk = next((d for d in job.disks if d[1] == "os"), None)
    data = [reg.DataDiskSpec(lun=lun, url=url) for _, role, lun, url in job.disks
            if role == "data" and lun is not None]
    decided = decide_hints(settings, _Hints(job) if os_disk else None)
    rg, location = settings.resource_group or "", settings.location or ""

    def locked(call: Any) -> Any:
        with leased(lease):
            return call()

    tags = dict(settings.tags) or None

    if settings.register == "image":
        model = reg.image_model(location=location, os_blob=os_disk[3] if os_disk else "",
                                os_type=_required(decided.os_type, "os_type"),
                                specialized=settings.specialized, generation=decided.generation,
                                data_disks=data, zone_resilient=settings.zone_resilient)
        model.tags = tags
        return [locked(lambda: registrar.create_image(rg, settings.image_name or job.vm_id,
                                                      model))]
    if settings.register == "gallery-version":
        return _gallery_version(job, registrar, decided, data, locked)
    if settings.register == "disk":
        outcomes = []
        for label, role, _, url in job.disks:
            model = reg.import_disk_model(
                location=location, blob=url, storage_account_id=settings.storage_account_id or "",
                sku=reg.normalize_sku(settings.disk_sku),
                os_type=decided.os_type if role == "os" else None,
                generation=decided.generation if role == "os" else None)
            model.tags = tags
            name = f"{job.vm_id}-{label}"
            outcomes.append(locked(lambda: registrar.create_disk(rg, name, model)))
        return outcomes
    return []


def _gallery_version(job: RegisterJob, registrar: Any, decided: Any, data: list[Any],
                     locked: Any) -> list[Any]:
    from azlift.upload import register as reg
    from azlift.upload.errors import UsageError

    settings = job.settings
    rg, location = settings.resource_group or "", settings.location or ""
    gallery, definition = settings.gallery or "", settings.gallery_image or ""
    os_disk = next(d for d in job.disks if d[1] == "os")
    outcomes = []
    existing = registrar.get_definition(rg, gallery, definition)
    if existing is None:
        if not (settings.publisher and settings.offer and settings.sku):
            raise UsageError(f"image definition {definition} not found in gallery {gallery}; "
                             "set publisher, offer and sku in the manifest to create it")
        model = reg.gallery_definition_model(
            location=location, os_type=_required(decided.os_type, "os_type"),
            specialized=settings.specialized, generation=decided.generation,
            publisher=settings.publisher, offer=settings.offer, sku=settings.sku)
        outcomes.append(locked(lambda: registrar.create_definition(rg, gallery, definition,
                                                                   model)))
    else:
        reg.check_definition_matches(existing, decided, specialized=settings.specialized)
    regions = reg.with_source_region(location, [reg.parse_target_region(text)
                                                for text in settings.target_regions])
    version = reg.gallery_version_model(location=location, os_blob=os_disk[3],
                                        storage_account_id=settings.storage_account_id or "",
                                        data_disks=data, target_regions=regions)
    version.tags = dict(settings.tags) or None
    outcomes.append(locked(lambda: registrar.create_gallery_version(
        rg, gallery, definition, settings.gallery_version or "", version)))
    return outcomes


def _required(value: str | None, name: str) -> str:
    from azlift.upload.errors import UsageError

    if not value:
        raise UsageError(f"cannot tell the {name} from the disk; set {name} in the manifest")
    return value

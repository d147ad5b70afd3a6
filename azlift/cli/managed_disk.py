"""`azlift upload SOURCE --managed-disk ID`: direct upload into a managed disk.

Called by the upload command; parses nothing itself, calls ``upload.managed_disk`` and
renders. The write SAS never leaves this process: not in output, not in errors.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from azlift.upload import register as reg
from azlift.upload.arm import ResourceId
from azlift.upload.errors import UsageError
from azlift.upload.managed_disk import DirectUpload, upload_disk_model
from azlift.upload.stream import fixed_vhd_layout
from azlift.upload.target import BlobPageTarget, DiskPageTarget, RetrySettings
from azlift.upload.uploader import check_rules, upload_image

from .common import emit_json, open_source_image, say
from .register import ArmOptions, ArmSession


def _hints(image: Any, os_type: str | None, generation: str | None,
           session: ArmSession) -> reg.Reconciled:
    from azlift.vhd.partitions import analyze

    layout = analyze(image)
    decided = reg.reconcile_with_hints(reg.normalize_os_type(os_type),
                                       reg.normalize_generation(generation), layout,
                                       fill_defaults=layout.generation_hint is not None,
                                       advice="leave out --os-type/--hyper-v-generation to use "
                                              "what the disk shows")
    for note in decided.notes:
        session.note(note)
    return decided


def send_to_managed_disk(*, source: str, resource_id: str, location: str | None,
                         sku: str | None, os_type: str | None, hyper_v_generation: str | None,
                         subscription: str | None, cloud: str, arm_endpoint: str | None,
                         threads: int, resume: bool, keep_open: bool, json_output: bool,
                         quiet: bool, source_format: str | None, retries: int | None = None,
                         timeout: float | None = None, dry_run: bool = False,
                         disk: int | None = None, checksum: str = "crc64") -> int:
    """Create the disk (create option Upload), upload SOURCE through its write SAS, revoke.

    ``retries``/``timeout`` are the upload command's --retries/--timeout (the page engine's
    own defaults when None), so Put Page is retried as for a page blob. ``dry_run`` checks
    the source and prints the ARM requests (create, grant, revoke) without sending them.
    """
    disk_id = ResourceId.parse_disk(resource_id)
    if not location:
        raise UsageError("--managed-disk needs -l/--location (the disk's region)")
    if subscription and subscription.lower() != disk_id.subscription.lower():
        raise UsageError(f"--subscription {subscription} differs from the subscription in "
                         f"--managed-disk ({disk_id.subscription})")
    sku_name = reg.normalize_sku(sku)
    retry = _retry_settings(retries, timeout)
    session = ArmSession.open(ArmOptions(subscription=disk_id.subscription, cloud=cloud,
                                         arm_endpoint=arm_endpoint, quiet=quiet,
                                         dry_run=dry_run))
    with open_source_image(source, source_format, disk) as image:
        decided = _hints(image, os_type, hyper_v_generation, session)
        layout = fixed_vhd_layout(image)
        check_rules(layout.virtual_size, "os" if decided.os_type else None)
        model = upload_disk_model(location=location, upload_size=layout.blob_length,
                                  sku=sku_name, os_type=decided.os_type,
                                  generation=decided.generation)
        job = DirectUpload(session.registrar, resource_id, on_note=session.note)
        if dry_run:
            job.plan(model, resume=resume)
            session.finish([], json_output)
            return 0

        def send(sas_url: str, already_started: bool) -> Any:
            target = DiskPageTarget(BlobPageTarget.from_sas_url(sas_url, retry=retry), resource_id)
            try:
                return upload_image(image, target, threads=threads, resume=already_started,
                                    create=False, progress=_progress(quiet),
                                    checksum=checksum)
            finally:
                target.close()

        result = job.run(model, send, resume=resume, keep_open=keep_open)
    if json_output:
        emit_json({"ok": True, **result.as_dict(), "notes": session.notes})
    else:
        summary = result.summary
        say(f"disk {result.id}: {result.disk_state} ({summary.data_bytes_sent} data bytes sent, "
            f"{summary.zero_bytes_skipped} zero bytes skipped)", err=False)
    return 0


def _retry_settings(retries: int | None, timeout: float | None) -> RetrySettings:
    settings = RetrySettings()
    if retries is not None:
        settings = replace(settings, total=retries)
    if timeout is not None:
        settings = replace(settings, connection_timeout=timeout, read_timeout=timeout)
    return settings


def _progress(quiet: bool) -> Any:
    """A plain progress line on stderr every 10 % (the upload command owns the bar)."""
    if quiet:
        return None
    shown = {"step": -1}

    def update(event: Any) -> None:
        step = event.done_bytes * 10 // max(event.total_bytes, 1)
        if step != shown["step"]:
            shown["step"] = step
            say(f"uploading: {step * 10}% of {event.total_bytes} data bytes")
    return update

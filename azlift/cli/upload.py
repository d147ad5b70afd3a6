"""`azlift upload` commands: send (the default) and verify.

Parse, call the upload library, render. Progress is a tqdm bar on stderr (only when stderr
is a terminal and --quiet is off); the summary goes to stdout, or as one JSON document
with --json. URLs are printed without their query string (where SAS tokens live).
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from azlift.upload.auth import AuthOptions, resolve_blob
from azlift.upload.checksum import check_checksum
from azlift.upload.errors import UploadInterrupted, UsageError
from azlift.upload.target import BlobPageTarget, RetrySettings
from azlift.upload.uploader import ProgressEvent, UploadSummary, upload_image

from ..redact import redact_text, redact_url
from .common import (STATE, DefaultCommandGroup, DiskOption, JsonOption, QuietOption,
                     emit_json, open_source_image, progress_on_terminal, say, warn)

if TYPE_CHECKING:
    from azlift.upload.verify import VerifyReport

app = typer.Typer(
    cls=DefaultCommandGroup,
    help=(
        "Upload an image to a page blob or managed disk (`send` is the default command).\n\n"
        "Examples:\n\n"
        "  azlift upload disk.vhdx https://ACCOUNT.blob.core.windows.net/vhds/disk.vhd "
        "--auth-mode login\n\n"
        "  azlift upload disk.vhdx vhds/disk.vhd --emulator --resume\n\n"
        "  azlift upload verify disk.vhdx vhds/disk.vhd --emulator"
    ),
    add_completion=False,
)

SourceArg = Annotated[Path, typer.Argument(
    metavar="SOURCE", help="Disk image: raw, VHD (fixed, dynamic, differencing), VHDX, qcow2, "
    "VMDK or OVA.", show_default=False)]
FormatOption = Annotated[str | None, typer.Option(
    "--format", help="Read SOURCE as this format (raw, vhd, vhdx, qcow2, vmdk, ova) instead of "
    "detecting it.")]
ConnectionStringOption = Annotated[str | None, typer.Option(
    "--connection-string", help="Storage connection string (else $AZURE_STORAGE_CONNECTION_STRING).",
    show_default=False)]
AccountKeyOption = Annotated[str | None, typer.Option(
    "--account-key", help="Storage account key (prefer $AZURE_STORAGE_KEY: argv is visible to "
    "other users).", show_default=False)]
SasTokenOption = Annotated[str | None, typer.Option(
    "--sas-token", help="SAS token for DEST_URL (else a SAS in the URL or "
    "$AZURE_STORAGE_SAS_TOKEN).", show_default=False)]
AuthModeOption = Annotated[str, typer.Option(
    "--auth-mode", help="'key' (a key, SAS or connection string) or 'login' "
    "(Azure AD through DefaultAzureCredential).")]
EmulatorOption = Annotated[bool, typer.Option(
    "--emulator", help="Target the local Azurite with its development account; DEST_URL may "
    "then be CONTAINER/NAME.vhd.")]
EmulatorEndpointOption = Annotated[str | None, typer.Option(
    "--emulator-endpoint", help="Azurite's blob endpoint (else $AZLIFT_EMULATOR_ENDPOINT, else "
    "http://127.0.0.1:10000/devstoreaccount1).")]
ThreadsOption = Annotated[int, typer.Option(
    "--threads", min=1, max=64, help="Put Page requests in flight (memory ≈ threads × 4 MiB).")]
RetriesOption = Annotated[int, typer.Option(
    "--retries", min=0, max=20, help="Retries per request on 5xx, timeouts and resets.")]
ChecksumOption = Annotated[str, typer.Option(
    "--checksum", help="What each Put Page carries for the service to check its body: "
    "crc64 (x-ms-content-crc64), md5 (Content-MD5, for endpoints without CRC64 such as an "
    "older Azure Stack Hub) or none.")]
TimeoutOption = Annotated[float, typer.Option(
    "--timeout", min=0.1, help="Seconds to wait for the service to accept a connection or "
    "to answer a request (each attempt).")]


def _auth_options(connection_string: str | None, account_key: str | None,
                  sas_token: str | None, auth_mode: str, emulator: bool,
                  emulator_endpoint: str | None) -> AuthOptions:
    if auth_mode not in ("key", "login"):
        raise UsageError(f"--auth-mode must be 'key' or 'login', not {auth_mode!r}")
    return AuthOptions(connection_string=connection_string, account_key=account_key,
                       sas_token=sas_token, login=auth_mode == "login", emulator=emulator,
                       emulator_endpoint=emulator_endpoint)


def _target(dest_url: str, auth: AuthOptions, retries: int, timeout: float,
            threads: int = 8) -> BlobPageTarget:
    resolved = resolve_blob(dest_url, auth)
    retry = RetrySettings(total=retries, connection_timeout=timeout, read_timeout=timeout)
    return BlobPageTarget(resolved.url, resolved.credential, retry=retry,
                          connections=max(threads + 2, 10))


@contextmanager
def _progress_bar(enabled: bool, description: str) -> Iterator[Callable[[ProgressEvent], None] | None]:
    """A tqdm bar of data bytes scanned, with bytes sent as postfix; None when disabled."""
    if not enabled:
        yield None
        return
    from tqdm import tqdm
    bar = tqdm(total=0, unit="B", unit_scale=True, unit_divisor=1024, desc=description,
               file=sys.stderr, dynamic_ncols=True, leave=False)
    last = 0

    def update(event: ProgressEvent) -> None:
        nonlocal last
        if bar.total != event.total_bytes:
            bar.total = event.total_bytes
        bar.update(event.done_bytes - last)
        last = event.done_bytes
        bar.set_postfix(sent=_size(event.sent_bytes), retries=event.retries, refresh=False)

    try:
        yield update
    finally:
        bar.close()


def _size(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{value} B"


def _render_summary(source: Path, url: str, summary: UploadSummary) -> None:
    document = {"ok": True, "source": str(source), "target": redact_url(url),
                **summary.to_dict()}
    if STATE.json:
        emit_json(document)
        return
    say(f"uploaded {source} to {redact_url(url)}", err=False)
    lines = [
        ("virtual size", f"{_size(summary.virtual_size)} ({summary.virtual_size} bytes, "
                         f"blob {summary.blob_length})"),
        ("data sent", _size(summary.data_bytes_sent)),
        ("zeros skipped", f"{_size(summary.zero_bytes_skipped)} "
                          f"({_size(summary.unallocated_bytes_skipped)} unallocated, "
                          f"{_size(summary.zero_sector_bytes_trimmed)} zero sectors in data)"),
        ("requests", str(summary.requests)),
        ("retries", str(summary.retries)),
        ("duration", f"{summary.duration_s:.1f} s"),
        ("throughput", f"{_size(summary.throughput)}/s"),
    ]
    if summary.resumed_bytes:
        lines.insert(2, ("already there", _size(summary.resumed_bytes)))
    if summary.content_md5:
        lines.append(("content MD5", summary.content_md5))
    for name, value in lines:
        say(f"  {name:<14} {value}", err=False)


@app.command("send")
def send(
    source: SourceArg,
    dest_url: Annotated[str | None, typer.Argument(
        metavar="DEST_URL", help="Blob URL: https://ACCOUNT.blob.core.windows.net/CONTAINER/NAME.vhd "
             "(omit with --managed-disk).", show_default=False)] = None,
    connection_string: ConnectionStringOption = None,
    account_key: AccountKeyOption = None,
    sas_token: SasTokenOption = None,
    auth_mode: AuthModeOption = "key",
    emulator: EmulatorOption = False,
    emulator_endpoint: EmulatorEndpointOption = None,
    threads: ThreadsOption = 8,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace an existing blob.")] = False,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue an interrupted upload of this source to this blob.")] = False,
    content_md5: Annotated[bool, typer.Option(
        "--content-md5", help="Also set the blob's Content-MD5 (whole-file MD5, same pass).")] = False,
    checksum: ChecksumOption = "crc64",
    os_disk: Annotated[bool, typer.Option(
        "--os-disk", help="Apply the OS-disk size rules (≤ 4095 GiB).")] = False,
    data_disk: Annotated[bool, typer.Option(
        "--data-disk", help="Apply the data-disk size rules.")] = False,
    source_format: FormatOption = None,
    disk: DiskOption = None,
    retries: RetriesOption = 6,
    timeout: TimeoutOption = 60.0,
    managed_disk: Annotated[str | None, typer.Option(
        "--managed-disk", help="Upload straight into this managed disk (resource id) "
        "instead of a blob.", show_default=False)] = None,
    location: Annotated[str | None, typer.Option(
        "--location", "-l", help="Region of the managed disk.")] = None,
    sku: Annotated[str | None, typer.Option(
        "--sku", help="Managed disk SKU (Standard_LRS, Premium_LRS, ...).")] = None,
    os_type: Annotated[str | None, typer.Option(
        "--os-type", help="Managed disk OS type: linux or windows.")] = None,
    hyper_v_generation: Annotated[str | None, typer.Option(
        "--hyper-v-generation", help="Managed disk generation: V1 or V2.")] = None,
    subscription: Annotated[str | None, typer.Option(
        "--subscription", help="Subscription id (else $AZURE_SUBSCRIPTION_ID).")] = None,
    cloud: Annotated[str, typer.Option(
        "--cloud", help="AzureCloud, AzureChinaCloud or AzureUSGovernment.")] = "AzureCloud",
    arm_endpoint: Annotated[str | None, typer.Option(
        "--arm-endpoint", help="Resource Manager endpoint (Azure Stack Hub).")] = None,
    keep_open: Annotated[bool, typer.Option(
        "--keep-open", help="On failure keep the disk's upload access open for --resume.")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="With --managed-disk: check the source and print the ARM requests "
        "(create, grant, revoke); send nothing.")] = False,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Upload SOURCE as an Azure-ready fixed VHD: only data travels, in parallel, resumable.

    Example: azlift upload disk.vhdx https://ACCOUNT.blob.core.windows.net/vhds/disk.vhd
    --auth-mode login
    """
    if overwrite and resume:
        raise UsageError("--overwrite and --resume exclude each other")
    if os_disk and data_disk:
        raise UsageError("--os-disk and --data-disk exclude each other")
    check_checksum(checksum)
    if str(source) == "-":
        _refuse_for_a_pipe(source_format, resume, content_md5, managed_disk)
    if managed_disk:
        if dest_url is not None:
            raise UsageError("give either DEST_URL or --managed-disk, not both")
        from .managed_disk import send_to_managed_disk
        code = send_to_managed_disk(
            source=str(source), resource_id=managed_disk, location=location, sku=sku,
            os_type=os_type, hyper_v_generation=hyper_v_generation, subscription=subscription,
            cloud=cloud, arm_endpoint=arm_endpoint, threads=threads, resume=resume,
            keep_open=keep_open, json_output=json_output, quiet=quiet,
            source_format=source_format, retries=retries, timeout=timeout, dry_run=dry_run,
            disk=disk, checksum=checksum)
        raise typer.Exit(code)
    if dry_run:
        raise UsageError("--dry-run goes with --managed-disk (it prints the ARM requests); "
                         "for a blob, `azlift vhd check SOURCE` shows what would be refused")
    if dest_url is None:
        raise UsageError("missing DEST_URL (a blob URL), or pass --managed-disk RESOURCE_ID")
    auth = _auth_options(connection_string, account_key, sas_token, auth_mode, emulator,
                         emulator_endpoint)
    role = "os" if os_disk else "data" if data_disk else None
    target = _target(dest_url, auth, retries, timeout, threads)
    if str(source) == "-":
        _run_upload(target, source, quiet, "interrupted; a disk read from stdin cannot be "
                    "resumed: send it again with --overwrite",
                    lambda progress: _send_pipe(source_format, disk, target, threads,
                                                overwrite, role, progress, checksum))
        return

    def send_file(progress: Any) -> UploadSummary:
        with open_source_image(str(source), source_format, disk) as image:
            return upload_image(image, target, threads=threads, resume=resume,
                                overwrite=overwrite, content_md5=content_md5,
                                progress=progress, role=role, checksum=checksum)
    _run_upload(target, source, quiet, "interrupted; what was sent is recorded: rerun the "
                "same command with --resume to continue", send_file)


def _run_upload(target: Any, source: Path, quiet: bool, interrupted: str,
                send: Callable[[Any], UploadSummary]) -> None:
    """Run ``send`` with a progress bar, close the target, render the summary."""
    try:
        with _progress_bar(progress_on_terminal(quiet), source.name or "stdin") as progress:
            summary = send(progress)
    except KeyboardInterrupt:
        raise UploadInterrupted(interrupted) from None
    finally:
        target.close()
    _render_summary(source, target.identity, summary)


PIPE_FORMATS = ("vmdk-stream", "ova")


def _refuse_for_a_pipe(source_format: str | None, resume: bool, content_md5: bool,
                       managed_disk: str | None) -> None:
    if source_format not in PIPE_FORMATS:
        raise UsageError("reading SOURCE from stdin (-) needs --format vmdk-stream (a "
                         "streamOptimized VMDK) or --format ova (an OVA, with --disk N when "
                         "it holds several disks)")
    if resume or content_md5 or managed_disk:
        raise UsageError("a disk read from stdin is sent in one pass: --resume, "
                         "--content-md5 and --managed-disk need a file")


def _send_pipe(source_format: str | None, disk: int | None, target: Any, threads: int,
               overwrite: bool, role: str | None, progress: Any,
               checksum: str = "crc64") -> UploadSummary:
    """Upload the streamOptimized VMDK (or OVA) arriving on stdin, in one pass."""
    from azlift.upload.pipe import upload_stream
    from azlift.vhd.vmdk_stream import open_ova_stream, open_vmdk_stream

    stdin = sys.stdin.buffer
    source = open_ova_stream(stdin, disk) if source_format == "ova" else open_vmdk_stream(stdin)
    for code, message in getattr(source, "source_notes", ()):
        warn(f"{code}: {message}")
    try:
        return upload_stream(source, target, threads=threads, overwrite=overwrite, role=role,
                             progress=progress, checksum=checksum)
    finally:
        source.close()


def _render_verify(source: Path, report: VerifyReport) -> None:
    if STATE.json:
        emit_json({"source": str(source), **report.to_dict(),
                   "target": redact_url(report.target)})
        return
    where = redact_url(report.target)
    if report.ok:
        say(f"OK: {where} holds the fixed VHD of {source} ({_size(report.virtual_size)} "
            f"virtual, {_size(report.data_bytes_checked)} of data compared in "
            f"{report.ranges_checked} ranges)", err=False)
        return
    say(f"DIFFERENT: {where} does not hold the fixed VHD of {source}:", err=False)
    for difference in report.differences:
        say(f"  [{difference.check}] {redact_text(difference.message)}", err=False)


@app.command("verify")
def verify(
    source: SourceArg,
    dest_url: Annotated[str, typer.Argument(metavar="DEST_URL", help="Blob URL to compare with SOURCE.",
                                            show_default=False)],
    connection_string: ConnectionStringOption = None,
    account_key: AccountKeyOption = None,
    sas_token: SasTokenOption = None,
    auth_mode: AuthModeOption = "key",
    emulator: EmulatorOption = False,
    emulator_endpoint: EmulatorEndpointOption = None,
    threads: ThreadsOption = 8,
    source_format: FormatOption = None,
    disk: DiskOption = None,
    retries: RetriesOption = 6,
    timeout: TimeoutOption = 60.0,
    json_output: JsonOption = False,
) -> None:
    """Check that DEST_URL holds exactly the fixed VHD of SOURCE; exit 0 if so, else 1.

    Compares blob type and length, the footer, the written page ranges against SOURCE's
    data map, and every data range byte for byte (zeros are not downloaded).
    """
    auth = _auth_options(connection_string, account_key, sas_token, auth_mode, emulator,
                         emulator_endpoint)
    target = _target(dest_url, auth, retries, timeout)
    try:
        with open_source_image(str(source), source_format, disk) as image:
            from azlift.upload.verify import verify_upload  # only this command reads back

            report = verify_upload(image, target, threads=threads)
    finally:
        target.close()
    _render_verify(source, report)
    if not report.ok:
        raise typer.Exit(1)

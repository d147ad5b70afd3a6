"""Send a DiskImage to a PageTarget as the fixed VHD Azure expects: only data, in parallel,
resumable.

Shape (a bounded window, like the storage SDK's uploader without its flaws): the main
thread submits at most ``threads`` work units (≤ 4 MiB cells of the image's extents) to
the worker threads (workers.py), takes the first to finish, records it and submits the
next. A worker sends its unit (cells.py): reads it with its own handle, drops zero
sectors, puts each remaining run with its transactional checksum (CRC64 by default, see
checksum.py), and returns an immutable ``UnitResult``. Only the main thread touches the
journal, the counters and the progress callback.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from azlift.vhd import DiskImage, VhdError
from azlift.vhd.check import check_output_rules

from .cells import UnitResult, send_unit
from .checksum import DEFAULT_CHECKSUM, check_checksum
from .errors import (
    NotReadyError,
    ResumeMismatchError,
    ServiceError,
    TargetExistsError,
    TargetSizeError,
    UploadInterrupted,
    UsageError,
)
from .journal import Fingerprint, Journal, fingerprint
from .leased_source import MIN_MAPPED, LeasedSource
from .ranges import Range, crosses_grid
from .stream import FixedVhdLayout, OrderedMd5, SourceReader, fixed_vhd_layout
from .target import PageTarget
from .workers import Outcome, Workers

META_FINGERPRINT = "azlift_fingerprint"
META_STATE = "azlift_state"
LEASE_POLL_S = 0.05  # a lease poll is a system call: not after every one of 1000 small cells


@dataclass(frozen=True)
class ProgressEvent:
    """Where the upload stands; ``done_bytes`` counts data bytes scanned of ``total_bytes``."""

    total_bytes: int
    done_bytes: int
    sent_bytes: int
    zero_bytes: int
    requests: int
    retries: int


@dataclass(frozen=True)
class UploadSummary:
    """What an upload did.

    Every byte of the blob is counted once: ``data_bytes_sent`` (the footer included) +
    ``resumed_bytes`` + ``zero_bytes_skipped`` == ``blob_length``. The zeros skipped split
    into ``unallocated_bytes_skipped`` (outside the image's allocated extents: never read)
    and ``zero_sector_bytes_trimmed`` (read, found all-zero inside the extents, not sent).
    """

    virtual_size: int
    blob_length: int
    data_bytes_sent: int
    zero_bytes_skipped: int
    requests: int
    retries: int
    duration_s: float
    throughput: float  # data bytes sent per second
    resumed_bytes: int = 0  # bytes of units an earlier run already put (or covered)
    content_md5: str | None = None  # hex, when asked for
    unallocated_bytes_skipped: int = 0
    zero_sector_bytes_trimmed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_rules(virtual_size: int, role: str | None) -> None:
    """Refuse before sending when the fixed VHD breaks an Azure rule for ``role``."""
    findings = check_output_rules(virtual_size, role)
    errors = [finding for finding in findings if finding.severity == "error"]
    if errors:
        first = errors[0]
        raise NotReadyError(f"{first.code}: {first.message}")


class _Run:
    """The state of one upload, owned by the main thread."""

    def __init__(self, layout: FixedVhdLayout, progress: Callable[[ProgressEvent], None] | None,
                 journal: Journal | None, md5: OrderedMd5 | None) -> None:
        self.layout = layout
        self.total = layout.scan_bytes
        self.done = self.sent = self.zeros = self.requests = self.retries = 0
        self.resumed = 0
        self.journal = journal
        self.md5 = md5
        self._progress = progress
        self._lock = threading.Lock()

    def record(self, result: UnitResult, sent_now: bool) -> None:
        self.done += result.length
        self.sent += result.sent_bytes
        self.zeros += result.zero_bytes
        self.requests += result.requests
        self.retries += result.retries
        self.resumed += result.already_bytes
        if not sent_now:
            self.resumed += result.length
        if self.md5 is not None and result.data is not None:
            self.md5.add(result.offset, result.data)
        if sent_now and self.journal is not None:
            self.journal.acknowledge(result.offset)
        self.report()

    def skip(self, unit: Range) -> None:
        """A unit an earlier run sent: counted as done, not read."""
        self.resumed += unit[1]
        self.done += unit[1]

    def report(self) -> None:
        if self._progress is None:
            return
        event = ProgressEvent(self.total, self.done, self.sent, self.zeros, self.requests,
                              self.retries)
        with self._lock:
            self._progress(event)


def _metadata(fp: Fingerprint, state: str) -> dict[str, str]:
    return {META_FINGERPRINT: fp.digest(), META_STATE: state}


def _prepare_target(target: PageTarget, layout: FixedVhdLayout, fp: Fingerprint, *,
                    resume: bool, overwrite: bool, create: bool,
                    journal_dir: Path | None) -> tuple[Journal | None, set[int], list[Range] | None]:
    """Check or create the target; return (journal, acknowledged units, written ranges)."""
    if resume:
        return _resume_state(target, layout, fp, journal_dir)
    if create and not overwrite and target.exists():
        raise TargetExistsError(
            f"{target.identity} already exists; pass --overwrite to replace it or "
            "--resume to continue an interrupted upload")
    if not create:
        _check_length(target, layout)
    journal = Journal.start(fp, journal_dir)  # before creating: a bad state dir costs nothing
    if create:
        target.create(layout.blob_length, overwrite, _metadata(fp, "uploading"))
    else:
        target.set_metadata(_metadata(fp, "uploading"))
    return journal, set(), None


def _check_length(target: PageTarget, layout: FixedVhdLayout) -> None:
    state = target.properties()
    if state.length != layout.blob_length:
        raise TargetSizeError(
            f"{target.identity} is {state.length} bytes; the fixed VHD of this source needs "
            f"{layout.blob_length} (virtual size {layout.virtual_size} + 512)")


def _resume_state(target: PageTarget, layout: FixedVhdLayout, fp: Fingerprint,
                  journal_dir: Path | None) -> tuple[Journal | None, set[int], list[Range] | None]:
    if not target.exists():
        raise ResumeMismatchError(f"--resume: {target.identity} does not exist; "
                                  "start the upload without --resume")
    journal = Journal.load(fp.target, journal_dir)
    if journal is not None:
        journal.check(fp)  # names the fields that changed
    state = target.properties()
    recorded = state.metadata.get(META_FINGERPRINT)
    if target.supports_metadata and recorded is not None and recorded != fp.digest():
        raise ResumeMismatchError(
            f"--resume refused: {target.identity} was started from another source or size "
            "(its recorded fingerprint differs); use --overwrite to start again")
    if target.supports_metadata and recorded is None:
        raise ResumeMismatchError(
            f"--resume refused: {target.identity} was not started by azlift from this "
            "source; use --overwrite to replace it")
    if state.length != layout.blob_length:
        raise ResumeMismatchError(
            f"--resume refused: {target.identity} is {state.length} bytes, this source "
            f"needs {layout.blob_length}")
    if journal is not None:
        acknowledged = set(journal.acknowledged)
        if journal.version < 2:  # its units never crossed the grid: those are sent again
            acknowledged -= {offset for offset, length in layout.units()
                             if crosses_grid((offset, length))}
        return journal, acknowledged, None
    if not target.supports_metadata:
        raise ResumeMismatchError(f"--resume: no record of an upload to {target.identity} "
                                  "on this machine; start again without --resume")
    # Started elsewhere (or the journal was lost): trust the pages the service holds.
    written = target.list_page_ranges()
    return Journal.start(fp, journal_dir), set(), written


def upload_image(image: DiskImage, target: PageTarget, *, threads: int = 8,
                 resume: bool = False, overwrite: bool = False, content_md5: bool = False,
                 create: bool = True,
                 progress: Callable[[ProgressEvent], None] | None = None,
                 cancel: threading.Event | None = None, role: str | None = None,
                 journal_dir: Path | None = None,
                 checksum: str = DEFAULT_CHECKSUM) -> UploadSummary:
    """Upload ``image`` to ``target`` as a fixed VHD; see the module docstring.

    ``role`` ("os" or "data") selects Azure's size rules checked before anything is sent.
    ``create`` is False for a managed disk's write SAS (it exists with the exact size).
    ``checksum`` ("crc64", "md5" or "none") is what each Put Page carries for the service
    to check its body against. Raises this package's errors; on ``cancel`` or Ctrl-C the acknowledged units stay
    recorded for ``resume`` and UploadInterrupted / KeyboardInterrupt propagates.
    """
    if threads < 1:
        raise ValueError("threads must be at least 1")
    if resume and overwrite:
        raise UsageError("--resume and --overwrite exclude each other")
    check_checksum(checksum)
    started = time.monotonic()
    cancel = cancel or threading.Event()
    layout = fixed_vhd_layout(image)
    check_rules(layout.virtual_size, role)
    fp = fingerprint(image, layout, target.identity)
    journal, acknowledged, written = _prepare_target(
        target, layout, fp, resume=resume, overwrite=overwrite, create=create,
        journal_dir=journal_dir)
    md5 = (OrderedMd5(layout.blob_length, (offset for offset, _ in layout.units()))
           if content_md5 else None)
    run = _Run(layout, progress, journal, md5)
    reader = SourceReader(image)
    # the MD5 keeps each unit's bytes until their turn: those are read into buffers
    mappable = any(length >= MIN_MAPPED for _, length in layout.data_extents)
    leased = (reader.lease() if mappable and not content_md5 and getattr(target, "lean", False)
              else None)
    try:
        _run_window(run, reader, target, acknowledged, written, threads, content_md5, cancel,
                    checksum, leased)
        if leased is not None:
            leased.close()  # a writer waiting for the file need not wait for the metadata
        digest = md5.finish() if md5 is not None else None
        if digest is not None:
            target.set_content_md5(digest)
        target.set_metadata(_metadata(fp, "complete"))
    except BaseException as error:
        if md5 is not None:
            md5.abandon()
        if journal is not None:
            journal.close()
            if isinstance(error, ServiceError) and error.args:
                error.args = (f"{error.args[0]} (what was sent is recorded: rerun with "
                              "--resume to continue)",)
        fresh = create and not resume and not overwrite
        if abandon_partial(target, error, fresh) and journal is not None:
            journal.remove()
        raise
    finally:
        if leased is not None:
            leased.close()
        reader.close()
    if journal is not None:
        journal.remove()
    duration = time.monotonic() - started
    unallocated = layout.blob_length - layout.scan_bytes
    return UploadSummary(
        virtual_size=layout.virtual_size, blob_length=layout.blob_length,
        data_bytes_sent=run.sent, zero_bytes_skipped=unallocated + run.zeros,
        requests=run.requests, retries=run.retries, duration_s=round(duration, 3),
        throughput=round(run.sent / duration, 1) if duration > 0 else 0.0,
        resumed_bytes=run.resumed, content_md5=digest.hex() if digest else None,
        unallocated_bytes_skipped=unallocated, zero_sector_bytes_trimmed=run.zeros)


def abandon_partial(target: PageTarget, error: BaseException, fresh: bool) -> bool:
    """After the source failed mid-upload (a corrupt compressed cluster or grain, a cut-off
    file: found only when read), deal with the partial blob; True if it was deleted.

    Resuming would fail at the same place, so a blob this run created where nothing was
    is deleted; one that replaced another (--overwrite), continued one (--resume) or a
    managed disk's is left marked incomplete, and the error says so. Failures of the
    service or interruptions keep their resumable state (not handled here).
    """
    if not isinstance(error, VhdError) or not error.args:
        return False
    delete = getattr(target, "delete", None)
    if fresh and delete is not None:
        try:
            delete()
        except Exception:  # noqa: BLE001 - the source's error is the one to report
            pass
        else:
            error.args = (f"{error.args[0]} (nothing was left: the partial "
                          f"{target.identity} was deleted)",)
            return True
    error.args = (f"{error.args[0]} ({target.identity} holds a partial upload marked "
                  f"{META_STATE}=uploading: repair or replace the source, then upload again "
                  f"with --overwrite, or delete it)",)
    return False


def _run_window(run: _Run, reader: SourceReader, target: PageTarget,
                acknowledged: set[int], written: list[Range] | None, threads: int,
                keep_data: bool, cancel: threading.Event,
                checksum: str = DEFAULT_CHECKSUM, leased: LeasedSource | None = None) -> None:
    """The bounded window: ≤ ``threads`` units in flight (plus those the MD5 holds).

    Units already acknowledged are skipped, or only read and hashed with ``keep_data``.
    A leased source is polled at most every LEASE_POLL_S and at least twice a second, so a
    writer waiting for its lease is let through within that.
    """
    def todo() -> Iterator[tuple[Range, bool]]:
        for unit in run.layout.units():
            send = unit[0] not in acknowledged
            if send or keep_data:
                yield unit, send
            else:
                run.skip(unit)

    def job(item: tuple[Range, bool]) -> UnitResult:
        unit, send = item
        return send_unit(reader, target, unit, run.layout, send, keep_data, written,
                         cancel, checksum, leased)

    pending = todo()
    next_unit = next(pending, None)
    next_poll = 0.0
    run.report()
    workers = Workers(job, threads, "azlift-put")
    try:
        while next_unit is not None or workers.in_flight:
            held = run.md5.held if run.md5 is not None else 0
            while (next_unit is not None and workers.in_flight + held < threads
                   and not cancel.is_set()):
                workers.submit(next_unit)
                next_unit = next(pending, None)
            if cancel.is_set() and not workers.in_flight:
                raise UploadInterrupted("upload interrupted; continue with --resume")
            outcome = workers.next_done(timeout=0.5)
            if leased is not None and time.monotonic() >= next_poll:
                leased.poll()
                next_poll = time.monotonic() + LEASE_POLL_S
            if outcome is not None:
                if outcome.error is not None:
                    raise outcome.error
                run.record(outcome.result, outcome.item[1])
    except BaseException:
        cancel.set()
        _drain(run, workers.close())
        raise
    finally:
        workers.close()


def _drain(run: _Run, left: list[Outcome]) -> None:
    """After a failure or interrupt: journal every unit that still finished cleanly."""
    run.md5 = None  # the whole-blob MD5 is abandoned; only acknowledgements matter now
    for outcome in left:
        if outcome.error is not None:
            continue
        try:
            run.record(outcome.result, outcome.item[1])
        except BaseException:  # noqa: BLE001 - the first error is the one reported
            continue

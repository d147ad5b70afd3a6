"""Upload a stream-optimized VMDK arriving on a pipe, in one pass, with no local copy.

The VMDK header gives the capacity, so the page blob is created before the first grain
arrives; Put Page needs no order, so each batch of grains (consecutive in the guest, at
most 4 MiB) goes to a worker thread as it comes: the worker inflates it, drops zero
sectors and puts the rest. At most ``threads`` batches are in flight, so memory stays
bounded whatever the disk's size. The footer goes last; the blob is marked complete only
after the whole stream (and an OVA member's manifest digest) checked out. A pipe cannot
be replayed: there is no resume, and an interrupted upload starts again.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from azlift.vhd import azure_virtual_size
from azlift.vhd.vmdk_stream import Grain, VmdkStream

from .checksum import DEFAULT_CHECKSUM, check_checksum, page_checksum
from .errors import TargetExistsError
from .cells import put_with_reput
from .ranges import MAX_PUT_PAGE, total_length
from .stream import footer_bytes, nonzero_ranges
from .target import PageTarget
from .uploader import (
    META_STATE,
    ProgressEvent,
    UploadSummary,
    abandon_partial,
    check_rules,
)

Batch = list[Grain]


def batches(grains: Iterable[Grain], limit: int = MAX_PUT_PAGE) -> Iterator[Batch]:
    """Runs of grains that follow each other in the guest, at most ``limit`` bytes each."""
    batch: Batch = []
    size = 0
    for grain in grains:
        if batch and (grain.offset != batch[-1].offset + batch[-1].length
                      or size + grain.length > limit):
            yield batch
            batch, size = [], 0
        batch.append(grain)
        size += grain.length
    if batch:
        yield batch


def _send_batch(target: PageTarget, batch: Batch,
                checksum: str = DEFAULT_CHECKSUM) -> tuple[int, int, int, int]:
    """Inflate, trim zero sectors, put: (bytes sent, zero bytes, requests, retries)."""
    data = b"".join(grain.inflate() for grain in batch)
    offset = batch[0].offset
    pieces = nonzero_ranges(offset, data)  # grains: whole sectors
    view = memoryview(data)
    requests = retries = 0
    for piece_offset, piece_length in pieces:
        start = piece_offset - offset
        chunk = view[start:start + piece_length]
        made, retried = put_with_reput(target, piece_offset, chunk,
                                        page_checksum(checksum, chunk))
        requests += made
        retries += retried
    sent = total_length(pieces)
    return sent, len(data) - sent, requests, retries


def upload_stream(source: VmdkStream, target: PageTarget, *, threads: int = 8,
                  overwrite: bool = False, role: str | None = None,
                  progress: Callable[[ProgressEvent], None] | None = None,
                  cancel: threading.Event | None = None,
                  checksum: str = DEFAULT_CHECKSUM) -> UploadSummary:
    """Upload ``source`` (read once, front to back) to ``target`` as a fixed VHD; each Put
    Page carries ``checksum`` ("crc64", "md5" or "none")."""
    check_checksum(checksum)
    started = time.monotonic()
    cancel = cancel or threading.Event()
    virtual_size = azure_virtual_size(source.virtual_size)
    check_rules(virtual_size, role)
    footer = footer_bytes(source, virtual_size)  # type: ignore[arg-type]  # path/unique_id
    if not overwrite and target.exists():
        raise TargetExistsError(f"{target.identity} already exists; pass --overwrite to "
                                f"replace it")
    target.create(virtual_size + len(footer), overwrite, {META_STATE: "uploading"})
    totals = [0, 0, 0, 0]  # sent, zeros trimmed, requests, retries
    done = 0

    def record(future: Future[tuple[int, int, int, int]]) -> None:
        for index, value in enumerate(future.result()):
            totals[index] += value
        if progress is not None:
            progress(ProgressEvent(source.virtual_size, done, totals[0], totals[1],
                                   totals[2], totals[3]))

    in_flight: set[Future[Any]] = set()
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="azlift-pipe") as pool:
        try:
            for batch in batches(source.grains()):
                if cancel.is_set():
                    raise KeyboardInterrupt
                while len(in_flight) >= threads:
                    finished, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                    for future in finished:
                        record(future)
                done = max(done, batch[-1].offset + batch[-1].length)
                in_flight.add(pool.submit(_send_batch, target, batch, checksum))
            for future in list(in_flight):
                in_flight.discard(future)
                record(future)
        except BaseException as error:
            cancel.set()
            for future in in_flight:
                future.cancel()
            wait(in_flight)
            abandon_partial(target, error, fresh=not overwrite)
            raise
    made, retried = put_with_reput(target, virtual_size, footer,
                                    page_checksum(checksum, footer))
    target.set_metadata({META_STATE: "complete"})
    duration = time.monotonic() - started
    sent = totals[0] + len(footer)
    blob_length = virtual_size + len(footer)
    return UploadSummary(
        virtual_size=virtual_size, blob_length=blob_length, data_bytes_sent=sent,
        zero_bytes_skipped=blob_length - sent, requests=totals[2] + made,
        retries=totals[3] + retried, duration_s=round(duration, 3),
        throughput=round(sent / duration, 1) if duration > 0 else 0.0,
        unallocated_bytes_skipped=blob_length - sent - totals[1],
        zero_sector_bytes_trimmed=totals[1])

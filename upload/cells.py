"""One cell of an upload (at most 4 MiB of the image's extents) from the source to the
service: read it (through a leased mapping where it can, see leased_source.py), drop its
zero sectors, put the rest with each request's checksum, re-put on transient failures.
Runs in a worker thread; returns an immutable ``UnitResult`` for the main thread to record.
"""
from __future__ import annotations

import mmap
import threading
import time
from contextlib import nullcontext
from typing import NamedTuple

from .checksum import DEFAULT_CHECKSUM, PageChecksum, page_checksum
from .errors import TransientServiceError, UploadError, UploadInterrupted
from .http11 import BodyWithdrawn, GuardedBody
from .leased_source import MIN_MAPPED, LeasedSource, close_mapping
from .ranges import (
    GAP_BUDGET,
    MAX_PUT_PAGE,
    SECTOR,
    Range,
    merge_small_gaps,
    nonzero_pieces,
    subtract,
    total_length,
)
from .stream import FixedVhdLayout, SourceReader, dense_checksum, nonzero_sector_flags
from .target import PageTarget

REPUT_ATTEMPTS = 3
REPUT_BACKOFF_S = 0.5


class UnitResult(NamedTuple):
    """One work unit, done: what travelled, what was skipped, and its bytes if kept."""

    offset: int
    length: int
    sent_bytes: int
    zero_bytes: int
    requests: int
    retries: int
    data: bytes | None
    already_bytes: int = 0  # non-zero bytes the service held from an earlier run



def put_with_reput(target: PageTarget, offset: int, data: bytes | memoryview | GuardedBody,
                    checksum: PageChecksum) -> tuple[int, int]:
    """Put one range, re-putting it on transient failures; return (requests, retries)."""
    # crc64 is passed only when set, so a PageTarget written before it still works with md5.
    extra = {"crc64": checksum.crc64} if checksum.crc64 is not None else {}
    retries = 0
    for attempt in range(1, REPUT_ATTEMPTS + 1):
        try:
            attempts = target.put_pages(offset, data, checksum.md5, **extra)
            return 1, retries + attempts - 1
        except TransientServiceError as error:
            if attempt == REPUT_ATTEMPTS:
                raise
            retries += getattr(error, "attempts", 1)  # every attempt of the failed put
            time.sleep(REPUT_BACKOFF_S * attempt)
    raise AssertionError("unreachable")


def send_unit(reader: SourceReader, target: PageTarget, unit: Range, layout: FixedVhdLayout,
               send: bool, keep: bool, written: list[Range] | None,
               cancel: threading.Event, checksum: str = DEFAULT_CHECKSUM,
               leased: LeasedSource | None = None) -> UnitResult:
    """Read one unit, drop zero sectors, put the rest. Runs in a worker thread.

    With a leased source, a unit stored in one piece of the file is read through a
    mapping (see leased_source.py); one whose lease went before it was answered is read
    again into a buffer and put again, which also reports a source cut short."""
    offset, length = unit
    if (leased is not None and send and not keep and offset != layout.footer_offset
            and length >= MIN_MAPPED):
        stored = reader.stored_at(offset, length)
        mapping = leased.map(stored, length) if stored is not None else None
        if mapping is not None:
            try:
                result = put_unit(target, unit, mapping, written, cancel, checksum, leased)
            except BodyWithdrawn:
                result = None
            except UploadError:
                leased.poll()  # the kernel may have ended the lease unasked (break time)
                if not leased.withdrawn:
                    raise
                result = None  # a body changed under a broken lease fails its checksum
            finally:
                close_mapping(mapping)
            if result is not None:
                leased.poll()  # asked afresh: a lease the kernel ended leaves no guard a trace
                if not leased.withdrawn:
                    return result  # the lease held throughout: what went is what the file holds
    data = layout.footer if offset == layout.footer_offset else reader.read(offset, length)
    if send and not cancel.is_set():
        result = put_unit(target, unit, data, written, cancel, checksum)
        return result._replace(data=data) if keep else result
    if send:
        raise UploadInterrupted("upload interrupted")
    return UnitResult(offset, length, 0, 0, 0, 0, data if keep else None)


def put_unit(target: PageTarget, unit: Range, data: bytes | bytearray | mmap.mmap,
              written: list[Range] | None, cancel: threading.Event, checksum: str,
              leased: LeasedSource | None = None) -> UnitResult:
    """Scan ``data`` (the unit's bytes) for zero sectors and put the rest; a mapping is
    read in user space only under the lease's guard and goes out as a GuardedBody."""
    offset, length = unit
    guard = leased.guard if leased is not None else nullcontext
    with guard():
        # a unit without zero sectors (most are) is one request, checksummed in the scan;
        # one with zeros goes to the sector scan (its whole-buffer search would only repeat)
        whole = dense_checksum(data, checksum) if length <= MAX_PUT_PAGE else None
        pieces = [(offset, length)] if whole is not None else \
            nonzero_pieces(offset, nonzero_sector_flags(data))
    already = 0
    if written:
        wanted = total_length(pieces)
        pieces = subtract(pieces, written)
        already = wanted - total_length(pieces)
    else:  # a few small zero gaps travel when that saves requests (≤ 1 % more bytes)
        budget = int(total_length(pieces) * GAP_BUDGET) // SECTOR * SECTOR
        pieces = merge_small_gaps(pieces, budget)
    zeros = length - total_length(pieces) - already
    sent = requests = retries = 0
    with memoryview(data) as view:  # slices share the buffer: no piece is copied to be sent
        for piece_offset, piece_length in pieces:
            if cancel.is_set():
                raise UploadInterrupted("upload interrupted")
            start = piece_offset - offset
            chunk = view[start:start + piece_length]
            if whole is not None and piece_length == length:
                sum_of_chunk = whole
            else:
                with guard():
                    sum_of_chunk = page_checksum(checksum, chunk)
            body = GuardedBody(chunk, leased.guard) if leased is not None else chunk
            made, retried = put_with_reput(target, piece_offset, body, sum_of_chunk)
            requests += made
            retries += retried
            sent += piece_length
    return UnitResult(offset, length, sent, zeros, requests, retries, None, already)

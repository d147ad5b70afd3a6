"""Check that a page blob holds exactly the fixed VHD of a source, without downloading zeros.

Four looks, cheapest first: blob type and length; the footer, field by field; the page
ranges the service lists against the source's data map (every non-zero sector must lie in
a written page; written pages outside the map must read as zeros); then the data itself,
each data piece downloaded and compared byte for byte with the source's. The last look
doubles what the storage service serves for the disk; ``read_back=False`` stops before it.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from azlift.vhd import DiskImage
from azlift.vhd._vhd_structs import Footer

from .ranges import Range, coalesce, subtract, total_length
from .errors import AuthError, ServiceError
from .stream import FixedVhdLayout, SourceReader, fixed_vhd_layout, nonzero_ranges
from .target import PageTarget

if TYPE_CHECKING:
    import numpy as np

T = TypeVar("T")
R = TypeVar("R")
MAX_REPORTED = 20
DOWNLOAD_LIMIT = 4 * 1024 * 1024


@dataclass(frozen=True)
class Difference:
    """One thing the blob has that the fixed VHD of the source does not (or vice versa)."""

    check: str  # "exists", "blob_type", "length", "footer", "page_ranges", "data"
    message: str
    offset: int | None = None


@dataclass(frozen=True)
class VerifyReport:
    """The verdict on one blob; ``ok`` when nothing differs."""

    target: str
    virtual_size: int
    blob_length: int
    data_bytes_checked: int
    ranges_checked: int
    differences: tuple[Difference, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.differences

    def to_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document["ok"] = self.ok
        document["differences"] = [asdict(d) for d in self.differences]
        return document


def footer_differences(found: bytes, expected: bytes) -> list[Difference]:
    """Footer fields that differ, each with both values."""
    if found == expected:
        return []
    have, want = Footer.unpack(found), Footer.unpack(expected)
    names = [name for name in Footer._fields if getattr(have, name) != getattr(want, name)]
    if not names:
        return [Difference("footer", "footer bytes differ in reserved space")]
    return [Difference("footer", f"footer {name} is {_shown(getattr(have, name))}, expected "
                       f"{_shown(getattr(want, name))}") for name in names]


def _first_difference(found: bytes, expected: bytes) -> int:
    """Index of the first differing byte (vectorised; the buffers may be 4 MiB)."""
    import numpy as np
    size = min(len(found), len(expected))
    unequal = np.flatnonzero(np.frombuffer(found, np.uint8, size) !=
                             np.frombuffer(expected, np.uint8, size))
    return int(unequal[0]) if unequal.size else size


def _shown(value: object) -> str:
    return value.hex() if isinstance(value, bytes) else repr(value)


def _window_map(function: Callable[[T], R], items: Iterable[T], threads: int) -> Iterator[R]:
    """``function`` over ``items`` on ``threads`` workers, results in order, with at most
    2 × ``threads`` submitted at once (``Executor.map`` would submit every item up front:
    a future per 4 MiB of a multi-TiB disk)."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        pending: deque[Future[R]] = deque()
        for item in items:
            pending.append(pool.submit(function, item))
            if len(pending) >= 2 * threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _data_map(reader: SourceReader, layout: FixedVhdLayout, threads: int) -> list[Range]:
    """Sector-exact ranges of the source's non-zero data (read once, in parallel)."""
    def scan(unit: Range) -> list[Range]:
        offset, length = unit
        return nonzero_ranges(offset, reader.read(offset, length))

    data_units = (unit for unit in layout.units() if unit[0] < layout.footer_offset)
    pieces = [piece for unit_pieces in _window_map(scan, data_units, threads)
              for piece in unit_pieces]
    return coalesce(pieces, max_length=DOWNLOAD_LIMIT)


def verify_upload(image: DiskImage, target: PageTarget, *, threads: int = 4,
                  progress: Callable[[int, int], None] | None = None,
                  read_back: bool = True) -> VerifyReport:
    """Compare ``target`` with the fixed VHD of ``image``; ``progress(done, total)`` bytes.
    Without ``read_back`` the data is not downloaded: type, length, footer and page ranges
    only (``data_bytes_checked`` is then 0)."""
    layout = fixed_vhd_layout(image)
    differences: list[Difference] = []
    report = dict(target=target.identity, virtual_size=layout.virtual_size,
                  blob_length=layout.blob_length)
    try:
        state = target.properties()
    except ServiceError as error:
        if isinstance(error, AuthError) or error.status != 404:
            raise
        missing = Difference("exists", f"there is no blob at {target.identity} "
                             f"({error.service_code or 'HTTP 404'})")
        return VerifyReport(**report, data_bytes_checked=0, ranges_checked=0,
                            differences=(missing,))
    if state.blob_type != "PageBlob":
        differences.append(Difference("blob_type", f"blob is a {state.blob_type}, "
                                      "expected a PageBlob"))
    if state.length != layout.blob_length:
        differences.append(Difference("length", f"blob is {state.length} bytes, expected "
                                      f"{layout.blob_length} (virtual size "
                                      f"{layout.virtual_size} + 512)"))
    if differences:
        return VerifyReport(**report, data_bytes_checked=0, ranges_checked=0,
                            differences=tuple(differences))
    differences += footer_differences(target.read(layout.footer_offset, 512), layout.footer)
    reader = SourceReader(image)
    try:
        expected = _data_map(reader, layout, threads)
        listed = [r for r in target.list_page_ranges() if r[0] < layout.footer_offset]
        for offset, length in subtract(expected, listed)[:MAX_REPORTED]:
            differences.append(Difference(
                "page_ranges", f"{length} bytes of data at offset {offset} are in no "
                "written page of the blob", offset))
        if not read_back:
            return VerifyReport(**report, data_bytes_checked=0, ranges_checked=0,
                                differences=tuple(differences))
        strays = coalesce(subtract(listed, expected), max_length=DOWNLOAD_LIMIT)
        checked = total_length(expected) + total_length(strays)
        done = 0

        def compare(piece: Range, from_source: bool) -> Difference | None:
            offset, length = piece
            blob = target.read(offset, length)
            source = reader.read(offset, length) if from_source else bytes(length)
            if blob == source:
                return None
            first = _first_difference(blob, source)
            what = "data" if from_source else "stray data outside the source's data map"
            return Difference("data", f"{what}: bytes differ from offset {offset + first} "
                              f"(range {offset}+{length})", offset + first)

        jobs = [(piece, True) for piece in expected] + [(piece, False) for piece in strays]
        results = _window_map(lambda job: compare(*job), jobs, threads)
        for (piece, _), found in zip(jobs, results):
            done += piece[1]
            if progress is not None:
                progress(done, checked)
            if found is not None and len(differences) < MAX_REPORTED:
                differences.append(found)
    finally:
        reader.close()
    return VerifyReport(**report, data_bytes_checked=checked, ranges_checked=len(jobs),
                        differences=tuple(differences))

"""The fixed-VHD view of an image: layout, zero scan, padded reads, ordered MD5, journal."""
from __future__ import annotations

import hashlib
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from azlift import vhd
from tests.upload.helpers import make_source
from azlift.upload.journal import Journal, fingerprint, state_dir
from azlift.upload.ranges import GRID
from azlift.upload.ranges import MAX_PUT_PAGE
from azlift.upload.stream import (
    OrderedMd5,
    SourceReader,
    fixed_vhd_layout,
    nonzero_ranges,
    nonzero_sector_flags,
)
from azlift.vhd.conversion import footer_for


@settings(max_examples=60)
@given(st.lists(st.tuples(st.integers(0, 63), st.integers(0, 511), st.integers(1, 255)),
                max_size=20))
def test_zero_scan_matches_a_plain_loop(writes) -> None:
    buffer = bytearray(64 * 512)
    for sector, position, value in writes:
        buffer[sector * 512 + position] = value
    flags = nonzero_sector_flags(bytes(buffer))
    assert flags.tolist() == [any(buffer[i:i + 512]) for i in range(0, len(buffer), 512)]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 64 * 512 - 1), st.integers(1, 1600)), max_size=6),
       st.sampled_from([bytes, bytearray, memoryview]))
def test_zero_scan_of_dense_data_with_zero_runs_anywhere(runs, kind) -> None:
    buffer = bytearray(b"\x5a" * (64 * 512))
    for start, length in runs:  # runs of zeros, aligned or not, 512 long or not
        buffer[start:start + length] = bytes(len(buffer[start:start + length]))
    flags = nonzero_sector_flags(kind(bytes(buffer)))
    assert flags.tolist() == [any(buffer[i:i + 512]) for i in range(0, len(buffer), 512)]



def _plain_ranges(offset: int, buffer: bytes, max_length: int) -> list[tuple[int, int]]:
    """Runs of non-zero sectors by a loop, cut at ``max_length``: the oracle."""
    ranges: list[tuple[int, int]] = []
    for index in range(0, len(buffer), 512):
        if not any(buffer[index:index + 512]):
            continue
        start = offset + index
        if ranges and sum(ranges[-1]) == start and ranges[-1][1] + 512 <= max_length:
            ranges[-1] = (ranges[-1][0], ranges[-1][1] + 512)
        else:
            ranges.append((start, 512))
    return ranges


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 64 * 512 - 1), st.integers(1, 1600)), max_size=6),
       st.sampled_from([bytes, bytearray, memoryview]), st.integers(0, 1000))
def test_nonzero_ranges_match_a_plain_loop_with_or_without_zero_runs(runs, kind,
                                                                    sector) -> None:
    buffer = bytearray(b"\x5a" * (64 * 512))
    for start, length in runs:  # none (the whole-buffer path) or zeros anywhere
        buffer[start:start + length] = bytes(len(buffer[start:start + length]))
    offset = sector * 512
    assert nonzero_ranges(offset, kind(bytes(buffer))) == \
        _plain_ranges(offset, bytes(buffer), MAX_PUT_PAGE)


def test_a_dense_buffer_past_4_mib_is_cut_into_put_page_sizes() -> None:
    data = b"\x01" * (MAX_PUT_PAGE + 1024)
    assert nonzero_ranges(512, data) == [(512, MAX_PUT_PAGE), (512 + MAX_PUT_PAGE, 1024)]
    with pytest.raises(ValueError, match="not whole sectors"):
        nonzero_ranges(0, b"\x01" * 700)

def test_layout_rounds_to_a_mib_and_ends_with_converts_footer(tmp_path) -> None:
    source = make_source("raw", tmp_path, size=21 * 1024 * 1024 + 700, count=10)
    with vhd.open_image(str(source.path)) as image:
        layout = fixed_vhd_layout(image)
        assert layout.footer == footer_for(image, layout.virtual_size).pack()
    assert layout.virtual_size == 22 * 1024 * 1024
    assert layout.blob_length == layout.virtual_size + 512
    units = list(layout.units())
    assert units[-1] == (layout.virtual_size, 512)
    assert all(n <= GRID for o, n in units)
    assert all(o % 512 == 0 and n % 512 == 0 for o, n in units)


def test_reader_pads_past_the_source_end_and_reads_from_every_thread(tmp_path) -> None:
    path = tmp_path / "odd.raw"
    path.write_bytes(b"\x07" * 1000)
    with vhd.open_image(str(path)) as image:
        reader = SourceReader(image)
        data = reader.read(0, 4096)
        reader.close()
    assert data == b"\x07" * 1000 + bytes(3096)


def test_ordered_md5_equals_md5_of_the_assembled_blob() -> None:
    rng = random.Random(3)
    length = 40 * 4096 + 512
    units = sorted(rng.sample(range(40), 12))
    pieces = {u * 4096: rng.randbytes(4096) for u in units}
    pieces[40 * 4096] = b"F" * 512
    blob = bytearray(length)
    for offset, data in pieces.items():
        blob[offset:offset + len(data)] = data
    md5 = OrderedMd5(length, sorted(pieces))
    order = list(pieces.items())
    rng.shuffle(order)
    for offset, data in order:
        md5.add(offset, data)
    assert md5.finish() == hashlib.md5(bytes(blob)).digest()


def test_journal_survives_a_torn_last_line(tmp_path) -> None:
    source = make_source("raw", tmp_path, count=3)
    with vhd.open_image(str(source.path)) as image:
        fp = fingerprint(image, fixed_vhd_layout(image), "https://a.blob.core.windows.net/c/b")
    journal = Journal.start(fp, tmp_path)
    for offset in (0, 4194304, 8388608):
        journal.acknowledge(offset)
    journal.close()
    with open(journal.path, "a") as handle:
        handle.write("1258")  # a kill -9 in the middle of an append
    loaded = Journal.load(fp.target, tmp_path)
    assert loaded.acknowledged == {0, 4194304, 8388608}
    assert loaded.header == fp


def test_state_dir_precedence(tmp_path) -> None:
    assert state_dir({"AZLIFT_STATE_DIR": "/x", "XDG_STATE_HOME": "/y"}).as_posix() == "/x"
    assert state_dir({"XDG_STATE_HOME": "/y"}).as_posix() == "/y/azlift"
    assert state_dir({}).as_posix().endswith(".local/state/azlift")


def test_progress_events_are_monotonic_and_complete(tmp_path) -> None:
    """Checked through a fake target that only records (no network)."""
    from azlift.upload.target import BlobState
    from azlift.upload.uploader import upload_image

    class Recorder:
        identity = "memory://disk"
        supports_metadata = True

        def __init__(self) -> None:
            self.pages: dict[int, bytes] = {}
            self.meta: dict[str, str] = {}

        def exists(self) -> bool:
            return False

        def properties(self) -> BlobState:
            return BlobState(0, "PageBlob", dict(self.meta))

        def create(self, size: int, overwrite: bool,
                   metadata: dict[str, str] | None = None) -> None:
            self.size = size
            self.meta.update(metadata or {})

        def put_pages(self, offset: int, data: bytes, md5: bytes | None, *,
                      crc64: bytes | None = None) -> int:
            # CRC64 by default (its value is checked in test_upload_checksum.py)
            assert md5 is None and crc64 is not None and len(crc64) == 8
            self.pages[offset] = data
            return 1

        def set_metadata(self, metadata: dict[str, str]) -> None:
            self.meta.update(metadata)

        def set_content_md5(self, md5: bytes) -> None:
            self.md5 = md5

    source = make_source("raw", tmp_path, count=30)
    events = []
    target = Recorder()
    with vhd.open_image(str(source.path)) as image:
        summary = upload_image(image, target, threads=4, progress=events.append,
                               journal_dir=tmp_path / "s")
    done = [event.done_bytes for event in events]
    assert done == sorted(done) and done[-1] == events[-1].total_bytes
    assert events[-1].sent_bytes == summary.data_bytes_sent == sum(map(len, target.pages.values()))
    assert target.meta["azlift_state"] == "complete"
    blob = np.zeros(target.size, dtype=np.uint8)
    for offset, data in target.pages.items():
        blob[offset:offset + len(data)] = np.frombuffer(data, dtype=np.uint8)
    assert bytes(blob[:source.size]) == source.guest_bytes()

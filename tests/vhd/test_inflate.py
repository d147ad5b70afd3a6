"""The inflater: ISA-L when installed (a declared dependency), zlib otherwise; either gives
the same guest bytes for VMDK grains (with and without markers, read in place or from a
pipe) and qcow2 clusters."""
from __future__ import annotations

import importlib
import io
import threading
import zlib
from pathlib import Path

import pytest

from azlift import vhd
from azlift.vhd import _inflate
from azlift.vhd.qcow2 import Qcow2Image
from azlift.vhd.vmdk import VmdkImage
from azlift.vhd.vmdk_stream import open_vmdk_stream
from tests.vhd.images import MIB, SECTOR, expected_bytes, scattered_chunks, write_raw
from tests.vhd.qcow2_images import make_variant, source_disk
from tests.vhd.vmdk_images import make_vmdk

SIZE = 6 * MIB + 3 * SECTOR


@pytest.fixture(params=["isal", "zlib"])
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "zlib":
        monkeypatch.setattr(_inflate, "ENGINE", zlib)
    assert _inflate.engine_name() == request.param
    return request.param


def test_isal_is_installed_and_used_by_default() -> None:
    # a declared dependency: without it every grain costs 1.5 times the CPU
    assert _inflate.engine_name() == "isal"


def stream_raw(tmp_path: Path) -> tuple[Path, bytes]:
    chunks = scattered_chunks(SIZE - 4096, 20, seed=5)
    return write_raw(tmp_path / "disk.raw", SIZE, chunks), expected_bytes(SIZE, chunks)


def test_stream_vmdk_reads_the_same_with_either_engine(tmp_path: Path, engine: str) -> None:
    raw, expected = stream_raw(tmp_path)
    path = make_vmdk(raw, tmp_path / "s.vmdk", "streamOptimized")
    with VmdkImage(path) as image:
        assert bytes(image.read(0, SIZE)) == expected
    with open(path, "rb") as handle:
        stream = open_vmdk_stream(io.BufferedReader(handle), str(path))  # type: ignore[arg-type]
        got = bytearray(SIZE)
        for grain in stream.grains():
            got[grain.offset:grain.offset + grain.length] = grain.inflate()
    assert bytes(got) == expected


def test_compressed_qcow2_reads_the_same_with_either_engine(tmp_path: Path,
                                                            engine: str) -> None:
    raw, expected = source_disk(tmp_path)
    path = make_variant(raw, tmp_path, "v3-zlib")
    with Qcow2Image(path) as image:
        assert bytes(image.read(0, image.virtual_size)) == expected


def test_a_damaged_grain_is_a_typed_error_with_either_engine(tmp_path: Path,
                                                             engine: str) -> None:
    raw, _ = stream_raw(tmp_path)
    path = make_vmdk(raw, tmp_path / "s.vmdk", "streamOptimized")
    with VmdkImage(path) as image:
        first = next(iter(image.extents()))[0]
        entry = image.extent_list[0]._entry(first // image.extent_list[0].grain)
    data = bytearray(path.read_bytes())
    where = entry * SECTOR + 12 + 2  # past the marker and the zlib header
    data[where:where + 16] = bytes(b ^ 0x5A for b in data[where:where + 16])
    path.write_bytes(bytes(data))
    with VmdkImage(path) as image, pytest.raises(Exception) as caught:
        image.read(first, 4096)
    assert getattr(caught.value, "exit_code", None) == 3
    assert "does not inflate" in str(caught.value) or "inflates to" in str(caught.value)


def test_convert_inflates_grains_in_two_threads_at_once(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # The first two grain inflations must be under way at the same time (they meet at a
    # barrier): convert's workers inflate in parallel, and the reader takes no lock.
    convert_module = importlib.import_module("azlift.vhd.conversion")

    size = 16 * MIB
    chunks = [(offset, bytes([offset // MIB + 1]) * 300_000) for offset in range(0, size, 4 * MIB)]
    raw = write_raw(tmp_path / "disk.raw", size, chunks)
    source = make_vmdk(raw, tmp_path / "s.vmdk", "streamOptimized")
    real = _inflate.ENGINE
    meeting = threading.Barrier(2, timeout=60)
    calls = iter(range(1 << 30))
    threads: set[int] = set()

    class Meeting:
        error = real.error

        @staticmethod
        def decompressobj(*args: int) -> object:  # each grain's inflation starts here
            if next(calls) < 2:
                threads.add(threading.get_ident())
                meeting.wait()
            return real.decompressobj(*args)

    monkeypatch.setattr(_inflate, "ENGINE", Meeting)
    monkeypatch.setattr(convert_module, "COPY_WORKERS", 2)
    monkeypatch.setattr(convert_module, "COPY_WINDOW", 4)
    result = vhd.convert(str(source), str(tmp_path / "out.vhd"))
    assert len(threads) == 2 and result.data_bytes >= 4 * 300_000
    with vhd.open_image(str(tmp_path / "out.vhd")) as image:  # what the two threads wrote
        assert bytes(image.read(0, size)) == expected_bytes(size, chunks)


def test_a_grain_that_would_inflate_past_its_size_is_refused_without_inflating_it(
        engine: str) -> None:
    """A few KiB of zlib can hold GiBs of zeros: no more than the grain's size and one byte
    is ever made; a stream that is cut off is refused too."""
    import tracemalloc

    grain = 64 * 1024
    bomb = zlib.compress(bytes(256 * MIB), 9)
    assert len(bomb) < 512 * 1024
    tracemalloc.start()
    try:
        with pytest.raises(_inflate.InflateError, match=f"more than {grain} bytes"):
            _inflate.inflate_zlib(bomb, grain)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * MIB
    whole = zlib.compress(b"\x07" * grain)
    assert _inflate.inflate_zlib(whole, grain) == b"\x07" * grain
    with pytest.raises(_inflate.InflateError, match="truncated"):
        _inflate.inflate_zlib(whole[:-6], grain)


def test_a_zstd_cluster_that_would_inflate_past_its_size_stops_soon_after() -> None:
    """zstd's RLE blocks inflate ~32000:1: the frame goes in by small steps and the
    inflation stops a little past the cluster, so the reader refuses it by its length."""
    import tracemalloc

    zstandard = pytest.importorskip("zstandard")
    from azlift.vhd.qcow2 import zstd_inflate

    cluster = 64 * 1024
    bomb = zstandard.ZstdCompressor(level=19).compress(bytes(512 * MIB))
    assert len(bomb) < 64 * 1024
    context = zstandard.ZstdDecompressor()
    tracemalloc.start()
    try:
        out = zstd_inflate(context, bomb, cluster)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert cluster < len(out) < 64 * MIB and peak < 160 * MIB
    two_frames = zstandard.ZstdCompressor().compress(b"\x01" * (cluster // 2)) * 2
    assert zstd_inflate(context, two_frames + b"next cluster", cluster) == b"\x01" * cluster

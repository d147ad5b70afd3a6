"""Per-request integrity: each Put Page carries the checksum asked for, and its value is
checked here against an independent CRC-64/NVME (a small table-driven implementation)."""
from __future__ import annotations

import base64
import hashlib
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from azlift import vhd
from tests.support.azurite import azurite  # noqa: F401  (fixture)
from tests.upload.helpers import blob_target, make_source
from azlift.upload.checksum import RunningChecksum, page_checksum
from azlift.upload.errors import UsageError
from azlift.upload.stream import SCAN_BLOCK, dense_checksum
from azlift.upload.uploader import upload_image

# CRC-64/NVME: reflected polynomial 0x9A6C9329AC4BC9B5, initial value and final xor all ones.
POLY_REFLECTED = 0x9A6C9329AC4BC9B5
MASK = (1 << 64) - 1


def _table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ POLY_REFLECTED if crc & 1 else crc >> 1
        table.append(crc)
    return table


TABLE = _table()


def reference_crc64(data: bytes) -> int:
    crc = MASK
    for byte in data:
        crc = TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ MASK


def crc64(data: bytes | memoryview) -> bytes:
    return page_checksum("crc64", data).crc64


def test_reference_matches_the_published_check_value() -> None:
    assert reference_crc64(b"123456789") == 0xAE8B14860A799888


def test_crc64_is_the_check_value_little_endian() -> None:
    assert crc64(b"123456789") == (0xAE8B14860A799888).to_bytes(8, "little")
    assert crc64(b"123456789") == bytes.fromhex("8898790a86148bae")


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=3000), st.integers(0, 100))
def test_crc64_of_any_bytes_and_views_matches_the_reference(data: bytes, cut: int) -> None:
    view = memoryview(data)[min(cut, len(data)):]
    assert crc64(view) == reference_crc64(bytes(view)).to_bytes(8, "little")


def test_page_checksum_kinds() -> None:
    data = b"\x5a" * 1024
    assert page_checksum("crc64", data).md5 is None
    assert page_checksum("md5", data).md5 == hashlib.md5(data).digest()
    assert page_checksum("md5", data).crc64 is None
    assert page_checksum("none", data).md5 is None and page_checksum("none", data).crc64 is None


class HeaderCapture:
    """raw_request_hook: the checksum headers and body of every Put Page, as sent."""

    def __init__(self) -> None:
        self.pages: list[tuple[bytes, str | None, str | None]] = []
        self._lock = threading.Lock()

    def __call__(self, request) -> None:  # noqa: ANN001 - azure-core PipelineRequest
        http = request.http_request
        if http.method != "PUT" or "comp=page" not in http.url:
            return
        body = bytes(http.body)
        with self._lock:
            self.pages.append((body, http.headers.get("x-ms-content-crc64"),
                               http.headers.get("Content-MD5")))


def _upload(azurite, tmp_path, **options):  # noqa: F811
    source = make_source("raw", tmp_path, count=12, seed=11)
    capture = HeaderCapture()
    target = blob_target(azurite, request_hook=capture)
    with vhd.open_image(str(source.path)) as image:
        summary = upload_image(image, target, threads=3, journal_dir=tmp_path / "state",
                               **options)
    blob = target.client.download_blob().readall()
    assert blob[:source.size] == source.guest_bytes()
    assert len(capture.pages) == summary.requests > 1
    return capture.pages


def test_default_put_pages_carry_crc64_of_their_body(azurite, tmp_path) -> None:  # noqa: F811
    for body, crc_header, md5_header in _upload(azurite, tmp_path):
        assert md5_header is None
        assert crc_header is not None
        assert base64.b64decode(crc_header) == reference_crc64(body).to_bytes(8, "little")


def test_md5_checksum_sends_content_md5(azurite, tmp_path) -> None:  # noqa: F811
    for body, crc_header, md5_header in _upload(azurite, tmp_path, checksum="md5"):
        assert crc_header is None
        assert base64.b64decode(md5_header) == hashlib.md5(body).digest()


def test_no_checksum_sends_neither_header(azurite, tmp_path) -> None:  # noqa: F811
    for _, crc_header, md5_header in _upload(azurite, tmp_path, checksum="none"):
        assert crc_header is None and md5_header is None


def test_unknown_checksum_is_a_usage_error(tmp_path) -> None:
    source = make_source("raw", tmp_path, count=1)
    with vhd.open_image(str(source.path)) as image, pytest.raises(UsageError, match="crc64"):
        upload_image(image, object(), checksum="sha1")  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["crc64", "md5", "none"])
def test_a_checksum_fed_in_blocks_equals_the_one_of_the_whole_body(kind: str) -> None:
    data = bytes(range(251)) * 4000
    running = RunningChecksum(kind)
    for start in range(0, len(data), 70001):
        running.update(memoryview(data)[start:start + 70001])
    assert running.result() == page_checksum(kind, data)


@pytest.mark.parametrize("kind", ["crc64", "md5", "none"])
def test_dense_checksum_of_a_body_without_zero_sectors_is_its_page_checksum(kind: str) -> None:
    data = (bytes(range(1, 256)) * 17000)[:3 * SCAN_BLOCK + 4096]  # four blocks, the last short
    assert dense_checksum(data, kind) == page_checksum(kind, data)
    if kind == "crc64":
        assert dense_checksum(data, kind).crc64 == reference_crc64(data).to_bytes(8, "little")


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 4 * SCAN_BLOCK // 512 - 1), st.integers(0, 511))
def test_dense_checksum_finds_a_zero_sector_anywhere(sector: int, shift: int) -> None:
    data = bytearray(b"\x5a" * (4 * SCAN_BLOCK))
    data[sector * 512:(sector + 1) * 512] = bytes(512)  # an aligned zero sector
    assert dense_checksum(bytes(data), "crc64") is None
    data[sector * 512:(sector + 1) * 512] = b"\x5a" * 512
    data[sector * 512 + shift] = 0  # one zero byte: still dense
    assert dense_checksum(bytes(data), "crc64") == page_checksum("crc64", bytes(data))


def test_dense_checksum_leaves_views_and_part_sectors_to_the_sector_scan() -> None:
    assert dense_checksum(memoryview(b"\x5a" * 1024), "crc64") is None
    assert dense_checksum(b"\x5a" * 700, "crc64") is None

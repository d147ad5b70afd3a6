"""verify_upload names what differs between a blob and the fixed VHD of a source."""
from __future__ import annotations

import pytest

from azlift import vhd
from tests.support.azurite import azurite  # noqa: F401  (fixture)
from tests.upload.helpers import blob_target, make_source
from azlift.upload.uploader import upload_image
from azlift.upload.verify import verify_upload


@pytest.fixture
def uploaded(azurite, tmp_path):  # noqa: F811
    source = make_source("vhdx", tmp_path, count=25, seed=9)
    target = blob_target(azurite)
    with vhd.open_image(str(source.path)) as image:
        upload_image(image, target, journal_dir=tmp_path / "state")
    return source, target


def _verify(source, target):
    with vhd.open_image(str(source.path)) as image:
        return verify_upload(image, target, threads=3)


def test_identical_blob_verifies(uploaded) -> None:
    source, target = uploaded
    report = _verify(source, target)
    assert report.ok and report.differences == ()
    assert report.data_bytes_checked >= source.data_bytes
    assert report.to_dict()["ok"] is True


def test_stray_data_and_damaged_footer_are_named(uploaded) -> None:
    source, target = uploaded
    zero_page = next(offset for offset in range(0, source.size, 512)
                     if not any(source.guest_bytes()[offset:offset + 512]))
    target.client.upload_page(b"\x01" * 512, offset=zero_page, length=512)
    footer_offset = target.properties().length - 512
    footer = bytearray(target.read(footer_offset, 512))
    footer[0:8] = b"notavhd!"
    target.client.upload_page(bytes(footer), offset=footer_offset, length=512)
    report = _verify(source, target)
    checks = {d.check for d in report.differences}
    assert not report.ok and checks == {"data", "footer"}
    messages = " ".join(d.message for d in report.differences)
    assert "stray data" in messages and f"offset {zero_page}" in messages
    assert "footer cookie" in messages


def test_lost_pages_are_named(uploaded) -> None:
    source, target = uploaded
    offset, data = source.chunks[3]
    page = offset // 512 * 512
    target.client.clear_page(offset=page, length=512)
    report = _verify(source, target)
    assert {d.check for d in report.differences} == {"page_ranges", "data"}
    assert any(d.offset is not None and page <= d.offset < page + 512
               for d in report.differences if d.check == "data")


def test_wrong_length_and_type_stop_early(azurite, tmp_path) -> None:  # noqa: F811
    source = make_source("raw", tmp_path, count=2)
    target = blob_target(azurite)
    target.client.create_page_blob(size=1024 * 1024 * 30 + 512)
    report = _verify(source, target)
    assert [d.check for d in report.differences] == ["length"]
    block = blob_target(azurite, name="block.vhd")
    block.client.upload_blob(b"x" * 1024)
    report = _verify(source, block)
    assert [d.check for d in report.differences] == ["blob_type", "length"]


def test_a_missing_blob_or_container_is_a_difference(azurite, tmp_path) -> None:  # noqa: F811
    source = make_source("raw", tmp_path, count=2)
    for target in (blob_target(azurite, name="never-uploaded.vhd"),
                   blob_target(azurite, container=azurite.new_container_name())):
        report = _verify(source, target)
        assert not report.ok
        assert [d.check for d in report.differences] == ["exists"]
        assert "no blob" in report.differences[0].message


def test_window_map_keeps_order_and_bounds_what_is_submitted() -> None:
    import threading

    from azlift.upload.verify import _window_map
    running = {"now": 0, "most": 0, "submitted": 0}
    lock = threading.Lock()

    def items():
        for number in range(200):
            running["submitted"] += 1
            yield number

    def square(number: int) -> int:
        with lock:
            running["now"] += 1
            running["most"] = max(running["most"], running["now"])
        with lock:
            running["now"] -= 1
        return number * number

    results = _window_map(square, items(), threads=3)
    first = [next(results) for _ in range(5)]
    assert first == [0, 1, 4, 9, 16]
    assert running["submitted"] <= 5 + 2 * 3  # lazily, not all 200 up front
    assert first + list(results) == [number * number for number in range(200)]
    assert running["most"] <= 3

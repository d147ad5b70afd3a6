"""Every source format lands in Azurite as exactly the fixed VHD `vhd convert` writes,
and only non-zero sectors (plus the footer) travel, each Put Page with its
transactional checksum."""
from __future__ import annotations

import hashlib

import pytest

from azlift import vhd
from tests.support.azurite import azurite  # noqa: F401  (fixture)
from tests.upload.helpers import SOURCE_KINDS, WireCounter, blob_target, converted_bytes, make_source
from azlift.upload.ranges import MAX_PUT_PAGE
from azlift.upload.uploader import upload_image
from azlift.vhd._vhd_structs import Footer


@pytest.mark.parametrize("kind", SOURCE_KINDS)
def test_blob_equals_converted_fixed_vhd(kind, azurite, tmp_path) -> None:  # noqa: F811
    source = make_source(kind, tmp_path)
    counter = WireCounter()
    target = blob_target(azurite, request_hook=counter)
    with vhd.open_image(str(source.path)) as image:
        summary = upload_image(image, target, threads=4, journal_dir=tmp_path / "state")
    blob = target.client.download_blob().readall()
    expected = converted_bytes(source.path, tmp_path)
    assert len(blob) == len(expected) == summary.blob_length
    assert blob[:-512] == expected[:-512]
    assert Footer.unpack(blob[-512:]) == Footer.unpack(expected[-512:])
    assert blob[:source.size] == source.guest_bytes()
    assert summary.virtual_size % (1024 * 1024) == 0
    assert target.properties().blob_type == "PageBlob"
    # only data travelled: whole sectors around the chunks, plus the footer
    nonzero_sectors = sum(any(expected[o:o + 512]) for o in range(0, len(expected) - 512, 512))
    assert counter.put_page_bytes == summary.data_bytes_sent
    assert counter.put_page_bytes <= 1.01 * nonzero_sectors * 512 + 512
    assert counter.put_page_bytes >= nonzero_sectors * 512 + 512
    assert counter.missing_checksum == 0
    assert max(counter.lengths) <= MAX_PUT_PAGE
    assert all(length % 512 == 0 for length in counter.lengths)
    assert summary.requests == counter.put_pages and summary.retries == 0
    # every byte not sent is counted as skipped, split into unread holes and trimmed zeros
    # small zero gaps may travel to save requests: at most 1 % more than the data
    assert nonzero_sectors * 512 + 512 <= summary.data_bytes_sent
    assert summary.data_bytes_sent <= 1.01 * nonzero_sectors * 512 + 512
    assert summary.zero_bytes_skipped == len(expected) - summary.data_bytes_sent
    assert (summary.unallocated_bytes_skipped + summary.zero_sector_bytes_trimmed
            == summary.zero_bytes_skipped)


def test_content_md5_is_the_whole_blobs_md5(azurite, tmp_path) -> None:  # noqa: F811
    source = make_source("raw", tmp_path, size=21 * 1024 * 1024, count=30, seed=3)
    target = blob_target(azurite)
    with vhd.open_image(str(source.path)) as image:
        summary = upload_image(image, target, threads=3, content_md5=True,
                               journal_dir=tmp_path / "state")
    blob = target.client.download_blob().readall()
    assert summary.content_md5 == hashlib.md5(blob).hexdigest()
    assert target.properties().content_md5 == hashlib.md5(blob).digest()


def test_dense_data_is_split_into_4_mib_pages(azurite, tmp_path) -> None:  # noqa: F811
    path = tmp_path / "dense.raw"
    data = hashlib.sha256(b"seed").digest() * (21 * 1024 * 1024 // 32)
    path.write_bytes(data)
    counter = WireCounter()
    target = blob_target(azurite, request_hook=counter)
    with vhd.open_image(str(path)) as image:
        summary = upload_image(image, target, threads=8, journal_dir=tmp_path / "state")
    assert target.client.download_blob(offset=0, length=len(data)).readall() == data
    assert counter.lengths.count(MAX_PUT_PAGE) == 5  # 21 MiB = 5 × 4 MiB + 1 MiB
    assert summary.data_bytes_sent == len(data) + 512


def test_skipped_counts_the_holes_of_a_mostly_empty_disk(azurite, tmp_path) -> None:  # noqa: F811
    path = tmp_path / "sparse.raw"
    with open(path, "wb") as handle:  # 101 MiB, two data sectors with zeros around them
        handle.truncate(101 * 1024 * 1024)
        handle.seek(50 * 1024 * 1024)
        handle.write(bytes(4096) + b"\x01" * 512 + bytes(4096) + b"\x02" * 512)
    target = blob_target(azurite)
    with vhd.open_image(str(path)) as image:
        summary = upload_image(image, target, threads=2, journal_dir=tmp_path / "state")
    assert summary.data_bytes_sent == 2 * 512 + 512
    assert summary.zero_bytes_skipped == summary.blob_length - summary.data_bytes_sent
    assert summary.unallocated_bytes_skipped > 100 * 1024 * 1024 - 64 * 1024
    assert summary.zero_sector_bytes_trimmed >= 2 * 4096


def test_small_zero_gaps_travel_to_save_requests(azurite, tmp_path) -> None:  # noqa: F811
    """Runs of 127 data sectors split by single zero sectors: bridging every gap costs
    0.8 % more bytes and turns 16 requests per MiB into one per 4 MiB cell."""
    path = tmp_path / "striped.raw"
    block = bytearray(hashlib.sha256(b"striped").digest() * (1024 * 1024 // 32))
    for sector in range(127, 2048, 128):
        block[sector * 512:(sector + 1) * 512] = bytes(512)
    path.write_bytes(bytes(block) * 8 + bytes(13 * 1024 * 1024))  # 8 MiB data, 21 MiB disk
    counter = WireCounter()
    target = blob_target(azurite, request_hook=counter)
    with vhd.open_image(str(path)) as image:
        summary = upload_image(image, target, threads=2, journal_dir=tmp_path / "state")
    data = 8 * 1024 * 1024 - 8 * 16 * 512
    assert target.client.download_blob(offset=0, length=8 * 1024 * 1024).readall() \
        == bytes(block) * 8
    assert counter.put_pages == summary.requests == 2 + 1  # two 4 MiB cells, the footer
    assert counter.put_page_bytes <= 1.01 * data + 512

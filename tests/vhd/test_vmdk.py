"""VMDK reader against qemu-img's and VMware-layout images of a raw disk with known data.

Bytes must equal the raw source; extents() must cover every chunk of data and stay inside
the ranges qemu-img map says hold data.
"""
from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from tests.vhd.images import MIB, SECTOR, Chunk, covered, expected_bytes, qemu_img, \
    scattered_chunks, write_raw
from tests.vhd.vmdk_images import inside, make_vmdk, make_vmware_stream, qemu_io, qemu_map
from azlift import vhd
from tests.vhd.corpus import patch
from tests.vhd.vmdk_corpus import CASES
from azlift.vhd.errors import UnsupportedImageError, VhdError
from azlift.vhd.vmdk import VmdkImage

SIZE = 9 * MIB + 3 * SECTOR  # a whole MiB count plus three sectors
SUBFORMATS = ["monolithicSparse", "monolithicFlat", "twoGbMaxExtentSparse",
              "twoGbMaxExtentFlat", "streamOptimized"]


@pytest.fixture
def chunks() -> list[Chunk]:
    found = scattered_chunks(SIZE - 8192, 14, seed=11)
    return [(0, b"\xebBOOT"), *[(o + 4096, d) for o, d in found], (SIZE - 5, b"TAIL!")]


@pytest.fixture
def raw(tmp_path: Path, chunks: list[Chunk]) -> Path:
    return write_raw(tmp_path / "disk.raw", SIZE, chunks)


def assert_reads_like(image: VmdkImage, chunks: list[Chunk], source: Path) -> None:
    assert image.virtual_size == SIZE
    assert bytes(image.read(0, SIZE)) == expected_bytes(SIZE, chunks)
    # reads that start and end inside grains and cross grain and extent borders
    for offset, length in [(100, 70_000), (65_536 - 7, 131_072 + 14), (SIZE - 1500, 1500)]:
        assert bytes(image.read(offset, length)) == expected_bytes(SIZE, chunks)[offset:offset + length]
    extents = list(image.extents())
    assert covered(extents, chunks)
    assert inside(extents, qemu_map(source))


@pytest.mark.parametrize("subformat", SUBFORMATS)
def test_qemu_subformats_read_like_the_source(tmp_path: Path, raw: Path, chunks: list[Chunk],
                                              subformat: str) -> None:
    path = make_vmdk(raw, tmp_path / f"{subformat}.vmdk", subformat)
    with VmdkImage(path) as image:
        assert image.format == f"vmdk-{subformat}"
        assert_reads_like(image, chunks, path)
        info = image.describe()
        assert info["virtual_size"] == SIZE and info["descriptor"]["create_type"] == subformat


def test_vmware_stream_layout_with_the_directory_in_the_footer(tmp_path: Path, raw: Path,
                                                               chunks: list[Chunk]) -> None:
    path = make_vmware_stream(raw, tmp_path / "vmware.vmdk")
    with VmdkImage(path) as image:
        extent = image.describe()["extents"][0]
        assert extent["grain_directory"] == "footer" and extent["markers"]
        assert_reads_like(image, chunks, path)


def test_zeroed_grains_read_as_zero_and_are_not_extents(tmp_path: Path, raw: Path,
                                                        chunks: list[Chunk]) -> None:
    path = make_vmdk(raw, tmp_path / "zg.vmdk", "monolithicSparse", zeroed_grain="on")
    qemu_io(path, "write -z 0 1M", "write -P 0x5a 2M 64k")
    expected = bytearray(expected_bytes(SIZE, chunks))
    expected[0:MIB] = bytes(MIB)
    expected[2 * MIB:2 * MIB + 65536] = b"\x5a" * 65536
    with VmdkImage(path) as image:
        assert image.describe()["extents"][0]["zeroed_grains"] is True
        assert bytes(image.read(0, SIZE)) == bytes(expected)
        extents = list(image.extents())
        assert not any(offset < MIB for offset, _ in extents)
        assert covered(extents, [(2 * MIB, b"\x5a" * 65536)])
        assert inside(extents, qemu_map(path))


def descriptor_from(flat: Path, create_type: str, extent_type: str) -> str:
    text = flat.read_text()
    text = text.replace('createType="monolithicFlat"', f'createType="{create_type}"')
    return re.sub(r' FLAT "(.*)" 0', rf' {extent_type} "\1"', text)


@pytest.mark.parametrize("create_type", ["vmfs", "vmfsThin"])
def test_vsphere_descriptors_with_vmfs_extents(tmp_path: Path, raw: Path, chunks: list[Chunk],
                                               create_type: str) -> None:
    flat = make_vmdk(raw, tmp_path / "f.vmdk", "monolithicFlat")
    path = tmp_path / "vsphere.vmdk"
    path.write_text(descriptor_from(flat, create_type, "VMFS")
                    + 'ddb.thinProvisioned = "1"\n')
    with VmdkImage(path) as image:
        assert image.format == f"vmdk-{create_type}"
        assert image.describe()["extents"][0]["type"] == "VMFS"
        assert_reads_like(image, chunks, flat)  # qemu reads no vmfsThin: map the same file


def test_a_zero_extent_between_flat_extents(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(b"A" * MIB)
    (tmp_path / "b.bin").write_bytes(b"x" * SECTOR + b"B" * MIB)
    path = tmp_path / "multi.vmdk"
    path.write_text('# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n'
                    'createType="custom"\nRW 2048 FLAT "a.bin" 0\nRW 4096 ZERO\n'
                    'RDONLY 2048 FLAT "b.bin" 1\nddb.adapterType = "lsilogic"\n')
    with VmdkImage(path) as image:
        assert image.virtual_size == 4 * MIB
        data = bytes(image.read(MIB - 2, 3 * MIB + 2))
        assert data == b"AA" + bytes(2 * MIB) + b"B" * MIB
        assert list(image.extents()) == [(0, MIB), (3 * MIB, MIB)]


@pytest.mark.parametrize("edit, words", [
    (lambda t: t.replace("parentCID=ffffffff", 'parentCID=1234abcd\nparentFileNameHint="base.vmdk"'),
     "delta link"),
    (lambda t: re.sub(r' FLAT "(.*)" 0', r' VMFSSPARSE "\1"', t), "consolidate the snapshots"),
    (lambda t: re.sub(r' FLAT "(.*)" 0', r' SESPARSE "\1"', t), "consolidate the snapshots"),
    (lambda t: re.sub(r' FLAT "(.*)" 0', r' VMFSRDM "\1"', t), "device"),
    (lambda t: t.replace('createType="monolithicFlat"', 'createType="fullDevice"'), "device"),
    (lambda t: re.sub(r' FLAT "(.*)" 0', ' FLAT "/dev/null" 0', t), "device"),
])
def test_snapshots_and_devices_are_refused(tmp_path: Path, raw: Path, edit, words: str) -> None:
    flat = make_vmdk(raw, tmp_path / "f.vmdk", "monolithicFlat")
    path = tmp_path / "refused.vmdk"
    path.write_text(edit(flat.read_text()))
    with pytest.raises(UnsupportedImageError) as caught:
        VmdkImage(path)
    assert words in str(caught.value) and "\n" not in str(caught.value)
    assert caught.value.exit_code == 3


def test_a_sparse_delta_link_is_refused(tmp_path: Path, raw: Path) -> None:
    base = make_vmdk(raw, tmp_path / "base.vmdk", "monolithicSparse")
    top = tmp_path / "top.vmdk"
    qemu_img("create", "-f", "vmdk", "-b", base, "-F", "vmdk", top)
    with pytest.raises(UnsupportedImageError, match="delta link"):
        VmdkImage(top)


def test_a_cowd_redo_log_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "redo-delta.vmdk"
    path.write_bytes(b"COWD" + bytes(2044))
    with pytest.raises(UnsupportedImageError, match="COWD"):
        VmdkImage(path)


# --- malformed files -----------------------------------------------------------------
def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 15


@pytest.mark.parametrize("name", sorted(CASES))
def test_malformed_files_raise_their_typed_error(tmp_path: Path, name: str) -> None:
    case = CASES[name]
    path = case.build(tmp_path)
    with pytest.raises(VhdError) as caught:
        with vhd.open_image(path) as image:
            image.read(0, image.virtual_size)  # some damage shows only when read
    assert isinstance(caught.value, case.error), f"{type(caught.value).__name__}: {caught.value}"
    message = str(caught.value)
    assert case.words in message and "\n" not in message
    assert caught.value.exit_code == 3


def test_the_redundant_directory_stands_in_for_a_lost_one(tmp_path: Path, raw: Path,
                                                          chunks: list[Chunk]) -> None:
    path = patch(make_vmdk(raw, tmp_path / "s.vmdk", "monolithicSparse"), 56,
                 struct.pack("<Q", 1 << 30))
    with VmdkImage(path) as image:
        assert image.describe()["extents"][0]["grain_directory"] == "redundant"
        assert bytes(image.read(0, SIZE)) == expected_bytes(SIZE, chunks)



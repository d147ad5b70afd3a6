"""The qcow2 reader against qemu-img: bytes, extents (``qemu-img map``), conversions
(``qemu-img compare``), backing chains, external data files and the refusals."""
from __future__ import annotations

import os
import random
import struct
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from azlift import vhd
from azlift.vhd.qcow2 import Qcow2Image
from tests.vhd.corpus import patch
from tests.vhd.images import MIB, make_dynamic_vhd, qemu_img
from tests.vhd.qcow2_corpus import set_incompatible
from tests.vhd.qcow2_images import (
    ODD_SIZE,
    VARIANTS,
    create_overlay,
    make_chain,
    make_variant,
    map_ranges,
    qemu_compare,
    qemu_io,
    qemu_map,
    reference_raw,
    source_disk,
)

Ranges = list[tuple[int, int]]


def subtract(ranges: Ranges, minus: Ranges) -> Ranges:
    """Parts of ``ranges`` outside every range of ``minus`` (both ascending)."""
    left: Ranges = []
    for start, length in ranges:
        pos, end = start, start + length
        for low, count in minus:
            if low + count <= pos or low >= end:
                continue
            if low > pos:
                left.append((pos, low - pos))
            pos = max(pos, low + count)
        if pos < end:
            left.append((pos, end - pos))
    return left


def assert_reads_like(image: vhd.DiskImage, expected: bytes) -> None:
    """Whole-disk and unaligned partial reads (across cluster edges) return ``expected``."""
    assert image.virtual_size == len(expected)
    assert image.read(0, len(expected)) == expected
    rng = random.Random(5)
    for _ in range(60):
        offset = rng.randrange(len(expected))
        length = min(rng.choice([1, 511, 4096, 70_001, 300_000]), len(expected) - offset)
        assert image.read(offset, length) == expected[offset:offset + length], (offset, length)
    assert image.read(len(expected), 0) == b""


def assert_extents_agree_with_qemu(image: vhd.DiskImage, path: Path, expected: bytes, *,
                                   exact: bool) -> None:
    """No data range of ``qemu-img map`` missed, no unallocated range read.

    ``exact``: every qemu data range (data and not zero) lies inside the extents. Without
    it (a raw data file or preallocated clusters, where azlift also skips the file's
    holes, which qemu reports as data), what the extents leave out must read as zero.
    """
    extents = list(image.extents())
    previous_end = -1
    for offset, length in extents:
        assert length > 0 and offset > previous_end and offset % 512 == 0, extents
        previous_end = offset + length
    assert previous_end <= image.virtual_size
    entries = qemu_map(path)
    assert subtract(extents, map_ranges(entries)) == [], "extents cover unallocated ranges"
    missed = subtract(map_ranges(entries, nonzero=True), extents)
    if exact:
        assert missed == [], missed
    for offset, length in missed:
        assert not any(expected[offset:offset + length]), (offset, length)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    return source_disk(tmp_path_factory.mktemp("qcow2-source"))


@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory, source) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("qcow2-variants")
    return {name: make_variant(source[0], folder, name) for name in VARIANTS}


# --- every layout qemu-img writes -----------------------------------------------------------
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_reads_like_the_source(variants, source, name: str) -> None:
    with vhd.Qcow2Image(variants[name]) as image:
        assert image.format == "qcow2"
        assert_reads_like(image, source[1])
        info = image.describe()
    options, compressed = VARIANTS[name]
    assert info["virtual_size"] == ODD_SIZE
    assert info["qcow2"]["version"] == (2 if options.get("compat") == "0.10" else 3)
    assert info["qcow2"]["compression_type"] == options.get("compression_type", "zlib")
    assert info["qcow2"]["extended_l2"] == ("extended_l2" in options)
    assert (info["data_file"] is not None) == ("data_file" in options)
    assert info["warnings"] == [] and info["parents"] == []


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_extents_agree_with_qemu_map(variants, source, name: str) -> None:
    exact = name not in ("data-file-raw", "preallocated")
    with vhd.Qcow2Image(variants[name]) as image:
        assert_extents_agree_with_qemu(image, variants[name], source[1], exact=exact)
        allocated = image.describe()["allocated_bytes"]
    qemu_data = sum(length for _, length in map_ranges(qemu_map(variants[name])))
    if not exact:  # qemu calls the whole raw data file / every preallocated cluster data
        assert allocated < qemu_data // 2


@pytest.mark.parametrize("name", ["v2-zlib", "v3-zstd", "extended-l2", "data-file-raw",
                                  "clusters-512"])
def test_variant_converts_to_a_fixed_vhd_qemu_finds_identical(variants, tmp_path: Path,
                                                              name: str) -> None:
    out = tmp_path / "out.vhd"
    with vhd.Qcow2Image(variants[name]) as image:
        result = vhd.convert(image, str(out))
    assert result.virtual_size == 9 * MIB  # rounded up to a whole MiB
    compared = qemu_compare(variants[name], "qcow2", out, "vpc")
    assert compared.returncode == 0, compared.stdout + compared.stderr


def test_concurrent_reads_of_compressed_clusters(variants, source) -> None:
    """Reads from several threads through one image (as convert does) stay correct."""
    expected = source[1]
    rng = random.Random(9)
    jobs = [(o, min(l, len(expected) - o)) for o, l in
            ((rng.randrange(len(expected)), rng.randrange(1, 2 * MIB)) for _ in range(200))]
    for name in ("v3-zlib", "v3-zstd"):
        with vhd.Qcow2Image(variants[name]) as image:
            with ThreadPoolExecutor(max_workers=4) as pool:
                results = list(pool.map(lambda job: image.read(*job), jobs))
        for (offset, length), data in zip(jobs, results):
            assert data == expected[offset:offset + length], (name, offset, length)


# --- backing chains ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory, source) -> tuple[Path, bytes]:
    folder = tmp_path_factory.mktemp("qcow2-chain")
    top = make_chain(folder, source[0])
    return top, reference_raw(top, folder / "reference.raw")


def test_chain_reads_like_qemu(chain) -> None:
    top, expected = chain
    with vhd.Qcow2Image(top) as image:
        assert image.virtual_size == ODD_SIZE + 2 * MIB  # larger than its backing file
        assert_reads_like(image, expected)
        assert_extents_agree_with_qemu(image, top, expected, exact=True)
        info = image.describe()
    assert [Path(p["path"]).name for p in info["parents"]] == ["mid.qcow2", "base.qcow2"]
    assert info["backing_file"]["name"] == "mid.qcow2"
    assert info["backing_file"]["format"] == "qcow2"


def test_zero_writes_hide_the_backing_data(chain, source) -> None:
    """mid.qcow2 wrote zeros over 0..64k and top.qcow2 over 1M..1M+12k: the base's data
    there neither reads nor appears in the extents."""
    top, expected = chain
    assert any(source[1][:64 * 1024])  # the base has data there
    with vhd.Qcow2Image(top) as image:
        assert image.read(0, 64 * 1024) == bytes(64 * 1024)
        extents = list(image.extents())
    assert subtract([(0, 64 * 1024)], extents) == [(0, 64 * 1024)]
    assert subtract([(MIB, 12 * 1024)], extents) == [(MIB, 12 * 1024)]


def test_chain_converts_to_a_fixed_vhd_qemu_finds_identical(chain, tmp_path: Path) -> None:
    top, _ = chain
    out = tmp_path / "chain.vhd"
    with vhd.Qcow2Image(top) as image:
        vhd.convert(image, str(out))
    compared = qemu_compare(top, "qcow2", out, "vpc")
    assert compared.returncode == 0, compared.stdout + compared.stderr


def test_backing_names_resolve_against_the_image_that_names_them(
        chain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative names are read relative to each image's folder, not the working folder."""
    top, expected = chain
    monkeypatch.chdir(tmp_path)
    relative = os.path.relpath(top, tmp_path)
    with vhd.Qcow2Image(relative) as image:
        assert image.read(0, image.virtual_size) == expected


def test_vhd_vmdk_and_raw_backing_files(tmp_path: Path, source) -> None:
    raw, data = source
    make_dynamic_vhd(raw, tmp_path / "base.vhd")
    qemu_img("convert", "-f", "raw", "-O", "vmdk", raw, tmp_path / "base.vmdk")
    overlays = {  # overlay -> the format its backing file opens as
        create_overlay(tmp_path / "over-vhd.qcow2", "base.vhd", "vpc"): "vhd-dynamic",
        create_overlay(tmp_path / "over-vmdk.qcow2", "base.vmdk", "vmdk"): "vmdk-monolithicSparse",
        create_overlay(tmp_path / "over-raw.qcow2", str(raw), "raw"): "raw",
    }
    for overlay, backing_format in overlays.items():
        qemu_io(overlay, "write -P 0x42 3M 5k", "write -z 0 1M")
        expected = reference_raw(overlay, tmp_path / "ref.raw")
        assert expected[:MIB] == bytes(MIB) and expected[3 * MIB:3 * MIB + 5] == b"B" * 5
        with vhd.Qcow2Image(overlay) as image:
            assert_reads_like(image, expected)
            # qemu maps whole VHD blocks and VMDK grains as data; azlift leaves out holes
            assert_extents_agree_with_qemu(image, overlay, expected,
                                           exact=backing_format == "raw")
            parent = image.describe()["parents"][0]
        assert parent["format"] == backing_format


def extension_offset(path: Path, kind: int) -> int:
    """Where the header extension of type ``kind`` starts in a version 3 image."""
    raw = path.read_bytes()[:65536]
    position = struct.unpack_from(">I", raw, 100)[0]
    while True:
        found, length = struct.unpack_from(">II", raw, position)
        if found == kind:
            return position
        assert found != 0, f"no extension {kind:#x}"
        position += 8 + -(-length // 8) * 8


def test_backing_format_not_recorded_is_detected_with_a_warning(chain, tmp_path: Path) -> None:
    top, expected = chain
    folder = top.parent
    overlay = create_overlay(folder / "unformatted.qcow2", "top.qcow2", "qcow2")
    patch(overlay, extension_offset(overlay, 0xE2792ACA), struct.pack(">I", 0x7E57AB1E))
    with vhd.Qcow2Image(overlay) as image:
        assert image.read(0, image.virtual_size) == expected
        warnings = image.describe()["warnings"]
    assert len(warnings) == 1 and "detected from the file's content" in warnings[0]


def test_missing_backing_file_is_named(tmp_path: Path, source) -> None:
    base = tmp_path / "base.qcow2"
    qemu_img("convert", "-O", "qcow2", source[0], base)
    overlay = create_overlay(tmp_path / "over.qcow2", "base.qcow2", "qcow2")
    base.unlink()
    with pytest.raises(vhd.ParentNotFoundError, match=r"over\.qcow2: backing file 'base.qcow2' "
                                                      r"not found \(looked at .*base\.qcow2\)"):
        Qcow2Image(overlay)


def test_backing_loop_is_refused(tmp_path: Path) -> None:
    first = tmp_path / "a.qcow2"
    qemu_img("create", "-f", "qcow2", first, "1M")
    second = create_overlay(tmp_path / "b.qcow2", "a.qcow2", "qcow2")
    qemu_img("rebase", "-u", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", first)
    with pytest.raises(vhd.ParentChainError, match="loops back"):
        Qcow2Image(second)
    with pytest.raises(vhd.ParentChainError, match="loops back"):
        Qcow2Image(first)


@pytest.mark.parametrize("name,error,words", [
    ("json:{\"driver\": \"raw\"}", vhd.UnsupportedImageError, "not a local file name"),
    ("nbd://localhost/disk", vhd.UnsupportedImageError, "not a local file name"),
])
def test_backing_names_that_are_not_files_are_refused(tmp_path: Path, name: str, error,
                                                      words: str) -> None:
    overlay = tmp_path / "over.qcow2"
    qemu_img("create", "-f", "qcow2", "-u", "-b", name, "-F", "raw", overlay, "1M")
    with pytest.raises(error, match=words):
        Qcow2Image(overlay)


def test_unknown_backing_format_is_refused(tmp_path: Path, source) -> None:
    base = tmp_path / "base.qcow2"
    qemu_img("convert", "-O", "qcow2", source[0], base)
    overlay = create_overlay(tmp_path / "over.qcow2", "base.qcow2", "qcow2")
    patch(overlay, extension_offset(overlay, 0xE2792ACA) + 8, b"qed\0\0")
    with pytest.raises(vhd.UnsupportedImageError, match="format 'qed'"):
        Qcow2Image(overlay)


def test_chain_depth_is_bounded(tmp_path: Path) -> None:
    previous = tmp_path / "0.qcow2"
    qemu_img("create", "-f", "qcow2", previous, "1M")
    for number in range(1, 35):
        previous = create_overlay(tmp_path / f"{number}.qcow2", previous.name, "qcow2")
    with pytest.raises(vhd.ParentChainError, match="deeper than 32"):
        Qcow2Image(previous)


# --- feature bits, snapshots, versions -------------------------------------------------------
def test_dirty_image_reads_with_a_warning(variants, source, tmp_path: Path) -> None:
    dirty = tmp_path / "dirty.qcow2"
    dirty.write_bytes(variants["v3"].read_bytes())
    set_incompatible(dirty, 1)
    with Qcow2Image(dirty) as image:
        assert image.read(0, image.virtual_size) == source[1]
        info = image.describe()
    assert info["qcow2"]["dirty"] is True
    assert "dirty" in info["qcow2"]["incompatible_features"]
    assert len(info["warnings"]) == 1 and "marked dirty" in info["warnings"][0]


def test_corrupt_image_is_refused(variants, tmp_path: Path) -> None:
    bad = tmp_path / "corrupt.qcow2"
    bad.write_bytes(variants["v3"].read_bytes())
    set_incompatible(bad, 2)
    with pytest.raises(vhd.ImageFormatError, match="marked corrupt.*qemu-img check -r all"):
        Qcow2Image(bad)


def test_unknown_incompatible_bit_is_refused_with_its_name(variants, tmp_path: Path) -> None:
    bad = tmp_path / "future.qcow2"
    bad.write_bytes(variants["v3"].read_bytes())
    set_incompatible(bad, 1 << 5 | 1 << 40)
    with pytest.raises(vhd.UnsupportedImageError, match=r"bit 5, bit 40\)"):
        Qcow2Image(bad)
    # qemu's feature name table names a bit when it can
    names = extension_offset(bad, 0x6803F857)
    patch(bad, names + 8, struct.pack(">BB46s", 0, 5, b"time travel"))
    with pytest.raises(vhd.UnsupportedImageError, match=r"bit 5 \(time travel\)"):
        Qcow2Image(bad)


@pytest.mark.parametrize("method, name", [(1, "AES"), (2, "LUKS")])
def test_encrypted_image_is_refused(tmp_path: Path, method: int, name: str) -> None:
    """The header's crypt_method field (offset 32) alone decides: qemu-img's LUKS creation
    depends on the host's crypto back end, so the field is set in a plain image."""
    image = tmp_path / "encrypted.qcow2"
    qemu_img("create", "-f", "qcow2", image, "1M")
    patch(image, 32, struct.pack(">I", method))
    with pytest.raises(vhd.UnsupportedImageError, match=rf"encrypted \({name}\)"):
        Qcow2Image(image)


def test_qcow_version_1_is_refused(tmp_path: Path) -> None:
    image = tmp_path / "old.qcow"
    qemu_img("create", "-f", "qcow", image, "1M")
    with pytest.raises(vhd.UnsupportedImageError, match="qcow version 1 image"):
        Qcow2Image(image)


def test_internal_snapshots_read_the_current_state(variants, source, tmp_path: Path) -> None:
    image_path = tmp_path / "snap.qcow2"
    image_path.write_bytes(variants["v3"].read_bytes())
    qemu_img("snapshot", "-c", "before", image_path)
    qemu_io(image_path, "write -P 0x77 1M 64k", "write -z 0 4k")
    expected = reference_raw(image_path, tmp_path / "ref.raw")
    assert expected != source[1]
    with Qcow2Image(image_path) as image:
        assert_reads_like(image, expected)
        assert_extents_agree_with_qemu(image, image_path, expected, exact=True)
        info = image.describe()
    assert info["qcow2"]["internal_snapshots"] == 1
    assert any("internal snapshot" in w for w in info["warnings"])


def test_zstd_without_the_extra_says_what_to_install(variants) -> None:
    script = ("import sys; sys.modules['zstandard'] = None\n"
              "import vhd\n"
              "try:\n"
              f"    vhd.Qcow2Image({str(variants['v3-zstd'])!r})\n"
              "except vhd.UnsupportedImageError as error:\n"
              "    print(error.exit_code, error)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True)
    assert done.stdout.startswith("3 ") and "install azlift[zstd]" in done.stdout
    with Qcow2Image(variants["v3-zlib"]) as image:  # zlib images need nothing extra
        assert image.virtual_size == ODD_SIZE


def test_huge_sparse_image_maps_from_its_tables(tmp_path: Path) -> None:
    """A 4 TiB image with three writes: extents come from the L1/L2 tables at once."""
    image_path = tmp_path / "huge.qcow2"
    qemu_img("create", "-f", "qcow2", image_path, "4T")
    qemu_io(image_path, "write -P 1 0 4k", "write -P 2 1T 64k", "write -P 3 4095G 1M")
    with Qcow2Image(image_path) as image:
        extents = list(image.extents())
        # qemu fills the rest of the first cluster with a hole, which is left out where
        # the file system reports holes
        assert extents[0] in ((0, 4096), (0, 64 * 1024))
        assert extents[1:] == [(1 << 40, 64 * 1024), (4095 << 30, MIB)]
        assert image.read(1 << 40, 2) == b"\x02\x02"
        assert image.read((4095 << 30) + MIB, 512) == bytes(512)

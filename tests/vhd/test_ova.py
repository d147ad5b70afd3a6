"""OVA reader: disks read in place inside tars made by tar, in OVF order, checked against
their manifest; bad packages are refused with typed one-line errors."""
from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

from tests.vhd.images import MIB, SECTOR, Chunk, covered, expected_bytes, scattered_chunks, \
    write_raw
from tests.vhd.vmdk_images import SPARSE_FORMAT, make_ova, make_vmdk, make_vmware_stream, \
    ovf_text
from azlift.vhd.errors import DiskSelectionError, ImageFormatError, UnsupportedImageError
from azlift.vhd.ova import OvaImage, list_disks

SIZES = [5 * MIB + 3 * SECTOR, 3 * MIB, 2 * MIB + SECTOR]


def disk(tmp_path: Path, number: int, maker: str = "qemu") -> tuple[Path, list[Chunk], int]:
    size = SIZES[number - 1]
    chunks = [(0, bytes([number]) * 16), *[(o + 4096, d) for o, d in
                                          scattered_chunks(size - 8192, 6, seed=number)]]
    raw = write_raw(tmp_path / f"raw{number}.img", size, chunks)
    dest = tmp_path / f"vm-disk{number}.vmdk"
    if maker == "vmware":
        make_vmware_stream(raw, dest)
    else:
        make_vmdk(raw, dest, "streamOptimized")
    return dest, chunks, size


@pytest.mark.parametrize("tar_format, manifest, maker", [
    ("ustar", "SHA256", "qemu"), ("pax", "SHA1", "vmware"), ("gnu", None, "qemu")])
def test_one_disk_reads_in_place(tmp_path: Path, tar_format: str, manifest: str | None,
                                 maker: str) -> None:
    path, chunks, size = disk(tmp_path, 1, maker)
    ova = make_ova(tmp_path / "vm.ova", [(path, size)], tar_format=tar_format,
                   manifest=manifest)
    with OvaImage(ova) as image:
        assert image.virtual_size == size
        assert bytes(image.read(0, size)) == expected_bytes(size, chunks)
        assert covered(list(image.extents()), chunks)
        info = image.describe()
        assert info["format"] == "ova" and info["disk_format"] == "vmdk-streamOptimized"
        assert info["disk"] == 1 and info["disks"][0]["file"] == "vm-disk1.vmdk"
        expected = {"vm.ovf": manifest.lower(), "vm-disk1.vmdk": manifest.lower()} \
            if manifest else {}
        assert info["manifest"] == expected


def three_disk_ova(tmp_path: Path, **options: object) -> tuple[Path, list[tuple[list[Chunk], int]]]:
    made = [disk(tmp_path, n) for n in (1, 2, 3)]
    ova = make_ova(tmp_path / "three.ova", [(p, s) for p, _, s in made], **options)
    return ova, [(c, s) for _, c, s in made]


def test_three_disks_in_ovf_order_and_one_must_be_chosen(tmp_path: Path) -> None:
    ova, disks = three_disk_ova(tmp_path)
    assert [(d["disk"], d["file"], d["capacity"]) for d in list_disks(ova)] == [
        (1, "vm-disk1.vmdk", SIZES[0]), (2, "vm-disk2.vmdk", SIZES[1]),
        (3, "vm-disk3.vmdk", SIZES[2])]
    with pytest.raises(DiskSelectionError) as caught:
        OvaImage(ova)
    message = str(caught.value)
    assert "--disk N" in message and "3 = vmdisk3 (vm-disk3.vmdk" in message
    assert caught.value.exit_code == 2
    for number, (chunks, size) in enumerate(disks, 1):
        with OvaImage(ova, number) as image:
            assert bytes(image.read(0, size)) == expected_bytes(size, chunks)
    with pytest.raises(DiskSelectionError, match="no disk 4"):
        OvaImage(ova, 4)


def test_disks_of_one_package_get_different_footer_ids(tmp_path: Path) -> None:
    ova, _ = three_disk_ova(tmp_path)
    ids = set()
    for number in (1, 2, 3):
        with OvaImage(ova, number) as image:
            ids.add(image.unique_id)
    assert len(ids) == 3


def test_a_gzip_member_is_inflated_and_leaves_nothing(tmp_path: Path) -> None:
    path, chunks, size = disk(tmp_path, 1)
    ova = make_ova(tmp_path / "gz.ova", [(path, size)], gzip_members=True)
    before = set(os.listdir(tmp_path))
    with OvaImage(ova) as image:
        assert image.describe()["disks"][0]["compression"] == "gzip"
        assert bytes(image.read(0, size)) == expected_bytes(size, chunks)
    assert set(os.listdir(tmp_path)) == before


def test_a_descriptor_with_its_extent_in_another_member(tmp_path: Path) -> None:
    raw = write_raw(tmp_path / "r.img", 2 * MIB, [(4096, b"flat-data")])
    descriptor = make_vmdk(raw, tmp_path / "d.vmdk", "monolithicFlat")
    ova = make_ova(tmp_path / "flat.ova", [(descriptor, 2 * MIB)], uri=SPARSE_FORMAT,
                   manifest=None)
    extra = tmp_path / "d-flat.vmdk"
    with tarfile.open(ova, "a", format=tarfile.USTAR_FORMAT) as archive:
        archive.add(extra, arcname="d-flat.vmdk")
    with OvaImage(ova) as image:
        assert bytes(image.read(4096, 9)) == b"flat-data"


# --- refusals ---------------------------------------------------------------------------
@pytest.mark.parametrize("ovf, error, words", [
    ("<Envelope><References>", ImageFormatError, "not well-formed"),
    ("<Other/>", ImageFormatError, "expected 'Envelope'"),
    (ovf_text([]), ImageFormatError, "lists no disks"),
    (ovf_text([("vm-disk1.vmdk", MIB, SPARSE_FORMAT)]).replace('<File ', '<File ovf:chunkSize="1000" '),
     ImageFormatError, "chunks"),
])
def test_bad_ovf_descriptors_are_refused(tmp_path: Path, ovf: str, error: type,
                                         words: str) -> None:
    path, _, size = disk(tmp_path, 1)
    ova = make_ova(tmp_path / "vm.ova", [(path, size)], ovf=ovf, manifest=None)
    with pytest.raises(error, match=words) as caught:
        OvaImage(ova)
    assert "\n" not in str(caught.value)


def test_a_tar_without_an_ovf_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "no.ova"
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as archive:
        archive.add(write_raw(tmp_path / "x.img", 4096, []), arcname="x.img")
    with pytest.raises(ImageFormatError, match="one .ovf descriptor"):
        OvaImage(path)


def test_a_file_that_is_no_tar_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "junk.ova"
    path.write_bytes(b"\x01" * 3000)
    with pytest.raises(ImageFormatError, match="tar"):
        OvaImage(path)

"""OVAs as VMware, VirtualBox and Proxmox hand them: disks split into chunk members read in
place (and from a pipe) as one disk, the OVF's capacity checked against the VMDK's size,
and a zip archive named .ova refused with one line."""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import zipfile
from pathlib import Path

import pytest

from azlift.vhd.check import source_findings
from azlift.vhd.errors import CapacityMismatchError, ChecksumError, ImageFormatError
from azlift.vhd.ova import OvaImage
from azlift.vhd.vmdk_stream import open_ova_stream
from tests.vhd.images import MIB, SECTOR, covered, expected_bytes, scattered_chunks, write_raw
from tests.vhd.vmdk_images import STREAM_FORMAT, make_ova, make_vmdk, ovf_text

SIZE = 5 * MIB + 3 * SECTOR
CHUNK = 300_000  # not a multiple of 512: grains straddle chunk borders


@pytest.fixture
def source(tmp_path: Path) -> tuple[Path, bytes]:
    chunks = [(0, b"\xebFIRST"), *[(o + 4096, d) for o, d in
                                   scattered_chunks(SIZE - 8192, 12, seed=3)]]
    raw = write_raw(tmp_path / "raw.img", SIZE, chunks)
    return make_vmdk(raw, tmp_path / "disk.vmdk", "streamOptimized"), \
        expected_bytes(SIZE, chunks)


def chunked_ova(tmp_path: Path, vmdk: Path, *, gzip_member: bool = False,
                chunk: int = CHUNK, drop: int | None = None,
                damage: int | None = None, ovf_chunk: int | None = None,
                capacity: int = SIZE) -> Path:
    """An OVA whose disk file is split into ``disk.vmdk.000000000``... (the OVF says
    ovf:chunkSize), with a SHA256 manifest line per chunk, as ovftool writes them."""
    folder = tmp_path / "parts"
    folder.mkdir()
    data = vmdk.read_bytes()
    if gzip_member:
        data = gzip.compress(data)
    pieces = [data[i:i + chunk] for i in range(0, len(data), chunk)]
    names = []
    for index, piece in enumerate(pieces):
        name = f"disk.vmdk.{index:09d}"
        digest = hashlib.sha256(piece).hexdigest()
        if damage == index:
            piece = bytes([piece[0] ^ 1]) + piece[1:]
        if drop != index:
            (folder / name).write_bytes(piece)
            names.append((name, digest))
    ovf = ovf_text([("disk.vmdk", capacity, STREAM_FORMAT)],
                   compression="gzip" if gzip_member else "")
    ovf = ovf.replace('<File ', f'<File ovf:chunkSize="{ovf_chunk or chunk}" '
                      f'ovf:size="{len(data)}" ')
    (folder / "vm.ovf").write_text(ovf)
    lines = [f"SHA256(vm.ovf)= {hashlib.sha256(ovf.encode()).hexdigest()}",
             *[f"SHA256({name})= {digest}" for name, digest in names]]
    (folder / "vm.mf").write_text("\n".join(lines) + "\n")
    dest = tmp_path / "chunked.ova"
    subprocess.run(["tar", "--format=ustar", "-cf", str(dest), "vm.ovf", "vm.mf",
                    *[name for name, _ in names]], check=True, cwd=folder)
    return dest


def read_stream(ova: Path) -> bytes:
    with open(ova, "rb") as handle:
        stream = open_ova_stream(io.BufferedReader(handle), None, str(ova))  # type: ignore[arg-type]
        got = bytearray(stream.virtual_size)
        for grain in stream.grains():
            got[grain.offset:grain.offset + grain.length] = grain.inflate()
        stream.close()
    return bytes(got)


# --- chunks -----------------------------------------------------------------------------
@pytest.mark.parametrize("gzip_member", [False, True])
def test_a_chunked_disk_reads_in_place_as_one(tmp_path: Path, source, gzip_member: bool) -> None:
    vmdk, expected = source
    ova = chunked_ova(tmp_path, vmdk, gzip_member=gzip_member)
    with OvaImage(ova) as image:
        assert image.virtual_size == SIZE
        assert bytes(image.read(0, SIZE)) == expected
        assert bytes(image.read(CHUNK - 100, 70_000)) == expected[CHUNK - 100:CHUNK + 69_900]
        assert covered(list(image.extents()), [(0, b"\xebFIRST")])
        manifest = image.describe()["manifest"]
        assert manifest["disk.vmdk.000000000"] == "sha256" and len(manifest) >= 3


def test_a_chunked_disk_reads_from_a_stream(tmp_path: Path, source) -> None:
    vmdk, expected = source
    assert read_stream(chunked_ova(tmp_path, vmdk)) == expected


def test_a_chunked_gzip_disk_reads_from_a_stream(tmp_path: Path, source) -> None:
    vmdk, expected = source
    assert read_stream(chunked_ova(tmp_path, vmdk, gzip_member=True)) == expected


@pytest.mark.parametrize("drop, words", [(1, "chunk 1 of disk.vmdk is missing"),
                                         ("last", "a chunk is missing or cut short")])
def test_a_missing_chunk_is_refused(tmp_path: Path, source, drop, words: str) -> None:
    count = -(-source[0].stat().st_size // 100_000)
    assert count >= 3
    ova = chunked_ova(tmp_path, source[0], chunk=100_000,
                      drop=count - 1 if drop == "last" else drop)
    for opening in (lambda: OvaImage(ova), lambda: read_stream(ova)):
        with pytest.raises(ImageFormatError) as caught:
            opening()
        assert caught.value.exit_code == 3 and "\n" not in str(caught.value)
    with pytest.raises(ImageFormatError, match=words):
        OvaImage(ova)


def test_a_chunk_numbered_in_other_digits_is_no_chunk(tmp_path: Path) -> None:
    """'\u00b2' counts as a digit to str.isdigit, not to int: such a member is just not a
    chunk, and the disk is refused for the chunks it lacks (a typed error, not a crash)."""
    import tarfile

    ovf = ovf_text([("disk.vmdk", MIB, STREAM_FORMAT)]).replace(
        'ovf:href="disk.vmdk"', 'ovf:href="disk.vmdk" ovf:chunkSize="1048576"').encode()
    ova = tmp_path / "chunk.ova"
    with tarfile.open(ova, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("vm.ovf", ovf), ("disk.vmdk.\u00b2", b"x" * 512)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(ImageFormatError, match="expected members disk.vmdk.000000000, "
                                               "disk.vmdk.000000001...; found none"):
        OvaImage(ova)


def test_a_chunk_of_the_wrong_size_is_refused(tmp_path: Path, source) -> None:
    ova = chunked_ova(tmp_path, source[0], ovf_chunk=CHUNK + 512)
    with pytest.raises(ImageFormatError, match=f"holds {CHUNK} bytes, expected {CHUNK + 512}"):
        OvaImage(ova)
    with pytest.raises(ImageFormatError, match="disk.vmdk"):
        read_stream(ova)


def test_a_damaged_chunk_fails_its_digest_in_place_and_on_a_stream(tmp_path: Path,
                                                                  source) -> None:
    ova = chunked_ova(tmp_path, source[0], damage=1)
    with pytest.raises(ChecksumError, match="disk.vmdk.000000001"):
        OvaImage(ova)
    with pytest.raises((ChecksumError, ImageFormatError)) as caught:
        read_stream(ova)
    assert caught.value.exit_code == 3


# --- the OVF's capacity against the VMDK --------------------------------------------------
def ova_with_capacity(tmp_path: Path, vmdk: Path, capacity: str, units: str = "byte") -> Path:
    """A one-disk OVA whose OVF gives the disk ``capacity`` in ``units``."""
    ovf = ovf_text([("disk.vmdk", 0, STREAM_FORMAT)]).replace(
        'ovf:capacity="0" ovf:capacityAllocationUnits="byte"',
        f'ovf:capacity="{capacity}" ovf:capacityAllocationUnits="{units}"')
    return make_ova(tmp_path / "cap.ova", [(vmdk, 0)], ovf=ovf)


@pytest.mark.parametrize("capacity, units", [
    (str(SIZE), "byte"), ("6", "byte * 2^20"), (str(SIZE + 1000), "byte")])
def test_a_capacity_that_is_the_same_disk_is_accepted_quietly(tmp_path: Path, source,
                                                              capacity: str, units: str) -> None:
    # 6 MiB in MiB units is the VMDK rounded up to the unit; + 1000 bytes is the same
    # whole-MiB Azure disk
    ova = ova_with_capacity(tmp_path, source[0], capacity, units)
    with OvaImage(ova) as image:
        assert image.virtual_size == SIZE and source_findings(image) == []


def test_an_ovf_capacity_below_the_vmdk_is_refused(tmp_path: Path, source) -> None:
    ova = ova_with_capacity(tmp_path, source[0], "4", "byte * 2^20")
    for opening in (lambda: OvaImage(ova), lambda: read_stream(ova)):
        with pytest.raises(CapacityMismatchError) as caught:
            opening()
        message = str(caught.value)
        assert caught.value.exit_code == 3 and "\n" not in message
        assert str(4 * MIB) in message and str(SIZE) in message


def test_an_ovf_capacity_above_the_vmdk_is_read_with_a_finding(tmp_path: Path, source) -> None:
    vmdk, expected = source
    ova = ova_with_capacity(tmp_path, vmdk, "8", "byte * 2^30")
    with OvaImage(ova) as image:
        assert image.virtual_size == SIZE and bytes(image.read(0, SIZE)) == expected
        [finding] = source_findings(image)
    assert finding.code == "capacity_mismatch" and finding.severity == "warning"
    assert str(8 << 30) in finding.message and str(SIZE) in finding.message
    assert f"--size {8 << 30}" in finding.message


# --- zip archives named .ova --------------------------------------------------------------
def test_a_zip_named_ova_is_refused_with_one_line(tmp_path: Path, source) -> None:
    path = tmp_path / "vm.ova"
    before = set(os.listdir(tmp_path)) | {"vm.ova"}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("vm.ovf", ovf_text([("disk.vmdk", SIZE, STREAM_FORMAT)]))
        archive.write(source[0], "disk.vmdk")
    with pytest.raises(ImageFormatError) as caught:
        OvaImage(path)
    assert "zip archive" in str(caught.value) and "tar" in str(caught.value)
    with pytest.raises(ImageFormatError, match="zip archive"):
        read_stream(path)
    assert set(os.listdir(tmp_path)) == before  # nothing extracted beside it

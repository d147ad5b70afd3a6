"""Detection by content: containers are never read as raw disks, names are never trusted
alone, and forcing a format over a signature is possible but never silent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from azlift import vhd
from azlift.vhd._signatures import HEAD_SIZE, SIGNATURES, match_head
from azlift.vhd.detect import RAW_BECAUSE, detect_format
from azlift.vhd.errors import ContainerFormatError, FixUnsupportedError, FormatMismatchError
from tests.vhd.containers import (CONTAINERS, CONTENT_CASES, PAYLOAD, REFUSED_CASES,
                                  fingerprint, make_container)
from tests.vhd.images import MIB, make_fixed_vhd, write_raw


@pytest.fixture(scope="module")
def containers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every container case, each in a folder of its own (VMDK extents sit beside)."""
    root = tmp_path_factory.mktemp("containers")
    return {name: make_container(name, root / name) for name in CONTAINERS}


@pytest.mark.parametrize("case", CONTENT_CASES)
def test_content_names_the_container(containers: dict[str, Path], case: str) -> None:
    found = detect_format(containers[case])
    assert found.signature is not None, case
    assert CONTAINERS[case][1] in found.signature.name


@pytest.mark.parametrize("case", REFUSED_CASES)
def test_open_refuses_each_container_with_its_name_and_a_way_forward(
        containers: dict[str, Path], case: str) -> None:
    path = containers[case]
    with pytest.raises(ContainerFormatError) as caught:
        vhd.open_image(path)
    message = str(caught.value)
    assert CONTAINERS[case][1] in message
    assert "not a raw disk" in message and "\n" not in message
    assert caught.value.exit_code == 3 and caught.value.code == "unsupported_format"


@pytest.mark.parametrize("case", ["qed", "vdi", "gzip", "iso"])
def test_qemu_readable_formats_point_at_the_conversion(containers: dict[str, Path],
                                                       case: str) -> None:
    with pytest.raises(ContainerFormatError) as caught:
        vhd.open_image(containers[case])
    message = str(caught.value)
    if case in ("qed", "vdi"):
        assert "cannot read" in message and "yet" in message
        assert f"qemu-img convert -f {caught.value.format} -O raw" in message
    elif case == "gzip":
        assert "gunzip -k" in message
    else:
        assert "not a VM disk" in message


def test_every_checked_signature_has_a_case() -> None:
    covered = {CONTAINERS[case][1] for case in CONTAINERS}
    for signature in SIGNATURES:
        if signature.format == "qcow-unknown":
            continue
        assert any(name in signature.name for name in covered), signature.name


@pytest.mark.parametrize("case", list(CONTAINERS))
def test_fix_leaves_every_container_byte_identical(containers: dict[str, Path],
                                                   case: str) -> None:
    path = containers[case]
    before = fingerprint(path)
    with pytest.raises((ContainerFormatError, FixUnsupportedError)):
        vhd.fix(str(path))
    with pytest.raises((ContainerFormatError, FixUnsupportedError)) as forced:
        vhd.fix(str(path), format="raw")
    assert fingerprint(path) == before
    if case != "vhds":
        assert CONTAINERS[case][1] in str(forced.value)
        assert "left untouched" in str(forced.value)


def test_forcing_raw_reads_the_file_and_says_what_was_ignored(
        containers: dict[str, Path]) -> None:
    path = containers["qcow2-v3"]
    with vhd.open_image(path, "raw") as image:
        assert image.format == "raw"
        assert image.signature_ignored is not None
        assert image.signature_ignored.format == "qcow2"
        assert image.read(0, 4) == b"QFI\xfb"
        info = image.describe()
    assert info["signature_ignored"]["format"] == "qcow2"
    assert info["raw_reason"] == "--format raw was given"
    report = vhd.check_path(str(path), None, "raw")
    assert report.codes()[0] == "signature_ignored"
    assert "qcow2" in report.findings[0].message


def test_forced_convert_carries_the_warning(containers: dict[str, Path],
                                            tmp_path: Path) -> None:
    result = vhd.convert(str(containers["gzip"]), str(tmp_path / "out.vhd"), format="raw")
    assert [f.code for f in result.findings][0] == "signature_ignored"


def test_raw_disk_says_why_it_was_taken_as_raw(tmp_path: Path) -> None:
    disk = write_raw(tmp_path / "disk.img", 4 * MIB, [(0, PAYLOAD)])
    with vhd.open_image(disk) as image:
        assert image.format == "raw" and image.signature_ignored is None
        info = image.describe()
    assert info["raw_reason"] == RAW_BECAUSE
    for name in ("VHD", "VHDX", "qcow2", "VMDK", "VDI", "OVA", "gzip", "ISO 9660"):
        assert name in RAW_BECAUSE


@pytest.mark.parametrize("extension", [".vmdk", ".qcow2", ".qcow", ".vdi", ".qed", ".hdd",
                                       ".ova", ".ovf", ".avhdx", ".iso", ".gz", ".xz",
                                       ".zst", ".bz2"])
def test_a_name_that_promises_a_format_is_never_read_as_raw(tmp_path: Path,
                                                            extension: str) -> None:
    disk = write_raw(tmp_path / f"disk{extension}", 4 * MIB, [(0, PAYLOAD)])
    with pytest.raises(FormatMismatchError) as caught:
        vhd.open_image(disk)
    assert "--format raw" in str(caught.value)
    with vhd.open_image(disk, "raw") as image:
        assert image.read(0, len(PAYLOAD)) == PAYLOAD
        assert image.signature_ignored is None


def test_a_flat_vmdk_extent_is_raw_and_the_refusal_says_so(containers: dict[str, Path]) -> None:
    flat = next(containers["vmdk-monolithicFlat"].parent.glob("*-flat.vmdk"))
    with pytest.raises(FormatMismatchError) as caught:
        vhd.open_image(flat)
    assert "-flat.vmdk" in str(caught.value)
    with vhd.open_image(flat, "raw") as image:
        assert image.virtual_size == 64 * MIB


def test_a_container_wrapped_in_a_vhd_footer_is_named_for_its_data(
        containers: dict[str, Path], tmp_path: Path) -> None:
    """What the old `fix` made of a container: the container plus a fixed-VHD footer."""
    wrapped = tmp_path / "wrapped.vhd"
    make_fixed_vhd(containers["vdi"], wrapped)
    with pytest.raises(ContainerFormatError) as caught:
        vhd.open_image(wrapped)
    assert "VDI" in str(caught.value) and "fixed-VHD footer" in str(caught.value)
    with vhd.open_image(wrapped, "vhd") as image:
        assert image.format == "vhd-fixed"
        assert image.signature_ignored is not None
    # a qcow2 so wrapped is still a valid qcow2 (bytes after its clusters are ignored)
    wrapped_qcow2 = tmp_path / "wrapped-qcow2.vhd"
    make_fixed_vhd(containers["qcow2-v3"], wrapped_qcow2)
    with vhd.open_image(wrapped_qcow2) as image:
        assert image.format == "qcow2"


def test_real_disks_are_not_mistaken_for_containers(tmp_path: Path) -> None:
    """Sector 0 of a disk holds boot code: none of the magics may match it."""
    mbr = write_raw(tmp_path / "mbr.img", 24 * MIB, [(0, PAYLOAD)])
    blank = write_raw(tmp_path / "blank.img", 24 * MIB, [])
    for path in (mbr, blank):
        assert detect_format(path).format == "raw"
    fixed = tmp_path / "disk.vhd"
    make_fixed_vhd(mbr, fixed)
    assert detect_format(fixed).format == "vhd"


def test_short_files_and_partial_magics_do_not_match() -> None:
    assert match_head(b"") is None
    assert match_head(b"QFI") is None
    assert match_head(b"BZh9") is None  # no block magic after the header
    assert match_head(b"BZh0\x31\x41\x59\x26\x53\x59") is None  # block size 0 is invalid
    assert match_head(b"\x1f\x8b") is None  # gzip needs its method byte too
    assert match_head(bytes(HEAD_SIZE)) is None


def test_head_size_reaches_every_signature() -> None:
    for signature in SIGNATURES:
        if signature.offset >= 0:
            assert signature.offset + len(signature.magic) <= HEAD_SIZE


def test_a_large_sparse_container_is_identified_from_head_and_tail(containers: dict[str, Path]) -> None:
    """Probing reads the head and the tail only, so an 8 GiB sparse file is no slower."""
    path = containers["qcow2-v3"]
    big = path.with_name("big.qcow2")
    big.write_bytes(path.read_bytes())
    os.truncate(big, 8 * 1024 * MIB)
    assert detect_format(big).format == "qcow2"


@pytest.mark.parametrize("named", ["image", "extent"])
def test_a_fifo_is_refused_at_once_not_waited_on(tmp_path: Path, named: str) -> None:
    """Opening a FIFO with no writer blocks for ever: an image, or a VMDK extent, that is
    one is refused as not a regular file (in a child process, so a hang fails the test)."""
    import subprocess
    import sys

    fifo = tmp_path / "pipe.bin"
    os.mkfifo(fifo)
    image = fifo
    if named == "extent":
        image = tmp_path / "disk.vmdk"
        image.write_text('# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n'
                         'createType="monolithicFlat"\nRW 2048 FLAT "pipe.bin" 0\n')
    probe = ("import sys; from azlift import vhd\n"
             "try:\n    vhd.open_image(sys.argv[1])\n"
             "except vhd.VhdError as error:\n    print(type(error).__name__, error)\n")
    done = subprocess.run([sys.executable, "-c", probe, str(image)], capture_output=True,
                          text=True, timeout=60)
    assert done.stdout.strip() == f"ImageIOError {fifo}: is not a regular file, expected a " \
                                  f"disk image file", done.stderr

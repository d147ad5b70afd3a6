"""VMDK and OVA through the commands users run: inspect, check, convert (checked with
qemu-img compare against the raw source), upload and upload verify against Azurite."""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest

from tests.support.azurite import azurite  # noqa: F401  (fixture)
from tests.upload.helpers import blob_target
from tests.vhd.images import MIB, SECTOR, qemu_img, scattered_chunks, write_raw
from tests.vhd.vmdk_corpus import CASES
from tests.vhd.test_ova_packages import ova_with_capacity
from tests.vhd.vmdk_images import make_ova, make_vmdk, make_vmware_stream

SIZE = 21 * MIB + 3 * SECTOR  # above Azure's 20 MiB floor, not a whole MiB


def raw_disk(folder: Path, seed: int, size: int = SIZE) -> Path:
    chunks = [(o + 4096, d) for o, d in scattered_chunks(size - 8192, 10, seed=seed)]
    return write_raw(folder / f"raw{seed}.img", size, [(0, b"\xeb\x63\x90"), *chunks,
                                                       (size - 4, b"END!")])


def same_disk(raw: Path, vhd_path: Path) -> None:
    """qemu-img compare: the fixed VHD holds the raw disk (and zeros after it)."""
    qemu_img("compare", "-f", "raw", "-F", "vpc", raw, vhd_path)


@pytest.mark.parametrize("subformat", ["monolithicSparse", "twoGbMaxExtentSparse",
                                       "monolithicFlat", "twoGbMaxExtentFlat",
                                       "streamOptimized", "vmware"])
def test_convert_every_subformat(run_main, tmp_path: Path, subformat: str) -> None:
    raw = raw_disk(tmp_path, 1)
    source = tmp_path / "disk.vmdk"
    if subformat == "vmware":
        make_vmware_stream(raw, source)
    else:
        make_vmdk(raw, source, subformat)
    result = run_main("vhd", "convert", source, tmp_path / "out.vhd", "--json")
    assert result.code == 0, result.err
    document = json.loads(result.out)
    assert document["source_format"] == "vmdk-" + (
        "streamOptimized" if subformat == "vmware" else subformat)
    assert document["virtual_size"] == 22 * MIB
    same_disk(raw, tmp_path / "out.vhd")


def test_forced_format_reads_a_vmdk(run_main, tmp_path: Path) -> None:
    raw = raw_disk(tmp_path, 2)
    source = make_vmdk(raw, tmp_path / "disk.bin", "streamOptimized")
    result = run_main("vhd", "check", source, "--format", "vmdk", "--json")
    assert result.code in (0, 1), result.err
    assert json.loads(result.out)["format"] == "vmdk-streamOptimized"


@pytest.fixture
def three_disks(tmp_path: Path) -> tuple[Path, list[Path]]:
    raws = [raw_disk(tmp_path, seed, SIZE + seed * MIB) for seed in (1, 2, 3)]
    vmdks = [make_vmdk(raw, tmp_path / f"vm-disk{n}.vmdk", "streamOptimized")
             for n, raw in enumerate(raws, 1)]
    ova = make_ova(tmp_path / "vm.ova", [(v, SIZE + n * MIB) for n, v in enumerate(vmdks, 1)],
                   tar_format="pax")
    return ova, raws


def test_inspect_lists_the_disks_and_convert_needs_one(run_main, tmp_path: Path,
                                                       three_disks) -> None:
    ova, raws = three_disks
    listed = run_main("vhd", "inspect", ova, "--json")
    assert listed.code == 0, listed.err
    document = json.loads(listed.out)
    assert [(d["disk"], d["file"]) for d in document["disks"]] == [
        (1, "vm-disk1.vmdk"), (2, "vm-disk2.vmdk"), (3, "vm-disk3.vmdk")]
    assert document["layout"] is None and "--disk N" in listed.err
    needed = run_main("vhd", "convert", ova, tmp_path / "out.vhd")
    assert needed.code == 2 and len(needed.err_lines) == 1
    assert "vm-disk2.vmdk" in needed.err and not (tmp_path / "out.vhd").exists()
    one = run_main("vhd", "inspect", ova, "--disk", "2", "--json")
    assert json.loads(one.out)["disk"] == 2 and json.loads(one.out)["layout"] is not None
    done = run_main("vhd", "convert", ova, tmp_path / "out.vhd", "--disk", "3")
    assert done.code == 0, done.err
    same_disk(raws[2], tmp_path / "out.vhd")


def test_disk_out_of_range_on_a_single_disk(run_main, tmp_path: Path) -> None:
    source = make_vmdk(raw_disk(tmp_path, 4), tmp_path / "d.vmdk", "monolithicSparse")
    result = run_main("vhd", "check", source, "--disk", "2")
    assert result.code == 2 and "no disk 2" in result.err


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_malformed_file_is_one_line_exit_3_and_no_output(run_main, tmp_path: Path,
                                                               name: str) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    source = CASES[name].build(folder)
    result = run_main("vhd", "convert", source, tmp_path / "out.vhd")
    assert result.code == 3 and len(result.err_lines) == 1, result.err
    assert CASES[name].words in result.err and "Traceback" not in result.err
    assert os.listdir(tmp_path) == ["in"]  # neither DEST nor a temporary file


@pytest.fixture
def emulator_env(monkeypatch, tmp_path, azurite):  # noqa: F811
    monkeypatch.setenv("AZLIFT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("AZLIFT_EMULATOR_ENDPOINT", azurite.endpoint)
    for name in ("AZURE_STORAGE_KEY", "AZURE_STORAGE_CONNECTION_STRING",
                 "AZURE_STORAGE_SAS_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def test_upload_one_disk_of_an_ova_and_verify(run_main, tmp_path: Path, three_disks, azurite,  # noqa: F811
                                              emulator_env) -> None:
    ova, raws = three_disks
    container = azurite.new_container()
    refused = run_main("upload", ova, f"{container}/d.vhd", "--emulator")
    assert refused.code == 2 and "--disk N" in refused.err
    sent = run_main("upload", ova, f"{container}/d.vhd", "--emulator", "--disk", "2",
                    "--json", "--threads", "4")
    assert sent.code == 0, sent.err
    blob = tmp_path / "blob.vhd"
    blob.write_bytes(blob_target(azurite, container, "d.vhd").client.download_blob().readall())
    same_disk(raws[1], blob)
    checked = run_main("upload", "verify", ova, f"{container}/d.vhd", "--emulator", "--disk",
                       "2", "--json")
    assert checked.code == 0, checked.err
    assert json.loads(checked.out)["ok"] is True
    other = run_main("upload", "verify", ova, f"{container}/d.vhd", "--emulator", "--disk", "1")
    assert other.code == 1  # disk 1 is not what was uploaded


def test_ovf_capacity_checks_on_the_command_line(run_main, tmp_path: Path) -> None:
    raw = raw_disk(tmp_path, 7)
    vmdk = make_vmdk(raw, tmp_path / "disk.vmdk", "streamOptimized")
    above = ova_with_capacity(tmp_path, vmdk, "1", "byte * 2^30")
    result = run_main("vhd", "convert", above, tmp_path / "out.vhd")
    assert result.code == 0 and "warning: capacity_mismatch" in result.err, result.err
    same_disk(raw, tmp_path / "out.vhd")
    small = ova_with_capacity(tmp_path, vmdk, "20", "byte * 2^20")
    result = run_main("vhd", "convert", small, tmp_path / "out2.vhd")
    assert result.code == 3 and len(result.err_lines) == 1, result.err
    assert str(20 * MIB) in result.err and str(SIZE) in result.err
    assert not (tmp_path / "out2.vhd").exists()


def test_a_zip_named_ova_is_one_line_exit_3(run_main, tmp_path: Path) -> None:
    path = tmp_path / "vm.ova"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("vm.ovf", "<Envelope/>")
    for args in ((), ("--format", "ova")):
        result = run_main("vhd", "inspect", path, *args)
        assert result.code == 3 and len(result.err_lines) == 1, result.err
        assert "zip archive" in result.err and "Traceback" not in result.err

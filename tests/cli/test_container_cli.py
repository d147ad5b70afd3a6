"""Every command refuses a container it cannot read (exit 3, the format named, one line),
`fix` leaves it untouched, and `--format raw` still forces raw with a warning."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support.azurite import azurite  # noqa: F401  (fixture)
from tests.vhd.containers import (CONTAINERS, REFUSED_CASES, fingerprint, iso9660_image,
                                  make_container)
from tests.vhd.images import MIB


@pytest.fixture(scope="module")
def containers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli-containers")
    return {name: make_container(name, root / name) for name in CONTAINERS}


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch, azurite):  # noqa: F811
    monkeypatch.setenv("AZLIFT_EMULATOR_ENDPOINT", azurite.endpoint)
    return azurite


def refusal(run, name: str) -> str:
    assert run.code == 3, (run.code, run.err)
    assert "Traceback" not in run.err
    assert len(run.err_lines) == 1, run.err
    line = run.err_lines[0]
    assert line.startswith("azlift: error: ") and name in line
    return line


@pytest.mark.parametrize("case", REFUSED_CASES)
def test_vhd_commands_refuse_the_container(run_main, containers: dict[str, Path],
                                           tmp_path: Path, case: str) -> None:
    path, name = containers[case], CONTAINERS[case][1]
    before = fingerprint(path)
    refusal(run_main("vhd", "inspect", path), name)
    refusal(run_main("vhd", "check", path, "--os-disk"), name)
    refusal(run_main("vhd", "convert", path, tmp_path / "out.vhd"), name)
    refusal(run_main("vhd", "fix", path), name)
    assert fingerprint(path) == before
    assert not (tmp_path / "out.vhd").exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no temporary output either


@pytest.mark.parametrize("case", REFUSED_CASES)
def test_upload_refuses_the_container_and_sends_nothing(run_main, emulator,
                                                        containers: dict[str, Path],
                                                        case: str) -> None:
    container = emulator.new_container()
    run = run_main("upload", containers[case], f"{container}/disk.vhd", "--emulator")
    refusal(run, CONTAINERS[case][1])
    blobs = list(emulator.service_client().get_container_client(container).list_blobs())
    assert blobs == []


def test_json_error_names_the_format(run_main, containers: dict[str, Path]) -> None:
    run = run_main("vhd", "check", containers["vdi"], "--json")
    assert run.code == 3
    document = json.loads(run.out)
    assert document["ok"] is False
    assert document["error"]["code"] == "unsupported_format"
    assert "VDI" in document["error"]["message"]


def test_fix_with_format_raw_still_refuses_a_container(run_main,
                                                       containers: dict[str, Path]) -> None:
    path = containers["vmdk-streamOptimized"]
    before = fingerprint(path)
    run = run_main("vhd", "fix", path, "--format", "raw")
    assert run.code == 3 and "left untouched" in run.err and "VMDK" in run.err
    assert fingerprint(path) == before


def test_installed_command_refuses_fix_and_keeps_the_file(run_azlift,
                                                          containers: dict[str, Path]) -> None:
    path = containers["vdi"]
    before = fingerprint(path)
    run = run_azlift("vhd", "fix", path)
    refusal(run, "VDI")
    assert fingerprint(path) == before


@pytest.fixture
def big_iso(tmp_path: Path) -> Path:
    """An ISO 9660 image large enough for Azure's 20 MiB minimum (sparse)."""
    path = tmp_path / "medium.img"
    path.write_bytes(iso9660_image())
    os.truncate(path, 24 * MIB)
    return path


def test_format_raw_forces_inspect_check_and_convert_with_a_warning(
        run_main, big_iso: Path, tmp_path: Path) -> None:
    run = run_main("vhd", "inspect", big_iso, "--format", "raw", "--json")
    assert run.code == 0
    document = json.loads(run.out)
    assert document["format"] == "raw"
    assert document["signature_ignored"]["format"] == "iso"
    assert "ISO 9660" in run.err and "warning" in run.err

    run = run_main("vhd", "check", big_iso, "--format", "raw", "--json")
    findings = {f["code"]: f for f in json.loads(run.out)["findings"]}
    assert findings["signature_ignored"]["severity"] == "warning"
    assert "ISO 9660" in findings["signature_ignored"]["message"]

    run = run_main("vhd", "convert", big_iso, tmp_path / "forced.vhd", "--format", "raw")
    assert run.code == 0
    assert "signature_ignored" in run.err and "ISO 9660" in run.err
    assert (tmp_path / "forced.vhd").stat().st_size == 24 * MIB + 512


def test_format_raw_forces_upload_with_a_warning(run_main, emulator, big_iso: Path) -> None:
    container = emulator.new_container()
    run = run_main("upload", big_iso, f"{container}/medium.vhd", "--emulator", "--format",
                   "raw", "-q")
    assert run.code == 0, run.err
    assert "signature_ignored" in run.err and "ISO 9660" in run.err
    blob = emulator.service_client().get_blob_client(container, "medium.vhd")
    assert blob.get_blob_properties().size == 24 * MIB + 512
    assert blob.download_blob(offset=0x8001, length=5).readall() == b"CD001"


def test_inspect_of_a_raw_disk_says_why_it_is_raw(run_main, tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"\x33\xc0" + bytes(MIB))
    run = run_main("vhd", "inspect", disk)
    assert run.code == 0
    assert "raw reason: no known signature found" in run.out

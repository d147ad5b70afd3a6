"""qcow2 through every command unchanged: `vhd inspect|check|convert`, `upload` and
`upload verify` straight from a qcow2 chain; the malformed corpus as one-line exit 3."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.azurite import azurite  # noqa: F401  (fixture)
from tests.vhd import qcow2_corpus
from tests.vhd.images import MIB, qemu_img
from tests.vhd.qcow2_images import make_chain, make_variant, qemu_compare, source_disk

SIZE = 21 * MIB + 3 * 512  # above Azure's 20 MiB minimum, not a whole MiB


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("qcow2-cli")
    raw, _ = source_disk(folder, SIZE, seed=4)
    found = {name: make_variant(raw, folder, name) for name in ("v3-zstd", "extended-l2")}
    found["chain"] = make_chain(folder, raw)
    found["raw"] = raw
    return found


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, azurite):  # noqa: F811
    monkeypatch.setenv("AZLIFT_EMULATOR_ENDPOINT", azurite.endpoint)
    monkeypatch.setenv("AZLIFT_STATE_DIR", str(tmp_path / "state"))
    return azurite


def one_error_line(run, *words: str) -> str:
    assert run.code == 3, (run.code, run.out, run.err)
    assert "Traceback" not in run.err + run.out
    assert len(run.err_lines) == 1, run.err
    line = run.err_lines[0]
    assert line.startswith("azlift: error: "), line
    for word in words:
        assert word in line, line
    return line


def test_inspect_shows_the_chain_and_the_layout(run_main, images) -> None:
    run = run_main("vhd", "inspect", images["chain"], "--json")
    assert run.code == 0, run.err
    info = json.loads(run.out)
    assert info["format"] == "qcow2"
    assert info["virtual_size"] == SIZE + 2 * MIB
    assert info["qcow2"]["extended_l2"] is True
    assert [Path(p["path"]).name for p in info["parents"]] == ["mid.qcow2", "base.qcow2"]
    human = run_main("vhd", "inspect", images["v3-zstd"])
    assert human.code == 0 and "qcow2" in human.out and "zstd" in human.out


def test_check_says_it_needs_conversion_and_measures_the_size(run_main, images) -> None:
    run = run_main("vhd", "check", images["extended-l2"], "--json")
    report = json.loads(run.out)
    assert report["format"] == "qcow2"
    codes = [f["code"] for f in report["findings"]]
    assert "needs_conversion" in codes and "size_not_whole_mib" in codes
    message = next(f["message"] for f in report["findings"] if f["code"] == "needs_conversion")
    assert "a qcow2 image" in message
    assert report["azure_virtual_size"] == 22 * MIB


@pytest.mark.parametrize("name", ["chain", "v3-zstd"])
def test_convert_writes_what_qemu_reads(run_main, images, tmp_path: Path, name: str) -> None:
    out = tmp_path / "out.vhd"
    run = run_main("vhd", "convert", images[name], out, "--json")
    assert run.code == 0, run.err
    assert json.loads(run.out)["virtual_size"] % MIB == 0
    compared = qemu_compare(images[name], "qcow2", out, "vpc")
    assert compared.returncode == 0, compared.stdout + compared.stderr


def test_format_qcow2_is_accepted_and_checked(run_main, images, tmp_path: Path) -> None:
    renamed = tmp_path / "disk.img"
    renamed.write_bytes(images["v3-zstd"].read_bytes())
    run = run_main("vhd", "inspect", renamed, "--format", "qcow2", "--json")
    assert run.code == 0 and json.loads(run.out)["format"] == "qcow2"
    one_error_line(run_main("vhd", "inspect", images["raw"], "--format", "qcow2"),
                   "expected the qcow2 magic")


def test_upload_and_verify_straight_from_a_chain(run_main, images, emulator,
                                                 tmp_path: Path) -> None:
    container = emulator.new_container_name()
    run = run_main("upload", images["chain"], f"{container}/disk.vhd", "--emulator", "--json",
                   "--threads", "4")
    assert run.code == 0, run.err
    summary = json.loads(run.out)
    assert summary["blob_length"] == 24 * MIB + 512
    assert summary["data_bytes_sent"] < 4 * MIB  # only the chain's data travelled
    verify = run_main("upload", "verify", images["chain"], f"{container}/disk.vhd",
                      "--emulator")
    assert verify.code == 0, verify.err
    blob = tmp_path / "blob.vhd"
    client = emulator.service_client().get_blob_client(container, "disk.vhd")
    blob.write_bytes(client.download_blob().readall())
    compared = qemu_compare(images["chain"], "qcow2", blob, "vpc")
    assert compared.returncode == 0, compared.stdout + compared.stderr
    # and the blob is an Azure fixed VHD qemu reads as such
    assert json.loads(qemu_img("info", "--output=json", "-f", "vpc", blob).stdout)[
        "virtual-size"] == 24 * MIB


# --- the malformed corpus ------------------------------------------------------------------
@pytest.fixture(scope="module")
def malformed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, type]]:
    return qcow2_corpus.build_all(tmp_path_factory.mktemp("qcow2-corpus"))


@pytest.mark.parametrize("name", sorted(qcow2_corpus.CASES))
def test_malformed_convert_exits_3_in_one_line_and_leaves_nothing(run_main, malformed,
                                                                  tmp_path: Path,
                                                                  name: str) -> None:
    path, _ = malformed[name]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    one_error_line(run_main("vhd", "convert", path, out_dir / "out.vhd"), path.name)
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize("name", ["qcow2-l2-entry-past-eof", "qcow2-compressed-cluster-past-eof",
                                  "qcow2-compressed-cluster-runs-past-eof",
                                  "qcow2-backing-loop", "qcow2-marked-corrupt"])
def test_malformed_upload_exits_3_and_creates_no_blob(run_main, malformed, emulator,
                                                      name: str) -> None:
    path, _ = malformed[name]
    container = emulator.new_container()
    one_error_line(run_main("upload", path, f"{container}/disk.vhd", "--emulator"), path.name)
    blobs = list(emulator.service_client().get_container_client(container).list_blobs())
    assert blobs == []


@pytest.fixture(scope="module")
def garbled(images: dict[str, Path]) -> Path:
    """A zlib-compressed qcow2 of the 21 MiB source with garbage inside one compressed
    cluster: only inflating it shows (every descriptor still lies inside the file)."""
    path = make_variant(images["raw"], images["raw"].parent, "v3-zlib")
    _, offset = qcow2_corpus.compressed_entry(path, -1)
    return qcow2_corpus.patch(path, offset, b"\xff\xfe" * 20)


def test_a_cluster_found_bad_while_sending_leaves_no_blob(run_main, garbled,
                                                          emulator) -> None:
    # garbage inside a compressed cluster shows only when it is inflated, after the blob
    # was created and other pages sent: the partial blob this run created is deleted
    path = garbled
    container = emulator.new_container()
    line = one_error_line(run_main("upload", path, f"{container}/disk.vhd", "--emulator",
                                   "--threads", "2"), path.name, "does not inflate")
    assert "partial" in line and "was deleted" in line
    assert list(emulator.service_client().get_container_client(container).list_blobs()) == []


def test_a_cluster_found_bad_while_overwriting_leaves_a_blob_marked_incomplete(
        run_main, garbled, images, emulator) -> None:
    path = garbled
    container = emulator.new_container()
    assert run_main("upload", images["raw"], f"{container}/disk.vhd", "--emulator",
                    "--format", "raw").code == 0
    line = one_error_line(run_main("upload", path, f"{container}/disk.vhd", "--emulator",
                                   "--overwrite"), path.name)
    assert "partial upload" in line and "--overwrite" in line
    client = emulator.service_client().get_blob_client(container, "disk.vhd")
    assert client.get_blob_properties().metadata["azlift_state"] == "uploading"


def test_malformed_through_the_installed_command(run_azlift, malformed) -> None:
    for name in ("qcow2-truncated-data", "qcow2-compressed-cluster-garbage",
                 "qcow2-unknown-incompatible-bit"):
        path = malformed[name][0]
        run = run_azlift("vhd", "convert", path, path.parent / "x.vhd")
        one_error_line(run, path.name)
        assert not (path.parent / "x.vhd").exists()

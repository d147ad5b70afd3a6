"""`azlift upload - URL --format vmdk-stream|ova`: a disk arriving on a pipe goes to a page
blob in one pass; the blob is compared with the raw source by qemu-img."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.cli.test_vmdk_cli import SIZE, raw_disk, same_disk
from tests.cli.test_vmdk_cli import emulator_env as env  # noqa: F401  (fixture)
from tests.support.azurite import azurite  # noqa: F401  (fixture)
from tests.upload.helpers import blob_target
from tests.vhd.images import MIB
from tests.vhd.test_ova_packages import chunked_ova, ova_with_capacity
from tests.vhd.vmdk_images import make_ova, make_vmdk, make_vmware_stream

AZLIFT = str(Path(sys.executable).parent / "azlift")


def piped(source: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``cat SOURCE | azlift upload - ARGS``: stdin is a real pipe (no seeking)."""
    cat = subprocess.Popen(["cat", os.fspath(source)], stdout=subprocess.PIPE)
    try:
        return subprocess.run([AZLIFT, "upload", "-", *args], stdin=cat.stdout,
                              capture_output=True, text=True, timeout=120)
    finally:
        cat.stdout.close()
        cat.wait()


def blob_file(azurite, container: str, folder: Path) -> Path:  # noqa: F811
    path = folder / "blob.vhd"
    path.write_bytes(blob_target(azurite, container, "d.vhd").client.download_blob().readall())
    return path


@pytest.mark.parametrize("layout", ["qemu", "vmware"])
def test_a_stream_vmdk_on_a_pipe(env, azurite, tmp_path: Path, layout: str) -> None:  # noqa: F811
    raw = raw_disk(tmp_path, 1)
    source = tmp_path / "s.vmdk"
    (make_vmware_stream if layout == "vmware" else
     lambda r, d: make_vmdk(r, d, "streamOptimized"))(raw, source)
    container = azurite.new_container()
    done = piped(source, f"{container}/d.vhd", "--emulator", "--format", "vmdk-stream",
                 "--json", "--threads", "4")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["virtual_size"] == 22 * MIB and summary["data_bytes_sent"] < 2 * MIB
    same_disk(raw, blob_file(azurite, container, tmp_path))
    state = blob_target(azurite, container, "d.vhd").properties().metadata
    assert state.get("azlift_state") == "complete"


@pytest.mark.parametrize("gzip_members", [False, True])
def test_one_disk_of_an_ova_on_a_pipe(env, azurite, tmp_path: Path, gzip_members: bool) -> None:  # noqa: F811
    raws = [raw_disk(tmp_path, seed, SIZE + seed * MIB) for seed in (1, 2)]
    disks = [(make_vmdk(r, tmp_path / f"d{n}.vmdk", "streamOptimized"), SIZE + n * MIB)
             for n, r in enumerate(raws, 1)]
    ova = make_ova(tmp_path / "vm.ova", disks, gzip_members=gzip_members)
    container = azurite.new_container()
    refused = piped(ova, f"{container}/d.vhd", "--emulator", "--format", "ova")
    assert refused.returncode == 2 and "--disk N" in refused.stderr
    done = piped(ova, f"{container}/d.vhd", "--emulator", "--format", "ova", "--disk", "2")
    assert done.returncode == 0, done.stderr
    same_disk(raws[1], blob_file(azurite, container, tmp_path))


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_damaged_ova_on_a_pipe_fails_and_leaves_no_complete_blob(env, azurite,  # noqa: F811
                                                                   tmp_path: Path,
                                                                   overwrite: bool) -> None:
    raw = raw_disk(tmp_path, 3)
    ova = make_ova(tmp_path / "vm.ova", [(make_vmdk(raw, tmp_path / "d.vmdk",
                                                    "streamOptimized"), SIZE)])
    with tarfile.open(ova) as archive:
        member = archive.getmember("d.vmdk")
    with open(ova, "r+b") as handle:  # a byte of padding after the last grain
        handle.seek(member.offset_data + member.size - 1)
        handle.write(b"\x01")
    container = azurite.new_container()
    if overwrite:  # a blob was there before: the failed upload leaves it marked incomplete
        blob_target(azurite, container, "d.vhd").create(SIZE + 512, False)
    done = piped(ova, f"{container}/d.vhd", "--emulator", "--format", "ova",
                 *(["--overwrite"] if overwrite else []))
    assert done.returncode == 3 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "manifest says" in done.stderr
    target = blob_target(azurite, container, "d.vhd")
    if overwrite:
        assert target.properties().metadata.get("azlift_state") == "uploading"
        assert "partial upload" in done.stderr
    else:  # this run created it: the partial blob is gone
        assert not target.exists() and "was deleted" in done.stderr


@pytest.mark.parametrize("args, code, words", [
    ((), 2, "--format vmdk-stream"),
    (("--format", "vmdk-stream", "--resume"), 2, "one pass"),
    (("--format", "vmdk-stream"), 3, "not a stream-optimized VMDK"),
])
def test_what_a_pipe_cannot_do(env, azurite, tmp_path: Path, args, code: int, words: str) -> None:  # noqa: F811
    source = make_vmdk(raw_disk(tmp_path, 4), tmp_path / "s.vmdk", "monolithicSparse")
    container = azurite.new_container()
    done = piped(source, f"{container}/d.vhd", "--emulator", *args)
    assert done.returncode == code and words in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_a_chunked_ova_on_a_pipe(env, azurite, tmp_path: Path) -> None:  # noqa: F811
    raw = raw_disk(tmp_path, 5)
    vmdk = make_vmdk(raw, tmp_path / "disk.vmdk", "streamOptimized")
    ova = chunked_ova(tmp_path, vmdk, chunk=1 << 20, capacity=SIZE)
    container = azurite.new_container()
    done = piped(ova, f"{container}/d.vhd", "--emulator", "--format", "ova")
    assert done.returncode == 0, done.stderr
    same_disk(raw, blob_file(azurite, container, tmp_path))


def test_an_ovf_capacity_above_the_disk_warns_on_a_pipe(env, azurite, tmp_path: Path) -> None:  # noqa: F811
    raw = raw_disk(tmp_path, 6)
    vmdk = make_vmdk(raw, tmp_path / "disk.vmdk", "streamOptimized")
    ova = ova_with_capacity(tmp_path, vmdk, "1", "byte * 2^30")
    container = azurite.new_container()
    done = piped(ova, f"{container}/d.vhd", "--emulator", "--format", "ova")
    assert done.returncode == 0, done.stderr
    assert "warning: capacity_mismatch" in done.stderr and str(1 << 30) in done.stderr
    same_disk(raw, blob_file(azurite, container, tmp_path))

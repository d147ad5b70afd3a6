"""A full disk while converting or while recording an upload's progress: one clear line,
and nothing half-written left looking complete.

The full disk is a real one: a small tmpfs mounted for the test (root, as in CI). A
journal that fills up half-way through an upload is a file-size limit on the uploader
(RLIMIT_FSIZE: each write past it fails with EFBIG, as a write on a full disk fails with
ENOSPC), since a tmpfs hands out whole pages and would need a huge upload to fill one.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pytest

from tests.cli.conftest import installed_azlift
from tests.support.azurite import azurite  # noqa: F401  (fixture)
from tests.vhd.images import MIB, write_raw


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs, mounted for this test only."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs", str(mount)],
                   check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> None:
    """Take every free block of ``directory``'s file system."""
    with open(directory / "filler", "wb") as handle:
        try:
            while True:
                handle.write(b"\xff" * 65536)
                handle.flush()
        except OSError:
            pass


def run(*args: str | os.PathLike[str], env: dict[str, str] | None = None,
        fsize: int | None = None) -> subprocess.CompletedProcess:
    def limit() -> None:
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    return subprocess.run([installed_azlift(), *map(os.fspath, args)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})},
                          preexec_fn=limit)


def data_disk(path: Path, pieces: int) -> Path:
    return write_raw(path, 24 * MIB, [(i * MIB, os.urandom(256 * 1024)) for i in range(pieces)])


def journal_header_size(source: Path, target: str) -> int:
    """Bytes of the first line of the journal an upload of ``source`` to ``target`` writes."""
    from azlift import vhd
    from azlift.upload.journal import JOURNAL_VERSION, fingerprint
    from azlift.upload.stream import fixed_vhd_layout

    with vhd.open_image(source) as image:
        header = fingerprint(image, fixed_vhd_layout(image), target)
    return len(json.dumps({"version": JOURNAL_VERSION, **asdict(header)}) + "\n")


def test_convert_onto_a_full_disk_leaves_nothing(small_disk: Path, tmp_path: Path) -> None:
    source = data_disk(tmp_path / "disk.img", 12)  # 3 MiB of data: more than the disk holds
    done = run("vhd", "convert", source, small_disk / "out.vhd")
    assert done.returncode == 3, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"azlift: error: cannot write {small_disk / 'out.vhd'}: No space left on device"]
    assert sorted(p.name for p in small_disk.iterdir()) == []


def test_upload_with_a_full_state_disk_sends_nothing(small_disk: Path, tmp_path: Path,
                                                     azurite) -> None:  # noqa: F811
    fill(small_disk)
    container = azurite.new_container()
    done = run("upload", data_disk(tmp_path / "disk.img", 2), f"{container}/d.vhd",
               "--emulator", env={"AZLIFT_EMULATOR_ENDPOINT": azurite.endpoint,
                                  "AZLIFT_STATE_DIR": str(small_disk / "state")})
    assert done.returncode == 3, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "cannot write the resume journal" in line and "No space left on device" in line
    assert list(azurite.service_client().get_container_client(container).list_blobs()) == []


def test_journal_write_failing_mid_upload_stops_cleanly_and_resume_finishes(
        tmp_path: Path, azurite) -> None:  # noqa: F811
    source = data_disk(tmp_path / "disk.img", 12)  # 12 separate pieces: 12 acknowledgements
    container = azurite.new_container()
    state = tmp_path / "state"
    env = {"AZLIFT_EMULATOR_ENDPOINT": azurite.endpoint, "AZLIFT_STATE_DIR": str(state)}
    args = ("upload", source, f"{container}/d.vhd", "--emulator", "--threads", "1")
    # Room for the journal's header and two acknowledgements ("0\n", "4194304\n"): the
    # third unit's record fails.
    first = run(*args, "--json", env=env,
                fsize=journal_header_size(source, f"{azurite.endpoint}/{container}/d.vhd") + 12)
    assert first.returncode == 3, first.stderr
    [line] = first.stderr.strip().splitlines()
    assert "cannot record" in line and "--resume" in line and "Traceback" not in line
    assert json.loads(first.stdout)["error"]["code"] == "journal_error"
    blob = azurite.service_client().get_blob_client(container, "d.vhd")
    assert blob.get_blob_properties().metadata.get("azlift_state") != "complete"

    second = run(*args, "--resume", "--json", env=env)
    assert second.returncode == 0, second.stderr
    summary = json.loads(second.stdout)
    assert 0 < summary["resumed_bytes"] < summary["blob_length"]
    assert run("upload", "verify", source, f"{container}/d.vhd", "--emulator",
               env=env).returncode == 0

"""A small XFS with reflinks, loop-mounted: where FICLONERANGE shares blocks for real."""
from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.tools import require_executable


@contextmanager
def reflink_filesystem(folder: Path, size_mib: int = 400) -> Iterator[Path]:
    """An XFS made with ``-m reflink=1`` in a file under ``folder``, mounted through a loop
    device (root only; skip, a failure in CI, otherwise); unmounted on exit. Also a
    filesystem known to honour O_DIRECT, wherever the test's temporary folder is."""
    mkfs = require_executable("mkfs.xfs")
    if os.geteuid() != 0:
        pytest.skip("mounting a loop device needs root")
    image, mountpoint = folder / "xfs.img", folder / "xfs"
    with open(image, "wb") as handle:
        handle.truncate(size_mib * 1024 * 1024)
    subprocess.run([mkfs, "-q", "-m", "reflink=1", str(image)], check=True)
    mountpoint.mkdir()
    mounted = subprocess.run(["mount", "-o", "loop", str(image), str(mountpoint)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        image.unlink()
        pytest.skip(f"cannot loop-mount an XFS here: {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        # lazily: a file a failed test left open must not hide its assertion
        subprocess.run(["umount", "--lazy", str(mountpoint)], check=False)
        image.unlink()


def shared_bytes(path: Path) -> int:
    """Bytes of ``path`` in extents the filesystem marks shared (filefrag's FIEMAP view)."""
    listing = subprocess.run([require_executable("filefrag"), "-v", "-b1", str(path)],
                             check=True, capture_output=True, text=True).stdout
    total = 0
    for line in listing.splitlines():
        fields = [field.strip() for field in line.split(":")]
        if len(fields) >= 5 and fields[0].isdigit() and "shared" in fields[-1]:
            total += int(fields[3].split()[0].rstrip("."))
    return total

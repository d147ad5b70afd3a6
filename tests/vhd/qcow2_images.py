"""qcow2 test images made by qemu-img and qemu-io (the reference peer), and qemu's view of them.

- ``ODD_SIZE`` / ``source_disk``: a sparse raw disk of a whole MiB + 3 sectors with known
  scattered data (first and last sector included).
- ``VARIANTS`` / ``make_variant``: that disk converted with each qcow2 option that changes
  the layout (compat, compression, cluster size, extended L2, external data file).
- ``qemu_io`` / ``make_chain``: backing chains written with qemu-io, zero writes included.
- ``qemu_map`` / ``map_ranges`` / ``qemu_compare``: the oracle.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.support.tools import require_executable
from tests.vhd.images import MIB, expected_bytes, qemu_img, scattered_chunks, write_raw

ODD_SIZE = 8 * MIB + 3 * 512

# name -> (qemu-img convert -o options, compress with -c)
VARIANTS: dict[str, tuple[dict[str, str], bool]] = {
    "v2": ({"compat": "0.10"}, False),
    "v3": ({"compat": "1.1"}, False),
    "v2-zlib": ({"compat": "0.10"}, True),
    "v3-zlib": ({"compat": "1.1"}, True),
    "v3-zstd": ({"compat": "1.1", "compression_type": "zstd"}, True),
    "extended-l2": ({"extended_l2": "on", "cluster_size": "128k"}, False),
    "extended-l2-zlib": ({"extended_l2": "on", "cluster_size": "64k"}, True),
    "clusters-512": ({"cluster_size": "512"}, False),
    "clusters-2m": ({"cluster_size": "2M"}, False),
    "data-file-raw": ({"data_file": "{dir}/{name}.data", "data_file_raw": "on"}, False),
    "data-file": ({"data_file": "{name}.data"}, False),
    "preallocated": ({"preallocation": "metadata"}, False),
}


def source_disk(folder: Path, size: int = ODD_SIZE, seed: int = 11) -> tuple[Path, bytes]:
    """A sparse raw disk with scattered known data, and its bytes."""
    chunks = scattered_chunks(size - 8192, 30, seed=seed)
    chunks = [(0, b"\xeb\x3c\x90qcow2-test"), *[(o + 4096, d) for o, d in chunks],
              (size - 512, b"\xaa" * 512)]
    path = write_raw(folder / "source.raw", size, chunks)
    return path, expected_bytes(size, chunks)


def make_variant(raw: Path, folder: Path, name: str) -> Path:
    """``raw`` converted by qemu-img to the qcow2 variant ``name`` (see VARIANTS)."""
    options, compress = VARIANTS[name]
    dest = folder / f"{name}.qcow2"
    opts = ",".join(f"{key}={value.format(dir=folder, name=name)}"
                    for key, value in options.items())
    args = [require_executable("qemu-img"), "convert", "-f", "raw", "-O", "qcow2", "-o", opts]
    if compress:
        args.append("-c")
    # From inside ``folder``: qemu-img creates a relative data_file name there.
    subprocess.run([*args, str(raw.resolve()), str(dest.resolve())], check=True,
                   capture_output=True, text=True, cwd=folder)
    return dest


def qemu_io(image: Path, *commands: str, fmt: str = "qcow2") -> None:
    """Run qemu-io commands (``write -P 0x55 1M 64k``, ``write -z 0 64k``) on ``image``."""
    exe = require_executable("qemu-io")
    args = [exe, "-f", fmt]
    for command in commands:
        args += ["-c", command]
    subprocess.run([*args, str(image)], check=True, capture_output=True, text=True)


def create_overlay(dest: Path, backing: str, backing_format: str | None, *,
                   size: int | None = None, options: dict[str, str] | None = None) -> Path:
    """``qemu-img create -f qcow2 -b backing [-F fmt] dest [size]`` (backing as written)."""
    args = ["create", "-f", "qcow2", "-b", backing]
    if backing_format:
        args += ["-F", backing_format]
    if options:
        args += ["-o", ",".join(f"{k}={v}" for k, v in options.items())]
    args.append(str(dest))
    if size is not None:
        args.append(str(size))
    qemu_img(*args)
    return dest


def make_chain(folder: Path, raw: Path) -> Path:
    """base.qcow2 ← mid.qcow2 ← top.qcow2 (extended L2, bigger than its backing), in
    ``folder/chain`` with relative backing names, data and zero writes at every level."""
    home = folder / "chain"
    home.mkdir()
    qemu_img("convert", "-f", "raw", "-O", "qcow2", "-c", raw, home / "base.qcow2")
    mid = create_overlay(home / "mid.qcow2", "base.qcow2", "qcow2")
    qemu_io(mid, "write -P 0x55 2M 1M", "write -z 0 64k", "write -z 5000k 100k",
            "write -P 0x56 8M 1k")
    top = create_overlay(home / "top.qcow2", "mid.qcow2", "qcow2",
                         size=raw.stat().st_size + 2 * MIB,
                         options={"extended_l2": "on"})
    qemu_io(top, "write -P 0x66 6M 8k", "write -z 2M 4k", "write -P 0x67 9M 12k",
            "write -z 1M 12k")
    return top


def qemu_map(path: Path, fmt: str = "qcow2") -> list[dict[str, object]]:
    """``qemu-img map --output=json`` of ``path`` (run in its folder, where qemu looks for
    a relative external data file)."""
    done = subprocess.run([require_executable("qemu-img"), "map", "--output=json", "-f", fmt,
                           str(Path(path).resolve())], check=True, capture_output=True,
                          text=True, cwd=Path(path).parent)
    return json.loads(done.stdout)


def map_ranges(entries: list[dict[str, object]], *, data: bool = True,
               nonzero: bool = False) -> list[tuple[int, int]]:
    """Ranges qemu reports with ``data`` set (and, with ``nonzero``, ``zero`` clear)."""
    return [(int(e["start"]), int(e["length"])) for e in entries  # type: ignore[arg-type]
            if bool(e["data"]) == data and not (nonzero and e["zero"])]


def qemu_compare(image: Path, fmt: str, other: Path,
                 other_fmt: str) -> subprocess.CompletedProcess[str]:
    """``qemu-img compare`` (exit 0: identical guest bytes; extra size must read zero)."""
    exe = require_executable("qemu-img")
    return subprocess.run([exe, "compare", "-f", fmt, "-F", other_fmt, str(image.resolve()),
                           str(other.resolve())], capture_output=True, text=True,
                          cwd=image.parent)


def reference_raw(image: Path, dest: Path) -> bytes:
    """The guest bytes of ``image`` as qemu-img reads them."""
    qemu_img("convert", "-O", "raw", image, dest)
    data = dest.read_bytes()
    os.unlink(dest)
    return data

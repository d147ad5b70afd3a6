"""Build VMDK and OVA test images with the real tools: qemu-img/qemu-io, Debian's
VMDKstream (VMware's stream layout, run by the system python3), and tar.

- ``make_vmdk``: qemu-img's VMDK of a raw disk in any subformat.
- ``make_vmware_stream``: a stream-optimized VMDK with the grain directory in the footer.
- ``qemu_io``: writes into an image (``write -z`` makes zeroed grains).
- ``qemu_map``: the ranges qemu-img says hold data (``data`` and not ``zero``).
- ``ovf_text`` / ``make_ova``: an OVF descriptor for some disk files and the tar around it
  (ustar or pax, with or without a manifest, members gzip-compressed on request).
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.support.tools import require_executable
from tests.vhd.images import covered, qemu_convert, qemu_img

SYSTEM_PYTHON = "/usr/bin/python3"
STREAM_FORMAT = "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"
SPARSE_FORMAT = "http://www.vmware.com/interfaces/specifications/vmdk.html#sparse"


def make_vmdk(raw: str | os.PathLike[str], dest: str | os.PathLike[str],
              subformat: str, **options: str) -> Path:
    """``qemu-img convert -O vmdk -o subformat=...`` of a raw disk."""
    return qemu_convert(raw, dest, "vmdk", {"subformat": subformat, **options})


def make_vmware_stream(raw: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """VMware's stream layout (GD at the end, markers, footer, end-of-stream), written by
    Debian's python3-vmdkstream with the system interpreter (it is not on PyPI)."""
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import VMDKstream"], capture_output=True)
    if probe.returncode:
        pytest.skip("python3-vmdkstream not installed (run scripts/setup.sh)")
    subprocess.run([SYSTEM_PYTHON, "-c",
                    "import sys, VMDKstream; VMDKstream.convert_to_stream(sys.argv[1], sys.argv[2])",
                    os.fspath(raw), os.fspath(dest)], check=True, capture_output=True)
    return Path(dest)


def qemu_io(image: str | os.PathLike[str], *commands: str, fmt: str = "vmdk") -> None:
    exe = require_executable("qemu-io")
    args = [exe, "-f", fmt]
    for command in commands:
        args += ["-c", command]
    subprocess.run([*args, os.fspath(image)], check=True, capture_output=True)


def qemu_map(image: str | os.PathLike[str]) -> list[tuple[int, int]]:
    """qemu-img's data ranges: ``data`` and not ``zero``, merged."""
    entries = json.loads(qemu_img("map", "--output=json", image).stdout)
    ranges: list[tuple[int, int]] = []
    for entry in entries:
        if entry["data"] and not entry.get("zero"):
            start, length = entry["start"], entry["length"]
            if ranges and ranges[-1][0] + ranges[-1][1] == start:
                ranges[-1] = (ranges[-1][0], ranges[-1][1] + length)
            else:
                ranges.append((start, length))
    return ranges


def inside(extents: Sequence[tuple[int, int]], ranges: Sequence[tuple[int, int]]) -> bool:
    """Whether every extent lies within the union of ``ranges``."""
    return covered(ranges, [(offset, bytes(length)) for offset, length in extents])


def ovf_text(disks: Sequence[tuple[str, int, str]], *, compression: str = "") -> str:
    """An OVF envelope for ``(file name, capacity in bytes, format URI)`` disks."""
    files, entries = [], []
    attr = f' ovf:compression="{compression}"' if compression else ""
    for number, (name, capacity, uri) in enumerate(disks, 1):
        files.append(f'    <File ovf:id="file{number}" ovf:href="{name}"{attr}/>')
        entries.append(f'    <Disk ovf:diskId="vmdisk{number}" ovf:fileRef="file{number}" '
                       f'ovf:capacity="{capacity}" ovf:capacityAllocationUnits="byte" '
                       f'ovf:format="{uri}"/>')
    return "\n".join([
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" '
        'xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">',
        "  <References>", *files, "  </References>",
        "  <DiskSection>", "    <Info>Virtual disk information</Info>", *entries,
        "  </DiskSection>",
        '  <VirtualSystem ovf:id="vm"><Info>A virtual machine</Info></VirtualSystem>',
        "</Envelope>", ""])


def make_ova(dest: str | os.PathLike[str], disks: Sequence[tuple[str | os.PathLike[str], int]],
             *, tar_format: str = "ustar", manifest: str | None = "SHA256",
             gzip_members: bool = False, ovf: str | None = None,
             uri: str = STREAM_FORMAT) -> Path:
    """An OVA (tar: the OVF first, then the manifest, then the disks) of VMDK files given
    as ``(path, capacity)``; members keep the disks' base names."""
    tar = require_executable("tar")
    dest = Path(dest)
    folder = dest.parent / (dest.name + ".parts")
    folder.mkdir()
    names = []
    for path, _ in disks:
        name = Path(path).name + (".gz" if gzip_members else "")
        if gzip_members:
            with open(path, "rb") as src, gzip.open(folder / name, "wb") as out:
                shutil.copyfileobj(src, out)
        else:
            shutil.copyfile(path, folder / name)
        names.append(name)
    text = ovf if ovf is not None else ovf_text(
        [(name, capacity, uri) for name, (_, capacity) in zip(names, disks)],
        compression="gzip" if gzip_members else "")
    (folder / "vm.ovf").write_text(text)
    members = ["vm.ovf"]
    if manifest:
        algorithm = manifest.lower()
        lines = [f"{manifest}({name})= {hashlib.new(algorithm, (folder / name).read_bytes()).hexdigest()}"
                 for name in ["vm.ovf", *names]]
        (folder / "vm.mf").write_text("\n".join(lines) + "\n")
        members.append("vm.mf")
    subprocess.run([tar, f"--format={tar_format}", "-cf", os.fspath(dest.resolve()), *members,
                    *names], check=True, cwd=folder, capture_output=True)
    shutil.rmtree(folder)
    return dest

#!/usr/bin/env python3
"""Benchmark: VMware and KVM formats to Azure, azlift against qemu-img in the same run.

    .venv/bin/python scripts/bench_formats.py [--runs 3] [--workdir .bench-formats] [--keep]

streamOptimized VMDK → fixed VHD:
1. Builds a raw disk of 8 GiB virtual size holding 1 GiB of data in 2048 pieces of 512 KiB
   (base64 text of random bytes: it compresses about 4:3, as real disks roughly do), and
   qemu-img's streamOptimized VMDK of it (zlib-compressed grains, 64 KiB each).
2. Converts the VMDK to a fixed VHD with `azlift vhd convert` and with
   `qemu-img convert -O vpc -o subformat=fixed,force_size=on`, alternating who goes first,
   --runs times; prints the median wall time of each and their ratio (goal: ≤ 1.0), and
   the library call without interpreter start-up.
Both outputs are compared with `qemu-img compare` against the VMDK once. Not a test:
run it by hand; the numbers depend on the machine's cores (azlift inflates grains in
worker threads, qemu-img convert in one).
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_convert import bench_convert  # noqa: E402

MIB = 1024 * 1024
GIB = 1024 * MIB


def build_raw(workdir: Path, virtual: int, data: int, piece: int) -> Path:
    """A sparse raw disk of ``virtual`` bytes with ``data`` bytes of compressible pieces."""
    raw = workdir / "source.raw"
    if raw.exists():
        return raw
    rng = random.Random(42)
    slots = rng.sample(range(virtual // piece), data // piece)
    with open(raw, "wb") as handle:
        handle.truncate(virtual)
        for slot in sorted(slots):
            handle.seek(slot * piece)
            handle.write(base64.b64encode(rng.randbytes(piece * 3 // 4))[:piece])
    return raw


def build_stream_vmdk(workdir: Path, raw: Path) -> Path:
    source = workdir / "source-stream.vmdk"
    if not source.exists():
        subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o",
                        "subformat=streamOptimized", str(raw), str(source)], check=True)
    return source


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=ROOT / ".bench-formats")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--virtual-gib", type=int, default=8)
    parser.add_argument("--data-mib", type=int, default=1024)
    parser.add_argument("--piece-kib", type=int, default=512)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    if shutil.which("qemu-img") is None:
        print("bench: qemu-img is missing (run scripts/setup.sh)", file=sys.stderr)
        return 2
    args.workdir.mkdir(parents=True, exist_ok=True)
    try:
        raw = build_raw(args.workdir, args.virtual_gib * GIB, args.data_mib * MIB,
                        args.piece_kib * 1024)
        stream = build_stream_vmdk(args.workdir, raw)
        result = {"vmdk_stream_to_fixed_vhd": {
                      "source_bytes": stream.stat().st_size,
                      **bench_convert(args.workdir, args.runs, args.data_mib * MIB, stream,
                                      "vmdk")},
                  "virtual_size": args.virtual_gib * GIB, "cpus": os.cpu_count()}
    finally:
        if not args.keep:
            shutil.rmtree(args.workdir, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

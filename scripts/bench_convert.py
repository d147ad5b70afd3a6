#!/usr/bin/env python3
"""Benchmark: dynamic VHD → fixed VHD, azlift against qemu-img; and `vhd check` of a huge VHD.

    .venv/bin/python scripts/bench_convert.py [--runs 3] [--workdir .bench]

1. Builds a dynamic VHD of 8 GiB virtual size holding 512 MiB of random data scattered
   in 1024 pieces of 512 KiB (qemu-img converts the sparse raw file it starts from).
2. Converts it to a fixed VHD with `azlift vhd convert` and with
   `qemu-img convert -O vpc -o subformat=fixed,force_size=on`, alternating, --runs times;
   prints the median wall time of each, their ratio, and each output's allocation
   against the data (goals: ratio <= 0.8, allocation <= 1.05 x data). The library call
   (no interpreter start-up) is timed as well.
3. Times `vhd check` of an empty 2040 GiB dynamic VHD (the largest VHD qemu-img makes;
   goal < 0.3 s), through the library and through the installed command.
Both outputs are compared with `qemu-img compare` once. Not a test: run it by hand.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import vhd  # noqa: E402

MIB = 1024 * 1024
GIB = 1024 * MIB


def build_source(workdir: Path, virtual: int, data: int, piece: int) -> Path:
    """A dynamic VHD (qemu-img) of ``virtual`` bytes holding ``data`` bytes of random pieces."""
    source = workdir / "source-dynamic.vhd"
    if source.exists():
        return source
    raw = workdir / "source.raw"
    rng = random.Random(42)
    slots = rng.sample(range(virtual // piece), data // piece)
    with open(raw, "wb") as handle:
        handle.truncate(virtual)
        for slot in sorted(slots):
            handle.seek(slot * piece)
            handle.write(rng.randbytes(piece))
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "vpc", "-o",
                    "subformat=dynamic,force_size=on", str(raw), str(source)], check=True)
    raw.unlink()
    return source


def timed(command: list[str]) -> float:
    os.sync()  # no run pays for the previous run's dirty pages
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


def azlift_command() -> str:
    beside = Path(sys.executable).with_name("azlift")
    return str(beside) if beside.exists() else shutil.which("azlift") or "azlift"


def bench_convert(workdir: Path, runs: int, data: int, source: Path | None = None,
                  source_format: str = "vpc") -> dict[str, object]:
    """Race `azlift vhd convert` against qemu-img on ``source`` (default: the dynamic VHD)."""
    source = source or workdir / "source-dynamic.vhd"
    out_azlift, out_qemu, out_lib = (workdir / "azlift.vhd", workdir / "qemu.vhd",
                                     workdir / "library.vhd")
    times: dict[str, list[float]] = {"azlift": [], "qemu-img": [], "library": []}
    qemu = ["qemu-img", "convert", "-f", source_format, "-O", "vpc", "-o",
            "subformat=fixed,force_size=on", str(source), str(out_qemu)]
    cli = [azlift_command(), "vhd", "convert", "--quiet", str(source), str(out_azlift)]
    for run in range(runs):
        for path in (out_azlift, out_qemu, out_lib):
            path.unlink(missing_ok=True)
        order = [("qemu-img", qemu), ("azlift", cli)]
        for name, command in order if run % 2 == 0 else order[::-1]:  # alternate who goes first
            times[name].append(timed(command))
        os.sync()
        started = time.perf_counter()
        vhd.convert(str(source), str(out_lib))
        times["library"].append(time.perf_counter() - started)
    for out in (out_azlift, out_qemu):
        subprocess.run(["qemu-img", "compare", "-f", source_format, "-F", "vpc", str(source),
                        str(out)],
                       check=True, stdout=subprocess.DEVNULL)
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {
        "runs": runs,
        "median_seconds": {k: round(v, 3) for k, v in medians.items()},
        "all_seconds": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "ratio_azlift_to_qemu": round(medians["azlift"] / medians["qemu-img"], 3),
        "ratio_library_to_qemu": round(medians["library"] / medians["qemu-img"], 3),
        "data_bytes": data,
        "allocated_bytes": {"azlift": allocated(out_azlift), "qemu-img": allocated(out_qemu)},
        "allocation_to_data": {"azlift": round(allocated(out_azlift) / data, 3),
                               "qemu-img": round(allocated(out_qemu) / data, 3)},
    }


def bench_check(workdir: Path, runs: int) -> dict[str, object]:
    huge = workdir / "huge-dynamic.vhd"
    if not huge.exists():
        subprocess.run(["qemu-img", "create", "-q", "-f", "vpc", "-o",
                        "subformat=dynamic,force_size=on", str(huge), "2040G"], check=True)
    library, command = [], []
    for _ in range(runs):
        started = time.perf_counter()
        report = vhd.check_path(str(huge))
        library.append(time.perf_counter() - started)
        started = time.perf_counter()
        subprocess.run([azlift_command(), "vhd", "check", "--json", str(huge)],
                       stdout=subprocess.DEVNULL)
        command.append(time.perf_counter() - started)
    return {"virtual_size": report.virtual_size,
            "median_seconds": {"library": round(statistics.median(library), 3),
                               "azlift": round(statistics.median(command), 3)}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=ROOT / ".bench")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--virtual-gib", type=int, default=8)
    parser.add_argument("--data-mib", type=int, default=512)
    parser.add_argument("--piece-kib", type=int, default=512)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    if shutil.which("qemu-img") is None:
        print("bench: qemu-img is missing (run scripts/setup.sh)", file=sys.stderr)
        return 2
    args.workdir.mkdir(parents=True, exist_ok=True)
    data = args.data_mib * MIB
    try:
        build_source(args.workdir, args.virtual_gib * GIB, data, args.piece_kib * 1024)
        result = {"convert": bench_convert(args.workdir, args.runs, data),
                  "check_2040_gib_dynamic": bench_check(args.workdir, args.runs),
                  "cpus": os.cpu_count()}
    finally:
        if not args.keep:
            shutil.rmtree(args.workdir, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Benchmark: dynamic VHD → fixed VHD, azlift against qemu-img; start-up of quick commands.

    .venv/bin/python scripts/bench_convert.py [--runs 3] [--workdir .bench] [--skip-large]

1. Builds dynamic VHDs (qemu-img, from a sparse raw file) holding random data written as
   pieces of 64 KiB–4 MiB at random 4 KiB-aligned offsets: 8 GiB virtual with 512 MiB of
   data, and 32 GiB virtual with 4 GiB of data.
2. Converts each to a fixed VHD with `azlift vhd convert` (once per --cache mode: auto,
   the default, then direct and buffered; the library's call reports auto's switches) and
   with `qemu-img convert -O vpc -o
   subformat=fixed,force_size=on`, rotating who goes first, --runs times (the large input
   --large-runs times, each after a sync so none waits on the writeback of the output
   before it); prints the median wall time of each, the ratios to qemu-img
   (goals: <= 0.8 on the 8 GiB input, <= 0.7 on the 32 GiB one), the CPU
   seconds each spent per GiB of data, and each output's allocation against the data
   (goal: <= 1.05). The library call (no interpreter start-up) is timed as well.
3. Start-up: `azlift --version` and `azlift vhd check` of a small fixed VHD (goals: <= 0.1 s
   and <= 0.15 s wall; the project's bytecode written first, as pip leaves an installed
   copy), with `python -c pass` of the same interpreter as the floor; and
   `vhd check` of an empty 2040 GiB dynamic VHD.
4. The floor under any converter on the 8 GiB input: its stored runs copied into a new
   file by bare loops (copy_file_range from one thread, pread/pwrite from one and two).
Both outputs are compared with `qemu-img compare` once. Not a test: run it by hand.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from azlift import vhd  # noqa: E402
from installed_bytecode import compile_project  # noqa: E402

MIB = 1024 * 1024
GIB = 1024 * MIB


def scattered_pieces(virtual: int, data: int, rng: random.Random) -> list[tuple[int, int]]:
    """(offset, length) of pieces of 64 KiB–4 MiB, 4 KiB-aligned, disjoint, summing to
    ``data``, at random places in ``virtual`` bytes."""
    unit = 4096
    lengths, total = [], 0
    while total < data:
        length = min(rng.randrange(16, 1025) * unit, data - total)
        lengths.append(length)
        total += length
    free = (virtual - data) // unit
    cuts = sorted(rng.randrange(free + 1) for _ in lengths)
    pieces, position, previous = [], 0, 0
    for length, cut in zip(lengths, cuts):
        position += (cut - previous) * unit
        previous = cut
        pieces.append((position, length))
        position += length
    rng.shuffle(pieces)  # written in random order, like a guest would
    return pieces


def build_source(workdir: Path, name: str, virtual: int, data: int) -> Path:
    """A dynamic VHD (qemu-img) of ``virtual`` bytes holding ``data`` bytes of random pieces."""
    source = workdir / f"{name}-dynamic.vhd"
    if source.exists():
        return source
    raw = workdir / f"{name}.raw"
    rng = random.Random(42)
    with open(raw, "wb") as handle:
        handle.truncate(virtual)
        for offset, length in scattered_pieces(virtual, data, rng):
            handle.seek(offset)
            handle.write(rng.randbytes(length))
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "vpc", "-o",
                    "subformat=dynamic,force_size=on", str(raw), str(source)], check=True)
    raw.unlink()
    return source


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run of ``command``."""
    os.sync()  # no run pays for the previous run's dirty pages
    cpu = children_cpu_s()
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started, children_cpu_s() - cpu


def allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


def azlift_command() -> str:
    beside = Path(sys.executable).with_name("azlift")
    return str(beside) if beside.exists() else shutil.which("azlift") or "azlift"


def bench_convert(workdir: Path, source: Path, runs: int, data: int, fmt: str = "vpc",
                  caches: tuple[str, ...] = ("auto",)) -> dict[str, object]:
    """`azlift vhd convert` (once per --cache mode in ``caches``; "azlift" is the first)
    against `qemu-img convert` of ``source`` (qemu-img's format name ``fmt``) to a fixed
    VHD, rotating who goes first; the library call too."""
    out_qemu, out_lib = workdir / "qemu.vhd", workdir / "library.vhd"
    qemu = ["qemu-img", "convert", "-f", fmt, "-O", "vpc", "-o",
            "subformat=fixed,force_size=on", str(source), str(out_qemu)]
    commands: dict[str, tuple[list[str], Path]] = {"qemu-img": (qemu, out_qemu)}
    for index, cache in enumerate(caches):
        name = "azlift" if index == 0 else f"azlift --cache {cache}"
        out = workdir / f"azlift-{cache}.vhd"
        commands[name] = ([azlift_command(), "vhd", "convert", "--quiet", "--cache", cache,
                           str(source), str(out)], out)
    outputs = [out for _, out in commands.values()] + [out_lib]
    times: dict[str, list[float]] = {name: [] for name in [*commands, "library"]}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    names = list(commands)
    for run in range(runs):
        for path in outputs:
            path.unlink(missing_ok=True)
        shift = run % len(names)  # rotate who goes first: each follows each in turn
        for name in names[shift:] + names[:shift]:
            os.sync()  # each starts clean: none waits on the writeback of the one before
            wall, seconds = timed(commands[name][0])
            times[name].append(wall)
            cpu[name].append(seconds)
        os.sync()
        started = time.perf_counter()
        converted = vhd.convert(str(source), str(out_lib), cache=caches[0])
        chosen = [converted.cache, [list(phase) for phase in converted.cache_phases]]
        times["library"].append(time.perf_counter() - started)
    for name, (_, out) in commands.items():
        subprocess.run(["qemu-img", "compare", "-f", fmt, "-F", "vpc", str(source), str(out)],
                       check=True, stdout=subprocess.DEVNULL)
    medians = {name: statistics.median(values) for name, values in times.items()}
    result = {
        "runs": runs,
        # the library call's mode and, for auto, the ways it went: [mode, from data byte]
        "library_cache": chosen,
        "median_seconds": {k: round(v, 3) for k, v in medians.items()},
        "all_seconds": {k: [round(x, 3) for x in v] for k, v in times.items()},
        **{f"ratio_{name.replace(' --cache ', '_')}_to_qemu":
           round(medians[name] / medians["qemu-img"], 3) for name in [*names[1:], "library"]},
        "cpu_s_per_gib": {k: round(statistics.median(v) / (data / GIB), 3)
                          for k, v in cpu.items()},
        "data_bytes": data,
        "allocated_bytes": {name: allocated(out) for name, (_, out) in commands.items()},
        "allocation_to_data": {name: round(allocated(out) / data, 3)
                               for name, (_, out) in commands.items()},
    }
    for path in outputs:
        path.unlink(missing_ok=True)
    return result


def median_wall_cpu(command: list[str], runs: int) -> dict[str, float]:
    """Median wall and CPU seconds of ``command`` (CPU: what a quiet machine's wall is)."""
    walls, cpus = [], []
    for _ in range(runs):
        cpu = children_cpu_s()
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        walls.append(time.perf_counter() - started)
        cpus.append(children_cpu_s() - cpu)
    return {"wall_s": round(statistics.median(walls), 3),
            "cpu_s": round(statistics.median(cpus), 3)}


def bench_startup(workdir: Path, runs: int) -> dict[str, dict[str, float]]:
    """Quick commands, against the bare interpreter start-up (with the project's bytecode
    written first, as pip writes it for an installed copy)."""
    compile_project()
    small = workdir / "small.vhd"
    if not small.exists():
        subprocess.run(["qemu-img", "create", "-q", "-f", "vpc", "-o",
                        "subformat=fixed,force_size=on", str(small), "64M"], check=True)
    azlift = azlift_command()
    return {"python_pass": median_wall_cpu([sys.executable, "-c", "pass"], runs),
            "azlift_version": median_wall_cpu([azlift, "--version"], runs),
            "azlift_vhd_check_small": median_wall_cpu([azlift, "vhd", "check", str(small)],
                                                      runs)}


def bench_copy_floor(workdir: Path, source: Path, runs: int) -> dict[str, float]:
    """The floor under any converter here: the source's stored runs copied into a new file
    through the page cache by bare loops (no checks, no zero scan, no footer), median
    seconds of each way, each after a sync."""
    from concurrent.futures import ThreadPoolExecutor

    with vhd.open_image(str(source)) as image:
        runs_list = [(run.source, run.offset, run.length) for offset, length in image.extents()
                     for run in image.runs(offset, length) if run.source >= 0]
        size = image.virtual_size
        source_fd = os.dup(image.fd)

    def kernel(fd: int) -> None:
        for stored, offset, length in runs_list:
            done = 0
            while done < length:
                done += os.copy_file_range(source_fd, fd, length - done, stored + done,
                                           offset + done)

    def user(fd: int, threads: int) -> None:
        def one(run: tuple[int, int, int]) -> None:
            os.pwrite(fd, os.pread(source_fd, run[2], run[0]), run[1])
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, runs_list))

    ways = {"copy_file_range, 1 thread": kernel,
            "pread/pwrite, 1 thread": lambda fd: user(fd, 1),
            "pread/pwrite, 2 threads": lambda fd: user(fd, 2)}
    times: dict[str, list[float]] = {name: [] for name in ways}
    out = workdir / "floor.bin"
    try:
        for _ in range(runs):
            for name, way in ways.items():
                out.unlink(missing_ok=True)
                os.sync()
                started = time.perf_counter()
                fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                os.ftruncate(fd, size)
                way(fd)
                os.close(fd)
                times[name].append(time.perf_counter() - started)
    finally:
        os.close(source_fd)
        out.unlink(missing_ok=True)
    return {name: round(statistics.median(values), 3) for name, values in times.items()}


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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--workdir", type=Path, default=ROOT / ".bench")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--large-runs", type=int, default=2)
    parser.add_argument("--skip-large", action="store_true", help="only the 8 GiB input")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--cache", nargs="+", default=["auto", "direct", "buffered"],
                        help="azlift's --cache modes to time (the first is the headline)")
    args = parser.parse_args()
    if shutil.which("qemu-img") is None:
        print("bench: qemu-img is missing (run scripts/setup.sh)", file=sys.stderr)
        return 2
    args.workdir.mkdir(parents=True, exist_ok=True)
    cases = [("8g-512m", 8 * GIB, 512 * MIB, args.runs)]
    if not args.skip_large:
        cases.append(("32g-4g", 32 * GIB, 4 * GIB, args.large_runs))
    result: dict[str, object] = {"cpus": os.cpu_count()}
    try:
        result["startup"] = bench_startup(args.workdir, 7)
        for name, virtual, data, runs in cases:
            source = build_source(args.workdir, name, virtual, data)
            result[f"convert_{name}"] = bench_convert(args.workdir, source, runs, data,
                                                      caches=tuple(args.cache))
            if name == "8g-512m":
                result["copy_floor_8g-512m_seconds"] = bench_copy_floor(args.workdir, source,
                                                                        runs)
            if not args.keep:
                source.unlink()
        result["check_2040_gib_dynamic"] = bench_check(args.workdir, args.runs)
    finally:
        if not args.keep:
            shutil.rmtree(args.workdir, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

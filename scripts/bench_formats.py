#!/usr/bin/env python3
"""Benchmark: VMware and KVM formats to Azure, azlift against qemu-img in the same run.

    .venv/bin/python scripts/bench_formats.py [--runs 3] [--workdir .bench-formats] [--keep]
                                              [--only vmdk|qcow2]

streamOptimized VMDK → fixed VHD:
1. Builds a raw disk of 8 GiB virtual size holding 1 GiB of data in 2048 pieces of 512 KiB
   (base64 text of random bytes: it compresses about 4:3, as real disks roughly do), and
   qemu-img's streamOptimized VMDK of it (zlib-compressed grains, 64 KiB each).
2. Converts the VMDK to a fixed VHD with `azlift vhd convert` and with
   `qemu-img convert -O vpc -o subformat=fixed,force_size=on`, alternating who goes first,
   --runs times; prints the median wall time of each and their ratio (goal: ≤ 1.0), and
   the library call without interpreter start-up.
Both outputs are compared with `qemu-img compare` against the VMDK once.

qcow2 → page blob (Azurite):
1. Builds a raw disk of 16 GiB virtual size holding 1 GiB of data in 2048 pieces of
   512 KiB scattered over the whole disk, and qemu-img's qcow2 of it (64 KiB clusters).
2. Uploads it to a fresh in-memory Azurite per measurement, three ways, rotating who goes
   first, --runs times:
   - azlift: the installed `azlift upload SOURCE.qcow2 ...` (no scratch space);
   - qemu-img: `qemu-img convert -O vpc -o subformat=fixed,force_size=on` to a temporary
     fixed VHD, then `azlift upload` of that file (the path users take today);
   - bare: a bare 8-thread `upload_page` loop of the same data requests (at most 4 MiB
     each) from one buffer in memory, no reading, no checksum: this Azurite's floor.
   Prints the median wall time of each and their ratio (goal: azlift ≤ 0.6 × qemu-img's),
   the bare loop's ratio to qemu-img's path (what an uploader costing nothing but its
   requests would reach on this emulator),
   the scratch space each needed (the temporary VHD's allocated bytes), and where the time
   goes: qemu-img convert's wall, each upload's client CPU, Azurite's CPU, and the CPU the
   qcow2 reader alone spends reading all the data (the rest is the uploader both share).
3. Peak RSS of `azlift upload` from the 16 GiB qcow2 and from a 64 GiB qcow2 overlay on it
   (the same data, read through the backing chain): goal flat in virtual size, ≤ 200 MiB.
The azlift blob is checked with `azlift upload verify` against the qcow2 once.

Not a test: run it by hand; the numbers depend on the machine's cores (azlift inflates
grains in worker threads, qemu-img convert in one).
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_convert import bench_convert  # noqa: E402
from azurite_harness import bare_upload_s, fresh_azurite, process_cpu_s  # noqa: E402
from bench_upload import AZLIFT  # noqa: E402
from own_usage import run_with_usage  # noqa: E402

from azlift import vhd  # noqa: E402

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


def qemu_img(*args: str | Path) -> None:
    subprocess.run(["qemu-img", *map(str, args)], check=True, capture_output=True)


def build_qcow2(workdir: Path, raw: Path) -> tuple[Path, Path]:
    """The qcow2 of ``raw``, and a 64 GiB overlay on it that adds nothing."""
    source = workdir / "source.qcow2"
    if not source.exists():
        qemu_img("convert", "-f", "raw", "-O", "qcow2", raw, source)
    overlay = workdir / "overlay-64g.qcow2"
    if not overlay.exists():
        qemu_img("create", "-f", "qcow2", "-b", source.name, "-F", "qcow2", overlay, "64G")
    return source, overlay


def timed_upload(source: Path, endpoint: str, blob: str) -> tuple[float, int, dict, float]:
    """Wall seconds, peak RSS bytes, the JSON summary and the CPU seconds (wait4) of one
    installed `azlift upload` to the "bench" container."""
    env = {**os.environ, "AZLIFT_STATE_DIR": tempfile.mkdtemp()}
    done = run_with_usage(
        [str(AZLIFT), "upload", str(source), f"bench/{blob}", "--emulator",
         "--emulator-endpoint", endpoint, "--json", "--overwrite"],
        capture_output=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"azlift upload failed: {done.stderr.decode(errors='replace')}")
    return done.wall_s, done.peak_rss, json.loads(done.stdout), done.cpu_s


def via_qemu_img(source: Path, workdir: Path, endpoint: str) -> dict:
    """qemu-img convert to a temporary fixed VHD, then azlift upload of it: the walls of
    both steps, the upload's CPU, the scratch space."""
    scratch = workdir / "scratch-fixed.vhd"
    scratch.unlink(missing_ok=True)
    started = time.perf_counter()
    qemu_img("convert", "-f", "qcow2", "-O", "vpc", "-o", "subformat=fixed,force_size=on",
             source, scratch)
    converted = time.perf_counter() - started
    _, _, _, cpu = timed_upload(scratch, endpoint, "qemu.vhd")
    wall = time.perf_counter() - started
    allocated = scratch.stat().st_blocks * 512
    scratch.unlink()
    return {"wall": wall, "convert_wall": converted, "upload_cpu": cpu, "scratch": allocated}


def reader_cpu_s(source: Path) -> float:
    """CPU seconds to read every extent of ``source`` through azlift's reader, 4 MiB at a
    time: the part of `azlift upload` that is the format's, not the uploader's."""
    started = time.process_time()
    with vhd.open_image(str(source)) as image:
        for offset, length in image.extents():
            end = offset + length
            while offset < end:
                count = min(4 * MIB - offset % (4 * MIB), end - offset)
                image.read(offset, count)
                offset += count
    return time.process_time() - started


def data_requests(source: Path) -> tuple[int, list[tuple[int, int]]]:
    """The virtual size of ``source`` and its data extents cut into Put Page requests of
    at most 4 MiB: what any uploader that sends only the data must send."""
    with vhd.open_image(str(source)) as image:
        requests = [(start, min(4 * MIB, offset + length - start))
                    for offset, length in image.extents()
                    for start in range(offset, offset + length, 4 * MIB)]
        return image.virtual_size, requests


def bench_qcow2_upload(workdir: Path, source: Path, overlay: Path, runs: int) -> dict:
    walls: dict[str, list[float]] = {"azlift": [], "qemu": [], "bare": []}
    client_cpu: dict[str, list[float]] = {"azlift": [], "qemu": []}
    azurite_cpu: dict[str, list[float]] = {"azlift": [], "qemu": [], "bare": []}
    virtual_size, requests = data_requests(source)
    convert_walls: list[float] = []
    vhd_upload_walls: list[float] = []
    rss: dict[str, int] = {}
    scratch = sent = 0
    for run in range(runs):
        order = ("azlift", "qemu", "bare")[run % 3:] + ("azlift", "qemu", "bare")[:run % 3]
        for who in order:
            with fresh_azurite(workdir) as (endpoint, azurite):
                before = process_cpu_s(azurite)
                if who == "azlift":
                    wall, peak, summary, cpu = timed_upload(source, endpoint, "azlift.vhd")
                    rss["16GiB_qcow2"] = max(rss.get("16GiB_qcow2", 0), peak)
                    sent = summary["data_bytes_sent"]
                elif who == "bare":
                    wall = bare_upload_s(endpoint, "bench", "bare.vhd",
                                         -(-virtual_size // MIB) * MIB + 512, requests, 8)
                    azurite_cpu[who].append(process_cpu_s(azurite) - before)
                    walls[who].append(wall)
                    continue
                else:
                    measured = via_qemu_img(source, workdir, endpoint)
                    wall, cpu, scratch = (measured["wall"], measured["upload_cpu"],
                                          measured["scratch"])
                    convert_walls.append(measured["convert_wall"])
                    vhd_upload_walls.append(wall - measured["convert_wall"])
                azurite_cpu[who].append(process_cpu_s(azurite) - before)
                walls[who].append(wall)
                client_cpu[who].append(cpu)
                if who == "azlift" and run == 0:
                    verify = subprocess.run(
                        [str(AZLIFT), "upload", "verify", str(source), "bench/azlift.vhd",
                         "--emulator", "--emulator-endpoint", endpoint],
                        capture_output=True, text=True)
                    if verify.returncode != 0:
                        raise SystemExit(f"verify failed: {verify.stdout}{verify.stderr}")
    with fresh_azurite(workdir) as (endpoint, _):
        _, rss["64GiB_qcow2_overlay"], _, _ = timed_upload(overlay, endpoint, "overlay.vhd")

    def median(values: list[float]) -> float:
        return round(statistics.median(values), 2)

    return {
        "source_bytes": source.stat().st_size,
        "azlift_upload_wall_s": [round(w, 2) for w in walls["azlift"]],
        "qemu_img_convert_plus_upload_wall_s": [round(w, 2) for w in walls["qemu"]],
        "azlift_median_s": median(walls["azlift"]),
        "qemu_img_median_s": median(walls["qemu"]),
        "ratio_azlift_over_qemu_img": round(statistics.median(walls["azlift"])
                                            / statistics.median(walls["qemu"]), 3),
        "goal_ratio_at_most": 0.6,
        # the ratio an uploader costing nothing but its requests would reach here
        "bare_loop_wall_s": [round(w, 2) for w in walls["bare"]],
        "bare_loop_requests": len(requests),
        "ratio_bare_loop_over_qemu_img": round(statistics.median(walls["bare"])
                                               / statistics.median(walls["qemu"]), 3),
        "where_the_time_goes": {
            "qemu_img_convert_wall_s": median(convert_walls),
            "upload_of_converted_vhd_wall_s": median(vhd_upload_walls),
            "upload_client_cpu_s": {who: median(values) for who, values in client_cpu.items()},
            "azurite_cpu_s": {who: median(values) for who, values in azurite_cpu.items()},
            "qcow2_reader_cpu_s": round(reader_cpu_s(source), 2),
        },
        "azlift_scratch_bytes": 0,
        "qemu_img_scratch_bytes": scratch,
        "azlift_data_bytes_sent": sent,
        "azlift_peak_rss_bytes": rss,
        "verified": True,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=ROOT / ".bench-formats")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=["vmdk", "qcow2"], default=None)
    parser.add_argument("--virtual-gib", type=int, default=8, help="VMDK case")
    parser.add_argument("--qcow2-virtual-gib", type=int, default=16)
    parser.add_argument("--data-mib", type=int, default=1024)
    parser.add_argument("--piece-kib", type=int, default=512)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    if shutil.which("qemu-img") is None:
        print("bench: qemu-img is missing (run scripts/setup.sh)", file=sys.stderr)
        return 2
    from azlift.vhd._inflate import engine_name

    result: dict = {"cpus": os.cpu_count(), "data_bytes": args.data_mib * MIB,
                    "inflate_engine": engine_name(), "load_average": os.getloadavg()}
    try:
        if args.only in (None, "vmdk"):
            workdir = args.workdir / "vmdk"
            workdir.mkdir(parents=True, exist_ok=True)
            raw = build_raw(workdir, args.virtual_gib * GIB, args.data_mib * MIB,
                            args.piece_kib * 1024)
            stream = build_stream_vmdk(workdir, raw)
            result["vmdk_stream_to_fixed_vhd"] = {
                "virtual_size": args.virtual_gib * GIB, "source_bytes": stream.stat().st_size,
                **bench_convert(workdir, stream, args.runs, args.data_mib * MIB, fmt="vmdk"),
                "goal_ratio_at_most": 1.0}
        if args.only in (None, "qcow2"):
            workdir = args.workdir / "qcow2"
            workdir.mkdir(parents=True, exist_ok=True)
            raw = workdir / "source.raw"
            if not (workdir / "source.qcow2").exists():
                build_raw(workdir, args.qcow2_virtual_gib * GIB, args.data_mib * MIB,
                          args.piece_kib * 1024)
            source, overlay = build_qcow2(workdir, raw)
            raw.unlink(missing_ok=True)  # the comparison starts from the qcow2
            result["qcow2_upload"] = {
                "virtual_size": args.qcow2_virtual_gib * GIB,
                **bench_qcow2_upload(workdir, source, overlay, args.runs)}
    finally:
        if not args.keep:
            shutil.rmtree(args.workdir, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Benchmark: `azlift bulk run` against single `azlift upload`s, one run, same Azurite build.

    .venv/bin/python scripts/bench_bulk.py [--workdir .bench-bulk] [--disks 16]
        [--virtual-mib 1024] [--data-mib 64] [--rss-vms 1000] [--max-disks 4]

Every measurement gets a fresh in-memory Azurite (as scripts/bench_upload.py does):
1. Single: one `azlift upload` of one disk (1 GiB virtual, 64 MiB of random data in 256
   scattered pieces of 256 KiB): its data throughput (bytes sent / the upload's seconds).
2. Loop: the 16 disks by a sequential shell loop of `azlift upload` (wall time, process
   starts included, as a script would run them).
3. Bulk: the same 16 disks as 16 VMs of one source (max_disks 4) with `azlift bulk run`,
   embedded cluster on threads (the default), then with --processes, then on threads
   with verify = "full" (every data range read back; the default verify is "pages").
   Goals: bulk makespan <= 1.25 x (total data / single throughput) and <= 0.5 x the loop.
   Azurite's own CPU seconds are recorded for the loop and each run: it is one Node
   process, so its CPU time for the same work is a floor under any makespan.
4. Memory: peak RSS of `azlift bulk run` (the coordinator, with its embedded workers)
   for a 1,000-VM manifest of tiny disks (20 MiB virtual, 4 KiB of data each);
   goal <= 300 MiB.
Prints the ratios and writes WORKDIR/bench_bulk.json. Not a test: run it by hand.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from azurite_harness import fresh_azurite, process_cpu_s, write_scattered  # noqa: E402
from own_usage import run_with_usage  # noqa: E402

from azlift.bulk.toml_writer import to_toml  # noqa: E402

MIB = 1024 * 1024
AZLIFT = Path(sys.executable).parent / "azlift"
BULK_MODES = (("threads", [], "pages"), ("processes", ["--processes"], "pages"),
              ("full-verify", [], "full"))


def run(args: list[str], endpoint: str, state: Path) -> str:
    """Run azlift with the emulator endpoint; return its stdout."""
    env = {**os.environ, "AZLIFT_EMULATOR_ENDPOINT": endpoint, "AZLIFT_STATE_DIR": str(state)}
    done = subprocess.run([str(AZLIFT), *args], capture_output=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"azlift {' '.join(args[:2])} failed ({done.returncode}): "
                         f"{done.stderr.decode(errors='replace')[-2000:]}")
    return done.stdout.decode()


def peak_rss_of(args: list[str], endpoint: str, state: Path) -> tuple[float, int, str]:
    """Wall seconds, peak RSS in bytes and stdout of one azlift command."""
    env = {**os.environ, "AZLIFT_EMULATOR_ENDPOINT": endpoint, "AZLIFT_STATE_DIR": str(state)}
    done = run_with_usage([str(AZLIFT), *args], capture_output=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"azlift {' '.join(args[:2])} failed: "
                         f"{done.stderr.decode(errors='replace')[-2000:]}")
    return done.wall_s, done.peak_rss, done.stdout.decode()


def bulk_manifest(path: Path, disks: list[Path], container: str, max_disks: int,
                  verify: str = "pages") -> Path:
    document = {"schema": "azlift.bulk/1",
                "defaults": {"destination": container, "emulator": True, "threads": 8,
                             "verify": verify},
                "source": [{"name": "bench", "max_disks": max_disks}],
                "vm": [{"id": f"vm{n:04d}", "source": "bench",
                        "disk": [{"path": str(disk), "lun": 0}]} for n, disk in enumerate(disks)]}
    path.write_text(to_toml(document))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=ROOT / ".bench-bulk")
    parser.add_argument("--disks", type=int, default=16)
    parser.add_argument("--virtual-mib", type=int, default=1024)
    parser.add_argument("--data-mib", type=int, default=64)
    parser.add_argument("--max-disks", type=int, default=4)
    parser.add_argument("--rss-vms", type=int, default=1000)
    options = parser.parse_args()
    workdir = options.workdir
    shutil.rmtree(workdir, ignore_errors=True)
    (workdir / "disks").mkdir(parents=True)
    disks = [write_scattered(workdir / "disks" / f"d{n:02d}.raw", options.virtual_mib * MIB,
                             options.data_mib * MIB, 256 * 1024, seed=n)
             for n in range(options.disks)]
    results: dict = {"disks": options.disks, "virtual_mib": options.virtual_mib,
                     "data_mib": options.data_mib, "max_disks": options.max_disks}

    with fresh_azurite(workdir) as (endpoint, _):
        out = run(["upload", str(disks[0]), "bench/single.vhd", "--emulator", "--json"],
                        endpoint, workdir / "state-single")
        summary = json.loads(out)
        results["single_throughput"] = summary["data_bytes_sent"] / summary["duration_s"]
        results["single_data_bytes"] = summary["data_bytes_sent"]
    with fresh_azurite(workdir) as (endpoint, azurite):
        cpu = process_cpu_s(azurite)
        started = time.monotonic()
        for disk in disks:
            run(["upload", str(disk), f"bench/{disk.stem}.vhd", "--emulator", "--json"],
                endpoint, workdir / "state-loop")
        results["loop_s"] = time.monotonic() - started
        results["loop_azurite_cpu_s"] = process_cpu_s(azurite) - cpu
    for mode, extra, verify in BULK_MODES:
        with fresh_azurite(workdir) as (endpoint, azurite):
            plan = bulk_manifest(workdir / f"plan-{mode}.toml", disks, "bench", options.max_disks,
                                 verify)
            cpu = process_cpu_s(azurite)
            wall, _, out = peak_rss_of(["bulk", "run", str(plan), "--json", "-q", *extra],
                                       endpoint, workdir / f"state-{mode}")
            results[f"bulk_{mode}_azurite_cpu_s"] = process_cpu_s(azurite) - cpu
            report = json.loads(out)
            assert report["totals"]["done"] == options.disks, report["totals"]
            results[f"bulk_{mode}_s"] = wall
            results[f"bulk_{mode}_bytes"] = report["totals"]["bytes_sent"]
    total = results["single_data_bytes"] * options.disks
    results["ideal_s"] = total / results["single_throughput"]
    if options.rss_vms:
        tiny = workdir / "tiny"
        tiny.mkdir()
        paths = []
        for n in range(options.rss_vms):
            path = tiny / f"t{n:04d}.raw"
            with open(path, "wb") as handle:
                handle.truncate(20 * MIB)
                handle.seek((n * 4096) % (16 * MIB))
                handle.write(os.urandom(4096))
            paths.append(path)
        with fresh_azurite(workdir) as (endpoint, _):
            plan = bulk_manifest(workdir / "plan-rss.toml", paths, "bench", options.max_disks)
            wall, rss, out = peak_rss_of(["bulk", "run", str(plan), "--json", "-q"], endpoint,
                                         workdir / "state-rss")
            assert json.loads(out)["totals"]["done"] == options.rss_vms
            results["rss_vms"] = options.rss_vms
            results["rss_bytes"] = rss
            results["rss_wall_s"] = wall
    (workdir / "bench_bulk.json").write_text(json.dumps(results, indent=2))
    report_results(results)


def report_results(r: dict) -> None:
    mib = r["single_throughput"] / MIB
    print(f"{r['disks']} disks, {r['virtual_mib']} MiB virtual, {r['data_mib']} MiB data each; "
          f"max_disks {r['max_disks']}")
    print(f"  single azlift upload       {mib:8.1f} MiB/s of data")
    print(f"  ideal (data / single rate) {r['ideal_s']:8.1f} s")
    print(f"  shell loop of uploads      {r['loop_s']:8.1f} s   Azurite CPU "
          f"{r['loop_azurite_cpu_s']:.1f} s")
    for mode, _, _ in BULK_MODES:
        wall = r[f"bulk_{mode}_s"]
        print(f"  bulk run ({mode:<11})   {wall:8.1f} s   {wall / r['ideal_s']:.2f} x ideal "
              f"(goal <= 1.25)   {wall / r['loop_s']:.2f} x loop (goal <= 0.5)   Azurite CPU "
              f"{r[f'bulk_{mode}_azurite_cpu_s']:.1f} s")
    if "rss_bytes" in r:
        print(f"  coordinator peak RSS, {r['rss_vms']} VMs: {r['rss_bytes'] / MIB:.0f} MiB "
              f"(goal <= 300) in {r['rss_wall_s']:.0f} s")


if __name__ == "__main__":
    main()

"""The main job end to end on a sample disk this script makes (run by scripts/demo.sh).

1. make a sample disk: 100 MiB + 3 sectors of raw, MBR with a bootable Linux partition
   (ext4 signature) and scattered data — the kind of disk KVM exports;
2. azlift vhd inspect / check (not ready: size is not a whole MiB, no footer);
3. azlift vhd convert → an Azure-ready fixed VHD, checked again (ready);
4. azlift vhd fix on a copy of the raw disk (in place);
5. start the local storage emulator (Azurite, from .tools/), azlift upload --emulator,
   azlift upload verify, stop the emulator.
Everything lands in demo/ inside the project folder.
"""
from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "demo"
AZLIFT = [str(ROOT / ".venv" / "bin" / "azlift")]
MIB = 1024 * 1024


def banner(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


def run(*args: str, ok: tuple[int, ...] = (0,), env: dict[str, str] | None = None) -> int:
    print("$ azlift " + " ".join(args), flush=True)
    code = subprocess.run(AZLIFT + list(args), env=env).returncode
    if code not in ok:
        sys.exit(f"demo: `azlift {' '.join(args)}` exited {code}, expected {ok}")
    return code


def make_sample_disk(path: Path) -> None:
    """A raw disk a hypervisor could have exported: MBR, one bootable ext4 partition."""
    size = 100 * MIB + 3 * 512
    start_lba, sectors = 2048, (size // 512) - 2048
    with open(path, "wb") as disk:
        disk.truncate(size)
        mbr = bytearray(512)
        mbr[0:3] = b"\xeb\x63\x90"  # a jump, as boot code starts
        entry = struct.pack("<B3sB3sII", 0x80, b"\x00\x02\x00", 0x83, b"\xff\xff\xff",
                            start_lba, sectors)
        mbr[446:462] = entry
        mbr[510:512] = b"\x55\xaa"
        disk.write(mbr)
        superblock = bytearray(1024)
        struct.pack_into("<I", superblock, 4, sectors // 8)  # blocks count (4 KiB blocks)
        struct.pack_into("<H", superblock, 56, 0xEF53)  # ext magic
        struct.pack_into("<I", superblock, 92, 0x4)  # has_journal → ext3/4
        struct.pack_into("<I", superblock, 96, 0x2C2)  # incompat: extents, 64bit, flex_bg
        disk.seek(start_lba * 512 + 1024)
        disk.write(superblock)
        for n in range(12):  # scattered "files"
            disk.seek(start_lba * 512 + (n * 7 + 3) * MIB)
            disk.write(os.urandom(64 * 1024))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_azurite(port: int) -> subprocess.Popen[bytes]:
    binary = ROOT / ".tools" / "node_modules" / ".bin" / "azurite-blob"
    process = subprocess.Popen(
        [str(binary), "--blobHost", "127.0.0.1", "--blobPort", str(port),
         "--inMemoryPersistence", "--skipApiVersionCheck", "--loose", "--disableTelemetry"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=DEMO)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process
        except OSError:
            if process.poll() is not None:
                sys.exit("demo: Azurite exited while starting")
            time.sleep(0.2)
    process.kill()
    sys.exit("demo: Azurite did not start within 30 s")


def main() -> None:
    if DEMO.exists():
        shutil.rmtree(DEMO)
    DEMO.mkdir()
    raw = DEMO / "sample-disk.raw"
    fixed = DEMO / "sample-disk-azure.vhd"
    make_sample_disk(raw)
    print(f"made {raw.relative_to(ROOT)}: {raw.stat().st_size} bytes, "
          f"{raw.stat().st_blocks * 512} allocated")

    banner("1. inspect the exported disk")
    run("vhd", "inspect", str(raw))
    banner("2. check it against Azure's rules (expected: not ready)")
    run("vhd", "check", str(raw), "--os-disk", ok=(1,))
    banner("3. convert it to an Azure-ready fixed VHD, sparse")
    run("vhd", "convert", str(raw), str(fixed))
    run("vhd", "check", str(fixed), "--os-disk")
    banner("4. or fix a copy in place, without copying data")
    copy = DEMO / "sample-disk-copy.raw"
    subprocess.run(["cp", "--sparse=always", str(raw), str(copy)], check=True)
    run("vhd", "fix", str(copy))
    run("vhd", "check", str(copy), "--os-disk")

    banner("5. upload to the local storage emulator, then verify")
    port = free_port()
    azurite = start_azurite(port)
    env = dict(os.environ, AZLIFT_EMULATOR_ENDPOINT=f"http://127.0.0.1:{port}/devstoreaccount1")
    url = f"http://127.0.0.1:{port}/devstoreaccount1/vhds/sample-disk.vhd"
    try:
        run("upload", str(raw), url, "--emulator", "--content-md5", env=env)
        run("upload", "verify", str(raw), url, "--emulator", env=env)
    finally:
        azurite.terminate()
        azurite.wait(timeout=10)
    banner("done: the disk is Azure-ready and uploaded (to the emulator)")


if __name__ == "__main__":
    main()

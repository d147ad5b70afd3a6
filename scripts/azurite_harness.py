"""The Azurite harness the upload benchmarks share: a fresh in-memory emulator per
measurement (over HTTPS with a certificate, when given), sparse test disks, a bare
`upload_page` loop as the emulator's floor, and CPU accounting for client and emulator.
Used by bench_upload.py, bench_formats.py and bench_bulk.py; not run by itself."""
from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from azure.storage.blob import BlobClient, BlobServiceClient  # noqa: E402

from azlift.upload.auth import EMULATOR_ACCOUNT, EMULATOR_KEY  # noqa: E402

MIB = 1024 * 1024
GIB = 1024 * MIB
AZURITE = ROOT / ".tools" / "node_modules" / ".bin" / "azurite-blob"
CREDENTIAL = {"account_name": EMULATOR_ACCOUNT, "account_key": EMULATOR_KEY}


def start_azurite(workdir: Path, cert: Path | None = None) -> tuple[subprocess.Popen, str]:
    """Azurite in memory on a free port; over HTTPS with ``cert`` (and its key beside it)."""
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port),
         "--inMemoryPersistence", "--skipApiVersionCheck", "--loose", "--disableTelemetry",
         *(["--cert", str(cert), "--key", str(cert.with_suffix(".key"))] if cert else [])],
        cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                scheme = "https" if cert else "http"
                return process, f"{scheme}://127.0.0.1:{port}/{EMULATOR_ACCOUNT}"
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("azurite did not start")


def write_scattered(path: Path, virtual: int, data: int, piece: int, seed: int = 42) -> Path:
    """A sparse raw disk of ``virtual`` bytes with ``data`` bytes of random pieces."""
    rng = random.Random(seed)
    slots = rng.sample(range(min(virtual, 4 * GIB) // piece), data // piece)
    with open(path, "wb") as handle:
        handle.truncate(virtual)
        for slot in sorted(slots):
            handle.seek(slot * piece)
            handle.write(rng.randbytes(piece))
    return path


def bare_upload_s(endpoint: str, container: str, name: str, size: int,
                  requests: list[tuple[int, int]], threads: int) -> float:
    """Wall seconds of bare `upload_page` calls, ``threads`` at once, sending ``requests``
    ((offset, length), at most 4 MiB each) from one in-memory buffer with no checksum to a
    new page blob of ``size`` bytes: what this Azurite takes from a client that does
    nothing else."""
    client = BlobClient.from_blob_url(f"{endpoint}/{container}/{name}", credential=CREDENTIAL)
    client.create_page_blob(size=size)
    buffer = os.urandom(4 * MIB)

    def put(request: tuple[int, int]) -> None:
        offset, length = request
        page = buffer if length == len(buffer) else buffer[:length]
        client.upload_page(page, offset=offset, length=length)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(put, requests))
    wall = time.perf_counter() - started
    client.delete_blob()
    client.close()
    return wall


def client_cpu_s() -> float:
    """CPU seconds of this process so far (every thread, user + system)."""
    import resource
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu_s(process: subprocess.Popen) -> float:
    """CPU seconds of a child still running (Linux /proc), for Azurite's share."""
    fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def fresh_azurite(workdir: Path,
                  cert: Path | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """A new in-memory Azurite with a "bench" container: every measurement starts equal."""
    process, endpoint = start_azurite(workdir, cert)
    trust = {"connection_verify": str(cert)} if cert else {}
    try:
        BlobServiceClient(endpoint, credential=CREDENTIAL, **trust).create_container("bench")
        yield endpoint, process
    finally:
        process.terminate()
        process.wait(timeout=30)

"""Shared pieces of the upload tests: source images of every format, targets on Azurite,
and a request counter that sees what goes on the wire."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.azurite import Azurite
from tests.vhd.images import (
    build_differencing_vhd,
    build_dynamic_vhd,
    expected_bytes,
    make_vhdx,
    scattered_chunks,
    write_raw,
)
from azlift.upload.target import BlobPageTarget, RetrySettings
from azlift.vhd.conversion import convert

MIB = 1024 * 1024
FAST_RETRY = RetrySettings(total=6, initial_backoff=0.05, increment_base=0.1, jitter=0.01,
                           connection_timeout=5, read_timeout=10)
SOURCE_KINDS = ("raw", "vhd-fixed", "vhd-dynamic", "vhd-differencing", "vhdx")


@dataclass
class Source:
    path: Path
    size: int  # guest-visible size
    chunks: list  # (offset, bytes): every non-zero byte of the guest disk

    @property
    def data_bytes(self) -> int:
        return sum(len(data) for _, data in self.chunks)

    def guest_bytes(self) -> bytes:
        return expected_bytes(self.size, self.chunks)


def make_source(kind: str, directory: Path, size: int = 24 * MIB + 4096, count: int = 60,
                seed: int = 7) -> Source:
    """A disk of ``kind`` holding ``count`` scattered random chunks (zeros elsewhere)."""
    chunks = scattered_chunks(size, count, seed=seed, align=512 if "vhd" in kind else 1)
    raw = write_raw(directory / f"{kind}-source.raw", size, chunks)
    if kind == "raw":
        return Source(raw, size, chunks)
    if kind == "vhd-fixed":
        dest = directory / "fixed.vhd"
        convert(str(raw), str(dest))
        return Source(dest, -(-size // MIB) * MIB, chunks)
    if kind == "vhd-dynamic":
        return Source(build_dynamic_vhd(directory / "dynamic.vhd", size, chunks), size, chunks)
    if kind == "vhd-differencing":
        half = len(chunks) // 2
        parent = build_dynamic_vhd(directory / "parent.vhd", size, chunks[:half])
        child = build_differencing_vhd(directory / "child.vhd", parent, chunks[half:])
        return Source(child, size, chunks)
    if kind == "vhdx":
        return Source(make_vhdx(raw, directory / "disk.vhdx"), size, chunks)
    raise ValueError(kind)


@dataclass
class WireCounter:
    """Counts Put Page requests and their body bytes, on every attempt (retries too)."""

    put_pages: int = 0
    put_page_bytes: int = 0
    missing_checksum: int = 0  # neither x-ms-content-crc64 nor Content-MD5
    lengths: list = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request) -> None:
        http = request.http_request
        if "comp=page" not in http.url or http.method != "PUT":
            return
        if http.headers.get("x-ms-page-write") != "update":
            return
        length = int(http.headers.get("Content-Length", 0))
        with self._lock:
            self.put_pages += 1
            self.put_page_bytes += length
            self.lengths.append(length)
            if not (http.headers.get("x-ms-content-crc64") or http.headers.get("Content-MD5")):
                self.missing_checksum += 1


def blob_target(azurite: Azurite, container: str | None = None, name: str = "disk.vhd",
                **kwargs) -> BlobPageTarget:
    container = container or azurite.new_container()
    kwargs.setdefault("retry", FAST_RETRY)
    return BlobPageTarget(azurite.blob_url(container, name),
                          {"account_name": azurite.account_name,
                           "account_key": azurite.account_key}, **kwargs)


def converted_bytes(source: Path, directory: Path) -> bytes:
    """The fixed VHD `vhd convert` writes for ``source``."""
    dest = directory / (source.name + ".converted.vhd")
    convert(str(source), str(dest), force=True)
    return dest.read_bytes()

"""Inflating compressed grains (VMDK) and clusters (qcow2): ISA-L when it is installed,
else the standard library's zlib.

Why: ISA-L (python-isal) inflates the same deflate streams about 1.5 times faster than
zlib on one core, and both release the GIL, so the worker threads that inflate grains
run in parallel either way. The output is the same bytes; only the CPU spent differs.
"""
from __future__ import annotations

import zlib
from typing import Any

try:  # an optional speed-up; every caller works without it
    from isal import isal_zlib as _isal
except ImportError:  # pragma: no cover - exercised by forcing ENGINE to zlib in tests
    _isal = None

ENGINE: Any = _isal if _isal is not None else zlib
InflateError: tuple[type[Exception], ...] = (zlib.error,) + (
    (_isal.error,) if _isal is not None else ())


def engine_name() -> str:
    """"isal" or "zlib": which library inflates (for describe and the benchmark)."""
    return "isal" if ENGINE is not zlib else "zlib"


def inflate_zlib(data: bytes | memoryview, size: int) -> bytes:
    """A whole zlib stream (RFC 1950 header and checksum) of at most ``size`` bytes. No
    more than ``size`` + 1 bytes are ever made: a stream that would inflate further (a
    grain of a few KiB can hold GiBs of zeros) is an error, as a cut-off one is."""
    inflater = ENGINE.decompressobj()
    out = inflater.decompress(data, size + 1)
    if len(out) > size:
        raise zlib.error(f"the stream inflates to more than {size} bytes")
    if not inflater.eof:
        raise zlib.error("incomplete or truncated stream")
    return out


def inflate_zlib_prefix(data: bytes | memoryview, size: int) -> bytes:
    """At most ``size`` bytes from the zlib stream at the start of ``data`` (what follows
    it is ignored: a grain without a marker has no length of its own)."""
    return ENGINE.decompressobj().decompress(data, size)


def inflate_raw(data: bytes | memoryview, size: int) -> bytes:
    """At most ``size`` bytes of raw deflate (no header; a qcow2 cluster, whose last
    sector may hold the start of the next one)."""
    return ENGINE.decompressobj(-15).decompress(data, size)

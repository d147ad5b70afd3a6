"""GUIDs as disk formats store them, without the uuid module: importing uuid loads
platform (about 5 ms of every command's start-up) for host lookups azlift never makes.
The tests hold each function to uuid's own answer.

VHD footers store a GUID's 16 bytes in order (big-endian); GPT and VHDX store the first
three groups little-endian ("mixed-endian", uuid's ``bytes_le``)."""
from __future__ import annotations

import os

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def text(raw: bytes) -> str:
    """The canonical text of a GUID stored in order (uuid.UUID(bytes=raw))."""
    digits = _sixteen(raw).hex()
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def text_le(raw: bytes) -> str:
    """The canonical text of a mixed-endian GUID (uuid.UUID(bytes_le=raw))."""
    return text(_swap_groups(_sixteen(raw)))


def parse(value: str) -> bytes:
    """The 16 bytes, in order, of a GUID written as uuid accepts it: 32 hex digits, with
    or without hyphens, braces or a urn:uuid: prefix. ValueError for anything else."""
    digits = value.replace("urn:", "").replace("uuid:", "").strip("{}").replace("-", "")
    if len(digits) != 32 or not _HEX_DIGITS.issuperset(digits):
        raise ValueError(f"expected a GUID (32 hex digits), found {value!r}")
    return bytes.fromhex(digits)


def parse_le(value: str) -> bytes:
    """``parse``, stored mixed-endian (uuid.UUID(value).bytes_le)."""
    return _swap_groups(parse(value))


def random_guid() -> bytes:
    """A fresh random (version 4) GUID's bytes, in order (uuid.uuid4().bytes)."""
    return _versioned(os.urandom(16), 4)


def name_guid(namespace: bytes, name: str) -> bytes:
    """The name-based (version 5, SHA-1) GUID of ``name`` in ``namespace``, in order
    (uuid.uuid5(UUID(bytes=namespace), name).bytes): the same name, the same GUID."""
    from hashlib import sha1  # here: only a source without an id of its own needs it

    return _versioned(sha1(_sixteen(namespace) + name.encode()).digest()[:16], 5)


def _versioned(raw: bytes, version: int) -> bytes:
    """``raw`` with the RFC 4122 variant and ``version`` bits set."""
    marked = bytearray(raw)
    marked[6] = (marked[6] & 0x0F) | (version << 4)
    marked[8] = (marked[8] & 0x3F) | 0x80
    return bytes(marked)


def _swap_groups(raw: bytes) -> bytes:
    """In-order bytes <-> mixed-endian bytes (the same swap both ways)."""
    return raw[3::-1] + raw[5:3:-1] + raw[7:5:-1] + raw[8:]


def _sixteen(raw: bytes) -> bytes:
    raw = bytes(memoryview(raw))  # memoryview: a number is a TypeError, not zero bytes
    if len(raw) != 16:
        raise ValueError(f"expected the 16 bytes of a GUID, found {len(raw)}")
    return raw

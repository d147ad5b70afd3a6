"""Stream-optimized VMDKs read front to back, without seeking: from a pipe, or from an
OVA arriving on a pipe.

``VmdkStream`` reads the header (the capacity, so the target can be made first), skips
the metadata the header says precedes the data, then walks the markers: a grain marker
is a grain (guest sector, compressed bytes), grain table / directory / footer markers are
skipped, the end-of-stream marker ends it. Grains come out still compressed, so whoever
consumes them inflates them in parallel (``Grain.inflate``; the inflater drops the GIL). Both
layouts walk the same way: qemu's (directory and tables before the grains) and VMware's
(tables between grains, directory and footer at the end).

``open_ova_stream`` finds one disk of an OVA read as a tar stream (the OVF must come first,
as DSP0243 asks), and checks the member's manifest digest as its bytes go by.
"""
from __future__ import annotations

import gzip
import hashlib
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from ._inflate import InflateError, inflate_zlib
from ._ovf_structs import (
    MAX_MANIFEST_BYTES,
    MAX_OVF_BYTES,
    OvfDisk,
    OvfError,
    parse_manifest,
    parse_ovf,
)
from ._vmdk_structs import (
    GRAIN_MARKER_SIZE,
    HEADER_SIZE,
    MARKER_EOS,
    MARKER_NAMES,
    MARKER_STRUCT,
    MAX_DESCRIPTOR_BYTES,
    SECTOR,
    SparseHeader,
    header_problem,
)
from .errors import ChecksumError, ImageFormatError, TruncatedImageError, UnsupportedImageError
from .ova import ZIP_MAGIC, check_capacity, choose_disk, chunk_index
from .vmdk import ddb_uuid, decode_descriptor, refuse_redo_log, refuse_unreadable

READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class Grain:
    """One grain as it came: guest ``offset``, compressed ``data``, ``length`` to keep."""

    offset: int
    data: bytes
    length: int
    name: str

    def inflate(self) -> bytes:
        """The grain's guest bytes (``length`` of them)."""
        try:
            out = inflate_zlib(self.data, self.length)
        except InflateError as error:
            raise ImageFormatError(f"{self.name}: the grain for guest offset {self.offset} "
                                   f"does not inflate ({error})") from error
        if len(out) < self.length:
            raise ImageFormatError(f"{self.name}: the grain for guest offset {self.offset} "
                                   f"inflates to {len(out)} bytes, expected {self.length}")
        return out[:self.length]


class ExactReader:
    """Exact reads from a stream, counting what went by (and hashing it, when asked)."""

    def __init__(self, stream: IO[bytes], name: str, digest: Any = None) -> None:
        self.stream = stream
        self.name = name
        self.position = 0
        self.digest = digest

    def read(self, length: int) -> bytes:
        parts, got = [], 0
        while got < length:
            chunk = self.stream.read(min(length - got, READ_CHUNK))
            if not chunk:
                raise TruncatedImageError(
                    f"{self.name}: the stream ended at byte {self.position + got}, expected "
                    f"{length - got} more")
            parts.append(chunk)
            got += len(chunk)
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        self.position += length
        if self.digest is not None:
            self.digest.update(data)
        return data

    def drain(self) -> None:
        """Read the rest (so a digest covers the whole member)."""
        while True:
            chunk = self.stream.read(READ_CHUNK)
            if not chunk:
                return
            self.position += len(chunk)
            if self.digest is not None:
                self.digest.update(chunk)


class VmdkStream:
    """A stream-optimized VMDK read once, front to back."""

    format = "vmdk-streamOptimized"

    def __init__(self, reader: ExactReader, name: str) -> None:
        self.path = name
        self.reader = reader
        head = reader.read(HEADER_SIZE)
        refuse_redo_log(name, head)
        header = SparseHeader.unpack(head)
        problem = header_problem(header)
        if problem is not None:
            raise ImageFormatError(f"{name}: {problem}")
        if not (header.compressed and header.markers):
            raise UnsupportedImageError(
                f"{name}: not a stream-optimized VMDK (expected compressed grains with "
                f"markers, flags 0x{header.flags:x}); only those can be read from a pipe")
        self.header = header
        self.virtual_size = header.capacity * SECTOR
        preamble = reader.read(max(header.overhead * SECTOR - HEADER_SIZE, 0))
        start = header.descriptor_offset * SECTOR - HEADER_SIZE
        size = min(header.descriptor_size * SECTOR, MAX_DESCRIPTOR_BYTES)
        descriptor = decode_descriptor(name, preamble[start:start + size]) \
            if header.descriptor_offset and start >= 0 else None
        if descriptor is not None:
            refuse_unreadable(name, descriptor)
        self.unique_id = ddb_uuid(descriptor.keys.get("ddb.uuid", "")) if descriptor else None

    def grains(self) -> Iterator[Grain]:
        """Every grain in file order, until the end-of-stream marker."""
        grain_bytes, size_limit = self.header.grain_bytes, 2 * self.header.grain_bytes + 4096
        name, reader = self.path, self.reader
        while True:
            sector = reader.read(SECTOR)
            value, size, kind = MARKER_STRUCT.unpack(sector[:MARKER_STRUCT.size])
            if size:
                offset = value * SECTOR
                if offset >= self.virtual_size or value % self.header.grain_size:
                    raise ImageFormatError(
                        f"{name}: a grain marker at byte {reader.position - SECTOR} names "
                        f"guest sector {value} (expected a grain start below "
                        f"{self.header.capacity})")
                if size > size_limit:
                    raise ImageFormatError(
                        f"{name}: a grain marker at byte {reader.position - SECTOR} gives "
                        f"a compressed size of {size} (expected at most {size_limit})")
                rest = -(-(GRAIN_MARKER_SIZE + size) // SECTOR) * SECTOR - SECTOR
                body = sector[GRAIN_MARKER_SIZE:] + (reader.read(rest) if rest > 0 else b"")
                yield Grain(offset, body[:size],
                            min(grain_bytes, self.virtual_size - offset), name)
            elif kind == MARKER_EOS:
                return
            elif kind in MARKER_NAMES:
                reader.read(value * SECTOR)  # the table, directory or footer it announces
            else:
                raise ImageFormatError(
                    f"{name}: unknown marker type {kind} at byte {reader.position - SECTOR} "
                    f"(expected a grain, grain table, grain directory, footer or "
                    f"end-of-stream marker)")

    def close(self) -> None:
        pass


def open_vmdk_stream(stream: IO[bytes], name: str = "-") -> VmdkStream:
    """A stream-optimized VMDK arriving on ``stream`` (stdin, a socket, a member)."""
    return VmdkStream(ExactReader(stream, name), name)


class OvaDiskStream(VmdkStream):
    """One disk of an OVA read as a tar stream; its manifest digest is checked at the end
    over the member as stored (``member``: the reader of the member's own bytes, the
    same as ``reader`` unless the member is gzip-compressed)."""

    def __init__(self, archive: tarfile.TarFile, member: ExactReader, reader: ExactReader,
                 name: str, expected: tuple[str, str] | None, disk: OvfDisk) -> None:
        self.archive = archive
        self.member = member
        self.expected = expected
        super().__init__(reader, name)
        note = check_capacity(name, disk, self.virtual_size)
        self.source_notes = (("capacity_mismatch", note),) if note else ()

    def grains(self) -> Iterator[Grain]:
        yield from super().grains()
        self.member.drain()
        digest = self.member.digest
        if self.expected is not None and digest.hexdigest() != self.expected[1]:
            raise ChecksumError(
                f"{self.path}: {self.expected[0].upper()} {digest.hexdigest()}, the manifest "
                f"says {self.expected[1]} (the OVA was damaged on the way; what was written "
                f"from it must not be used)")

    def close(self) -> None:
        self.archive.close()


class _Tap:
    """A file object over an ExactReader's stream that keeps its count and digest, so a
    gzip reader on top still lets the digest see the member's stored bytes."""

    def __init__(self, reader: ExactReader) -> None:
        self.reader = reader

    def read(self, size: int = -1) -> bytes:
        data = self.reader.stream.read(READ_CHUNK if size is None or size < 0 else size)
        self.reader.position += len(data)
        if self.reader.digest is not None:
            self.reader.digest.update(data)
        return data


def open_ova_stream(stream: IO[bytes], disk: int | None, name: str = "-") -> OvaDiskStream:
    """Disk ``disk`` of an OVA arriving on ``stream``: the OVF first, then the members up
    to the disk's (a manifest is used when it comes before the disk, as DSP0243 orders).
    A disk split into chunk members is read across them, each chunk's digest checked."""
    peek = getattr(stream, "peek", None)
    if peek is not None and peek(4)[:4] == ZIP_MAGIC:
        raise ImageFormatError(f"{name}: a zip archive, expected an OVA (a tar stream, as "
                               f"OVF packages are); unzip it and send the .ova or .vmdk inside")
    try:
        archive = tarfile.open(fileobj=stream, mode="r|")
        first = archive.next()
    except (tarfile.TarError, EOFError) as error:
        raise ImageFormatError(f"{name}: expected an OVA (a tar stream) ({error})") from error
    if first is None or not first.name.lower().endswith(".ovf") or first.size > MAX_OVF_BYTES:
        raise ImageFormatError(f"{name}: expected the OVF descriptor as the first member of "
                               f"the OVA stream, found {first.name if first else 'nothing'}")
    try:
        chosen = choose_disk(name, parse_ovf(_member_bytes(archive, first)), disk)
        if chosen.file is None:
            raise UnsupportedImageError(f"{name}: disk {chosen.number} has no file")
        manifest: dict[str, tuple[str, str]] = {}
        for member in archive:
            if member.name.lower().endswith(".mf") and member.size <= MAX_MANIFEST_BYTES:
                manifest = parse_manifest(_member_bytes(archive, member))
            elif member.name == chosen.file.href or (
                    chosen.file.chunk_size and chunk_index(member.name, chosen.file.href) == 0):
                break
        else:
            raise ImageFormatError(f"{name}: the OVA stream ended before disk "
                                   f"{chosen.number}'s file {chosen.file.href}")
        if chosen.file.chunk_size:
            handle: Any = ChunkChain(archive, member, chosen.file.href,
                                     chosen.file.chunk_size, manifest, name,
                                     chosen.file.size)
        else:
            handle = archive.extractfile(member)
    except OvfError as error:
        raise ImageFormatError(f"{name}: {first.name}: {error}") from error
    except (tarfile.TarError, EOFError) as error:
        raise ImageFormatError(f"{name}: the tar stream is damaged ({error})") from error
    if handle is None:
        raise UnsupportedImageError(f"{name}: member {member.name} is not a regular file")
    expected = None if chosen.file.chunk_size else manifest.get(member.name)
    label = f"{name}!{chosen.file.href if chosen.file.chunk_size else member.name}"
    stored = ExactReader(handle, label, hashlib.new(expected[0]) if expected else None)
    reader = stored
    if chosen.file.compression == "gzip":
        reader = ExactReader(gzip.GzipFile(fileobj=_Tap(stored), mode="rb"), label)  # type: ignore[arg-type]
    return OvaDiskStream(archive, stored, reader, label, expected, chosen)


class ChunkChain:
    """The chunk members of a split disk read one after another from the tar stream, as
    one file; each chunk is checked against its manifest digest when it ends."""

    def __init__(self, archive: tarfile.TarFile, first: tarfile.TarInfo, href: str,
                 chunk_size: int, manifest: dict[str, tuple[str, str]], name: str,
                 total: int | None = None) -> None:
        self.archive, self.href, self.chunk_size = archive, href, chunk_size
        self.manifest, self.name, self.total = manifest, name, total
        self.index = self.held = 0
        self._open(first)

    def _open(self, member: tarfile.TarInfo) -> None:
        if chunk_index(member.name, self.href) != self.index:
            raise ImageFormatError(f"{self.name}: expected chunk {self.index} of {self.href} "
                                   f"next in the OVA stream, found {member.name}")
        if member.size > self.chunk_size:
            raise ImageFormatError(f"{self.name}: chunk member {member.name} holds "
                                   f"{member.size} bytes, expected at most {self.chunk_size} "
                                   f"(ovf:chunkSize)")
        handle = self.archive.extractfile(member)
        if handle is None:
            raise UnsupportedImageError(f"{self.name}: member {member.name} is not a regular "
                                        f"file")
        self.member, self.handle = member, handle
        self.held += member.size
        self.expected = self.manifest.get(member.name)
        self.digest = hashlib.new(self.expected[0]) if self.expected else None

    def read(self, size: int = -1) -> bytes:
        while True:
            data = self.handle.read(READ_CHUNK if size is None or size < 0 else size)
            if data:
                if self.digest is not None:
                    self.digest.update(data)
                return data
            self._check_digest()
            following = None if self.member.size < self.chunk_size else self.archive.next()
            if following is None or chunk_index(following.name, self.href) is None:
                return self._end()  # a short chunk is the last one, or no chunk follows
            self.index += 1
            self._open(following)

    def _end(self) -> bytes:
        if self.total is not None and self.held != self.total:
            raise ImageFormatError(
                f"{self.name}: the chunks of {self.href} hold {self.held} bytes, the OVF "
                f"says {self.total} (ovf:size); a chunk is missing or cut short")
        return b""

    def _check_digest(self) -> None:
        if self.expected is None or self.digest is None:
            return
        found, self.digest = self.digest.hexdigest(), None
        if found != self.expected[1]:
            raise ChecksumError(
                f"{self.name}!{self.member.name}: {self.expected[0].upper()} {found}, the "
                f"manifest says {self.expected[1]} (the OVA was damaged on the way; what "
                f"was written from it must not be used)")


def _member_bytes(archive: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = archive.extractfile(member)
    if handle is None:
        raise ImageFormatError(f"member {member.name} is not a regular file")
    return handle.read()

"""Opening a qcow2 file: the header, its feature bits, header extensions, the L1 table,
the backing file's name and the external data file, each checked against the file
before anything is read through them (the ``Qcow2Image`` half that runs once)."""
from __future__ import annotations

import os
import struct
from typing import TYPE_CHECKING

from ._qcow2_structs import (
    COMPRESSION_TYPES,
    COMPRESSION_ZLIB,
    CRYPT_METHODS,
    EXT_BACKING_FORMAT,
    EXT_DATA_FILE,
    EXT_FEATURE_NAMES,
    INCOMPAT_COMPRESSION,
    INCOMPAT_CORRUPT,
    INCOMPAT_KNOWN,
    MAGIC,
    OFFSET_MASK,
    V2_HEADER_LENGTH,
    V3_HEADER_LENGTH,
    Header,
    extensions_end,
    feature_names,
    header_length_needed,
    header_problem,
    l1_entries_needed,
    parse_extensions,
)
from .errors import (
    ImageFormatError,
    ImageIOError,
    TruncatedImageError,
    UnsupportedImageError,
)
from .qcow2_chain import has_protocol, resolve_relative
from .raw import FileImage

if TYPE_CHECKING:
    import numpy as np


class Qcow2Header(FileImage):
    """Reads and checks what a qcow2 image says about itself (mixed into Qcow2Image)."""

    def _fail(self, error: type[Exception], message: str) -> Exception:
        return error(f"{self.path}: {message}")

    def _read_header(self) -> Header:
        raw = self.pread_upto(0, V3_HEADER_LENGTH + 8)
        if raw[:4] != MAGIC:
            raise self._fail(ImageFormatError, f"expected the qcow2 magic 'QFI\\xfb' at offset "
                             f"0, found {raw[:4]!r}")
        if len(raw) < 8:
            raise self._fail(TruncatedImageError, f"the file ends inside the qcow2 header "
                             f"({len(raw)} bytes)")
        (version,) = struct.unpack_from(">I", raw, 4)
        if version == 1:
            raise self._fail(UnsupportedImageError,
                             "qcow version 1 image: azlift reads qcow2 (versions 2 and 3); "
                             "convert it first with `qemu-img convert -O qcow2`")
        if version not in (2, 3):
            raise self._fail(UnsupportedImageError,
                             f"qcow2 version {version}: azlift reads versions 2 and 3")
        needed = header_length_needed(version)
        if len(raw) < needed:
            raise self._fail(TruncatedImageError, f"the file ends inside the qcow2 version "
                             f"{version} header ({len(raw)} of {needed} bytes)")
        header = Header.unpack(raw)
        problem = header_problem(header)
        if problem is not None:
            raise self._fail(ImageFormatError, problem)
        if header.crypt_method:
            method = CRYPT_METHODS.get(header.crypt_method, f"method {header.crypt_method}")
            raise self._fail(UnsupportedImageError,
                             f"the image is encrypted ({method}); azlift does not read "
                             f"encrypted disks: decrypt it first with `qemu-img convert` "
                             f"(giving the key as a --object secret) to a plain qcow2 or raw")
        return header

    def _read_extensions(self, header: Header, cluster0: bytes) -> dict[int, bytes]:
        start = header.header_length if header.version >= 3 else V2_HEADER_LENGTH
        area = cluster0[start:extensions_end(header)]
        try:
            found = parse_extensions(area)
        except ValueError as error:
            raise self._fail(ImageFormatError, str(error)) from error
        return dict(found)

    def _check_features(self, header: Header) -> None:
        incompatible = header.incompatible_features
        unknown = incompatible & ~INCOMPAT_KNOWN
        if unknown:
            table = feature_names(self.extensions.get(EXT_FEATURE_NAMES, b""))
            names = [f"bit {bit}" + (f" ({table[(0, bit)]})" if (0, bit) in table else "")
                     for bit in range(64) if unknown >> bit & 1]
            raise self._fail(UnsupportedImageError,
                             f"the image uses incompatible features azlift does not know "
                             f"({', '.join(names)}); a reader that ignores them would return "
                             f"wrong data")
        if incompatible & INCOMPAT_CORRUPT:
            raise self._fail(ImageFormatError,
                             "the image is marked corrupt (qemu found inconsistent metadata "
                             "and stopped writing to it); repair it with `qemu-img check -r "
                             "all` first")
        kind = header.compression_type
        if kind not in COMPRESSION_TYPES:
            raise self._fail(UnsupportedImageError,
                             f"compression type {kind} is unknown (expected 0 zlib or 1 zstd)")
        if (kind != COMPRESSION_ZLIB) != bool(incompatible & INCOMPAT_COMPRESSION):
            raise self._fail(ImageFormatError,
                             f"compression type is {COMPRESSION_TYPES[kind]} but the "
                             f"compression-type feature bit is "
                             f"{'clear' if kind != COMPRESSION_ZLIB else 'set'}")

    def _read_l1(self, header: Header) -> np.ndarray:
        import numpy as np
        count = l1_entries_needed(header.size, self.cluster_bits, self.extended)
        offset = header.l1_table_offset
        if offset + count * 8 > self.file_size:
            raise self._fail(TruncatedImageError,
                             f"the L1 table ({count} entries at offset {offset}) ends past the "
                             f"end of the file ({self.file_size} bytes)")
        raw = np.frombuffer(self.pread(offset, count * 8), dtype=">u8")
        tables = (raw & np.uint64(OFFSET_MASK)).astype(np.int64)
        unaligned = np.flatnonzero(tables % self.cluster_size)
        if unaligned.size:
            index = int(unaligned[0])
            raise self._fail(ImageFormatError,
                             f"L1 entry {index} points to an L2 table at offset "
                             f"{int(tables[index])}, not aligned to the cluster size "
                             f"{self.cluster_size}")
        past = np.flatnonzero(tables + self.cluster_size > self.file_size)
        past = past[tables[past] != 0]
        if past.size:
            index = int(past[0])
            raise self._fail(TruncatedImageError,
                             f"L1 entry {index} points to an L2 table at offset "
                             f"{int(tables[index])}, past the end of the file "
                             f"({self.file_size} bytes)")
        return tables

    def _backing_name(self, header: Header, cluster0: bytes) -> tuple[str | None, str | None]:
        if not header.backing_file_offset or not header.backing_file_size:
            return None, None
        start = header.backing_file_offset
        raw = cluster0[start:start + header.backing_file_size]
        if len(raw) < header.backing_file_size:
            raise self._fail(TruncatedImageError, "the file ends inside the backing file name")
        name = self._text(raw, "backing file name")
        fmt = self.extensions.get(EXT_BACKING_FORMAT)
        return name, (self._text(fmt, "backing file format") if fmt else None)

    def _text(self, raw: bytes, what: str) -> str:
        try:
            return raw.split(b"\0", 1)[0].decode("utf-8")
        except UnicodeDecodeError as error:
            raise self._fail(ImageFormatError, f"the {what} is not UTF-8 text") from error

    def _open_data_file(self) -> FileImage:
        raw = self.extensions.get(EXT_DATA_FILE)
        if not raw:
            raise self._fail(UnsupportedImageError,
                             "the image keeps its data in an external data file but does not "
                             "name it (qemu needs it given with data-file=); azlift cannot "
                             "find it")
        self.data_file_name = name = self._text(raw, "external data file name")
        if has_protocol(name):
            raise self._fail(UnsupportedImageError, f"external data file {name!r} is not a "
                             f"local file name")
        # Beside the image first, as for backing files; qemu itself (7.2) takes a relative
        # data file name from the working directory, so that comes second.
        tried = list(dict.fromkeys([resolve_relative(self.path, name), name]))
        for path in tried:
            if os.path.isfile(path):
                return FileImage(path)
        raise self._fail(ImageIOError, f"external data file {name!r} not found (looked at "
                         f"{', '.join(tried)})")

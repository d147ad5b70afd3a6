"""The one protocol every disk-image reader implements."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class DiskImage(Protocol):
    """A guest-visible disk, whatever its container format.

    ``extents()`` yields ``(offset, length)`` ranges that may hold data, in ascending
    order and non-overlapping, taken from the format's own map (BAT, or the file's holes
    for raw and fixed; for BAT formats also the holes inside stored blocks). Everything
    outside them reads as zero, so consumers never need to read or send it.
    """

    path: str
    format: str  # "raw", "vhd-fixed", "vhd-dynamic", "vhd-differencing", "vhdx"

    @property
    def virtual_size(self) -> int: ...

    def read(self, offset: int, length: int) -> bytes | bytearray:
        """``length`` guest bytes at ``offset`` (a bytearray when filled in one preadv)."""
        ...

    def extents(self) -> Iterator[tuple[int, int]]: ...

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...

    def __enter__(self) -> "DiskImage": ...

    def __exit__(self, *exc: object) -> None: ...

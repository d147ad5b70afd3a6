"""Records how convert moved a source's stored bytes without reading them into Python:
copy_file_range, a write from the source's mapping, or a clone."""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import pytest

from azlift.vhd.mapped_source import MappedSource
from azlift.vhd.sparse_write import StoredCopy


@dataclass(frozen=True)
class Move:
    way: str  # "copy_file_range", "mapped" or "clone"
    thread: threading.Thread
    length: int
    direct: bool  # DEST was being written direct (clones only: the others are buffered)


class StoredWays:
    """Wraps the three ways; ``refuse_kernel_copy`` makes copy_file_range fail as across
    devices."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, refuse_kernel_copy: bool = False) -> None:
        self.moves: list[Move] = []
        real_copy, real_mapped, real_clone = (os.copy_file_range, MappedSource.copy,
                                              StoredCopy._clone)
        moves = self.moves

        def copy_file_range(*args: int) -> int:
            if refuse_kernel_copy:
                raise OSError(18, "Invalid cross-device link")  # EXDEV
            count = real_copy(*args)
            moves.append(Move("copy_file_range", threading.current_thread(), count, False))
            return count

        def mapped(self: MappedSource, dest_fd: int, source: int, dest: int,
                   length: int) -> int:
            count = real_mapped(self, dest_fd, source, dest, length)
            if count:
                moves.append(Move("mapped", threading.current_thread(), count, False))
            return count

        def clone(self: StoredCopy, source: int, dest: int, length: int) -> bool:
            direct = self.out.direct
            cloned = real_clone(self, source, dest, length)
            if cloned:
                moves.append(Move("clone", threading.current_thread(), length, direct))
            return cloned

        monkeypatch.setattr(os, "copy_file_range", copy_file_range)
        monkeypatch.setattr(MappedSource, "copy", mapped)
        monkeypatch.setattr(StoredCopy, "_clone", clone)

    def bytes(self, *ways: str, direct: bool | None = None) -> int:
        """Bytes moved by ``ways`` (all three when none), of buffered or direct moves."""
        return sum(move.length for move in self.selected(*ways, direct=direct))

    def threads(self, *ways: str, direct: bool | None = None) -> set[threading.Thread]:
        return {move.thread for move in self.selected(*ways, direct=direct)}

    def selected(self, *ways: str, direct: bool | None = None) -> list[Move]:
        return [move for move in self.moves if (not ways or move.way in ways)
                and (direct is None or move.direct == direct)]


def on_block_device(path: os.PathLike[str] | str) -> bool:
    """Whether ``path``'s filesystem has a block device (not NFS, FUSE, tmpfs...)."""
    return os.major(os.stat(path).st_dev) != 0

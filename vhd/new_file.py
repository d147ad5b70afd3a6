"""A new output that appears complete or not at all: written under a hidden temporary
name beside it, then published by a link (or rename) that never replaces a file it was
not told to."""
from __future__ import annotations

import errno
import os

from .errors import OutputExistsError


def create_temporary(directory: str, prefix: str) -> tuple[int, str]:
    """A new file, readable by its owner only, under a random name beginning with
    ``prefix`` in ``directory``: (descriptor, path). tempfile.mkstemp does the same, but
    importing it (with shutil and random) is 3 ms of a conversion's start-up."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        path = os.path.join(directory, prefix + os.urandom(6).hex())
        try:
            return os.open(path, flags, 0o600), path
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", directory)


def exists_error(dest: str) -> OutputExistsError:
    """The error for an output that is there already, without --force."""
    return OutputExistsError(f"{dest} already exists; pass --force to overwrite it")


def publish(temp: str, dest: str, force: bool) -> None:
    """Rename ``temp`` to ``dest``; without ``force`` never replace a file that appeared
    meanwhile (a hard link fails on an existing name, where a rename would not)."""
    if force:
        os.replace(temp, dest)
        return
    try:
        os.link(temp, dest)
    except FileExistsError as error:
        raise exists_error(dest) from error
    except OSError:  # no hard links on this filesystem: check, then rename
        if os.path.lexists(dest):
            raise exists_error(dest) from None
        os.replace(temp, dest)
        return
    os.unlink(temp)


def umask() -> int:
    """The process umask, read without changing it (other threads may be creating files)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def unlink_quietly(path: str) -> None:
    """Remove ``path`` if it is there (a temporary file after a failure)."""
    try:
        os.unlink(path)
    except OSError:
        pass


def fsync_directory(directory: str) -> None:
    """Flush ``directory``'s entries (a published name survives a power loss), where the
    filesystem lets a directory be opened and synced."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

"""Resume state: which work units the service acknowledged, for which source and target.

One file per target under the user's state directory ($AZLIFT_STATE_DIR, else
$XDG_STATE_HOME/azlift, else ~/.local/state/azlift)/uploads. The first line is a JSON
header (fingerprints, blob length, footer hash); every later line is the offset of one
acknowledged unit, appended with one ``write`` so a kill -9 loses at most a partial last
line (ignored on load). Data is fsync'ed at most once a second to keep appends cheap.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from azlift.vhd import DiskImage

from .errors import JournalError, ResumeMismatchError
from .stream import FixedVhdLayout

# 2: an extent shorter than the grid is one unit even across a grid multiple. A version-1
# journal still resumes: its offsets stand for the units that cross no multiple, which are
# the same in both versions; the units that do are sent again.
JOURNAL_VERSION = 2
READABLE_VERSIONS = (1, 2)
FSYNC_INTERVAL_S = 1.0


def state_dir(env: dict[str, str] | None = None) -> Path:
    """The user's azlift state directory (not created)."""
    env = dict(os.environ) if env is None else env
    if env.get("AZLIFT_STATE_DIR"):
        return Path(env["AZLIFT_STATE_DIR"])
    if env.get("XDG_STATE_HOME"):
        return Path(env["XDG_STATE_HOME"]) / "azlift"
    return Path.home() / ".local" / "state" / "azlift"


@dataclass(frozen=True)
class Fingerprint:
    """What must be unchanged for a resume to be safe."""

    source_path: str
    source_size: int
    source_mtime_ns: int
    source_format: str
    parents_sha256: str  # the differencing chain's files (path, size, mtime), if any
    map_sha256: str
    footer_sha256: str
    target: str
    blob_length: int

    def digest(self) -> str:
        """Short stable hash, small enough for blob metadata."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def differences(self, other: "Fingerprint") -> list[str]:
        """Names of the fields that differ, with both values."""
        mine, theirs = asdict(self), asdict(other)
        return [f"{name}: recorded {theirs[name]!r}, now {mine[name]!r}"
                for name in mine if mine[name] != theirs[name]]


def _file_identity(path: str) -> tuple[str, int, int]:
    real = os.path.realpath(path)
    stat = os.stat(real)
    return real, stat.st_size, stat.st_mtime_ns


def parents_digest(image: DiskImage) -> str:
    """Hash of the identities of every parent a differencing image reads through."""
    identities = []
    parent = getattr(image, "parent", None)
    while parent is not None and getattr(parent, "path", None):
        identities.append(_file_identity(parent.path))
        parent = getattr(parent, "parent", None)
    return hashlib.sha256(json.dumps(identities).encode()).hexdigest()


def fingerprint(image: DiskImage, layout: FixedVhdLayout, target: str) -> Fingerprint:
    """The fingerprint of uploading ``image`` (as ``layout``) to ``target``."""
    path, size, mtime_ns = _file_identity(image.path)
    return Fingerprint(
        source_path=path, source_size=size, source_mtime_ns=mtime_ns,
        source_format=image.format, parents_sha256=parents_digest(image),
        map_sha256=layout.extents_digest(),
        footer_sha256=hashlib.sha256(layout.footer).hexdigest(), target=target,
        blob_length=layout.blob_length)


class Journal:
    """The append-only record of acknowledged units for one target."""

    def __init__(self, path: Path, header: Fingerprint, acknowledged: set[int],
                 version: int = JOURNAL_VERSION) -> None:
        self.path = path
        self.header = header
        self.acknowledged = acknowledged
        self.version = version
        self._fd: int | None = None
        self._lock = threading.Lock()
        self._last_sync = 0.0

    @staticmethod
    def path_for(target: str, directory: Path | None = None) -> Path:
        name = hashlib.sha256(target.encode()).hexdigest()[:32] + ".journal"
        return (directory or state_dir()) / "uploads" / name

    @classmethod
    def start(cls, header: Fingerprint, directory: Path | None = None) -> "Journal":
        """A fresh journal (replacing any previous one for the same target)."""
        path = cls.path_for(header.target, directory)
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            temporary = path.with_suffix(".tmp")
            temporary.write_text(json.dumps({"version": JOURNAL_VERSION, **asdict(header)})
                                 + "\n")
            os.replace(temporary, path)
        except OSError as error:
            raise JournalError(
                f"cannot write the resume journal in {path.parent}: "
                f"{error.strerror or error} (set AZLIFT_STATE_DIR to a writable "
                "directory)") from error
        return cls(path, header, set())

    @classmethod
    def load(cls, target: str, directory: Path | None = None) -> "Journal | None":
        """The journal recorded for ``target``, or None when there is none."""
        path = cls.path_for(target, directory)
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        lines = text.split("\n")
        try:
            raw: dict[str, Any] = json.loads(lines[0])
        except (json.JSONDecodeError, IndexError) as error:
            raise ResumeMismatchError(f"the resume journal {path} is damaged ({error}); "
                                      "start again with --overwrite") from None
        version = raw.pop("version", None)
        if version not in READABLE_VERSIONS:
            raise ResumeMismatchError(f"the resume journal {path} has an unknown version; "
                                      "start again with --overwrite")
        try:
            header = Fingerprint(**raw)
        except TypeError as error:
            raise ResumeMismatchError(f"the resume journal {path} is damaged ({error})") from None
        acknowledged = set()
        complete_lines = lines[1:-1] if not text.endswith("\n") else lines[1:]
        for line in complete_lines:
            if line.strip().isdigit():
                acknowledged.add(int(line))
        return cls(path, header, acknowledged, version)

    def check(self, current: Fingerprint) -> None:
        """Refuse when the recorded upload is not this source to this target."""
        differences = current.differences(self.header)
        if differences:
            raise ResumeMismatchError(
                "--resume refused: the interrupted upload recorded for "
                f"{current.target} was of another source or size ("
                + "; ".join(differences) + "); use --overwrite to start again")

    def acknowledge(self, offset: int) -> None:
        """Record that the unit at ``offset`` is on the service (one append)."""
        with self._lock:
            try:
                if self._fd is None:
                    self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
                os.write(self._fd, f"{offset}\n".encode())
                now = time.monotonic()
                if now - self._last_sync >= FSYNC_INTERVAL_S:
                    os.fsync(self._fd)
                    self._last_sync = now
            except OSError as error:
                raise JournalError(
                    f"cannot record the upload's progress in {self.path}: "
                    f"{error.strerror or error}; what was recorded before is kept: free "
                    "space there (or set AZLIFT_STATE_DIR), then rerun with --resume") from error
            self.acknowledged.add(offset)

    def close(self) -> None:
        """Flush and close; a failure here (the disk that failed an append) is not worth
        hiding the error that stopped the upload, so it is swallowed."""
        with self._lock:
            if self._fd is not None:
                try:
                    os.fsync(self._fd)
                except OSError:
                    pass
                os.close(self._fd)
                self._fd = None

    def remove(self) -> None:
        """Forget the upload (it finished)."""
        self.close()
        self.path.unlink(missing_ok=True)

"""Open any supported image: the format comes from content, never from the name alone.

Content that is a known container (qcow2, VMDK, VDI, an OVA, a gzip file, an ISO...) is
never taken as a raw disk: it opens with its reader, or is refused with what it is and a
way forward. A name that promises a format is never read as raw unless ``format="raw"``
says so; forcing a format over a signature that says otherwise is allowed, and the image
then carries ``signature_ignored`` so every caller can warn about it.
"""
from __future__ import annotations

import importlib
import os
from typing import NamedTuple

from ._signatures import (
    EXPECTED_SIGNATURES,
    EXTENSION_FORMATS,
    HEAD_SIZE,
    SIGNATURES,
    TAIL_SIZE,
    VHD_SET,
    Signature,
    match_head,
    match_tail,
)
from ._vhd_structs import FOOTER_COOKIE, FOOTER_SIZE, SHORT_FOOTER_SIZE
from ._vhdx_structs import FILE_SIGNATURE as VHDX_SIGNATURE
from .errors import (
    ContainerFormatError,
    DiskSelectionError,
    FormatMismatchError,
    UnknownFormatError,
)
from .image import DiskImage
from .raw import FileImage

FORMATS = ("raw", "vhd", "vhdx", "qcow2", "vmdk", "ova")
FORMAT_ALIASES = {"raw": "raw", "img": "raw", "vhd": "vhd", "vpc": "vhd", "vhdx": "vhdx",
                  "qcow2": "qcow2", "vmdk": "vmdk", "vmdk-stream": "vmdk", "ova": "ova"}
IMAGE_EXTENSIONS = {".vhd": "vhd", ".avhd": "vhd", ".vhdx": "vhdx", ".avhdx": "vhdx",
                    **EXTENSION_FORMATS}
# Detected format -> (module, reader class). A detected container without an entry here is
# refused. Readers load with the first image of their format: a command that opens a VHD
# does not pay for the qcow2, VMDK and OVA readers (and their XML and tar parsers).
READERS: dict[str, tuple[str, str]] = {
    "raw": ("raw", "RawImage"), "vhd": ("vhd", "VhdImage"), "vhdx": ("vhdx", "VhdxImage"),
    "qcow2": ("qcow2", "Qcow2Image"), "vmdk": ("vmdk", "VmdkImage"), "ova": ("ova", "OvaImage")}
# Readers of packages that hold several disks: they take the disk number.
MULTI_DISK = {"ova"}
NATIVE_SIGNATURES = {
    "vhd": "a 'conectix' footer", "vhdx": "the 'vhdxfile' identifier"}
RAW_BECAUSE = ("no known signature found (looked for VHD, VHDX, "
               + ", ".join(dict.fromkeys(s.name for s in SIGNATURES)) + ")")


def reader(name: str) -> type:
    """The reader class of format ``name`` (its module imported now)."""
    module, cls = READERS[name]
    return getattr(importlib.import_module(f".{module}", __package__), cls)


class Detection(NamedTuple):
    """What the content of a file says it is."""

    format: str                      # "raw", "vhd", "vhdx" or a Signature's format
    signature: Signature | None = None  # the container signature found, if any
    vhd_footer_at_end: bool = False  # a container that also ends with a fixed-VHD footer


def detect_format(path: str | os.PathLike[str]) -> Detection:
    """Identify ``path`` by content: VHDX identifier, a dynamic VHD's leading footer copy,
    container and wrapper signatures, then a fixed VHD's footer at the end; else raw.

    Container signatures are looked for before the fixed-VHD footer, so a qcow2 that an
    older tool wrapped in a footer is still named for what its data is.
    """
    with FileImage(path) as image:
        size = image.file_size
        head = image.pread_upto(0, HEAD_SIZE)
        tail = image.pread_upto(max(0, size - TAIL_SIZE), TAIL_SIZE)
    if head[:8] == VHDX_SIGNATURE:
        return Detection("vhdx")
    if head[:8] == FOOTER_COOKIE:  # a dynamic or differencing VHD's footer copy
        return Detection("vhd")
    footer_at_end = any(size >= n and tail[len(tail) - n:len(tail) - n + 8] == FOOTER_COOKIE
                        for n in (FOOTER_SIZE, SHORT_FOOTER_SIZE))
    found = match_head(head) or (None if footer_at_end else match_tail(tail))
    if found is not None:
        return Detection(found.format, found, footer_at_end)
    if footer_at_end:
        return Detection("vhd")
    return Detection("raw")


def sniff_format(path: str | os.PathLike[str]) -> str | None:
    """'vhdx' or 'vhd' when the content carries that format's signature, a container's
    format name when it carries one of those, else None (nothing known: raw)."""
    found = detect_format(path).format
    return None if found == "raw" else found


def container_error(path: str, detection: Detection) -> ContainerFormatError:
    """The one-line refusal of a container azlift cannot read (yet)."""
    signature = detection.signature
    assert signature is not None
    cannot = signature.why or f"azlift cannot read {signature.name} yet"
    wrapped = (" (it also ends with a fixed-VHD footer, perhaps appended by an earlier "
               "`fix`: the data inside is still the container)"
               if detection.vhd_footer_at_end else "")
    return ContainerFormatError(
        f"{path}: {signature.label} ({signature.describe_magic()}), not a raw "
        f"disk{wrapped}; {cannot}: {signature.advice.format(path=path)}",
        signature.format)


def open_image(path: str | os.PathLike[str], format: str | None = None,  # noqa: A002
               disk: int | None = None) -> DiskImage:
    """Open ``path`` as a DiskImage; ``format`` forces "raw", "vhd", "vhdx", "qcow2", "vmdk"
    or "ova"; ``disk`` picks one disk (1-based) of a package that holds several (an OVA).

    Without ``format`` the content decides: a known container opens with its reader or is
    refused (ContainerFormatError), and a file whose name promises another format but
    whose content carries no signature is refused (FormatMismatchError) instead of being
    read silently as raw.
    """
    path = os.fspath(path)
    if format is not None:
        return _open_forced(path, format, disk)
    extension = os.path.splitext(path)[1].lower()
    if extension == ".vhds":
        raise container_error(path, Detection("vhds", VHD_SET))
    detection = detect_format(path)
    if detection.signature is not None and detection.format not in READERS:
        raise container_error(path, detection)
    if detection.format == "raw":
        claimed = IMAGE_EXTENSIONS.get(extension)
        if claimed is not None:
            expected = NATIVE_SIGNATURES.get(claimed) or EXPECTED_SIGNATURES.get(
                claimed, "its signature")
            raise FormatMismatchError(
                f"{path}: the name says {claimed.upper()} but the file has no "
                f"{claimed.upper()} signature (expected {expected}); if it really is a raw "
                f"disk, pass --format raw")
        image = construct("raw", path, disk)
        image.raw_reason = RAW_BECAUSE
        return image
    return construct(detection.format, path, disk)


def construct(name: str, path: str, disk: int | None) -> DiskImage:
    """The reader ``name`` on ``path``; a disk number other than 1 needs a package."""
    if name in MULTI_DISK:
        return reader(name)(path, disk)
    if disk not in (None, 1):
        raise DiskSelectionError(f"{path} holds one disk ({name}); there is no disk {disk} "
                                 f"(expected --disk 1 or no --disk)")
    return reader(name)(path)


def _open_forced(path: str, format: str, disk: int | None) -> DiskImage:  # noqa: A002
    name = FORMAT_ALIASES.get(format.lower())
    if name is None:
        raise UnknownFormatError(
            f"unknown image format {format!r}; expected one of {', '.join(FORMATS)}")
    detection = detect_format(path)
    image = construct(name, path, disk)
    if detection.signature is not None and detection.format != name:
        image.signature_ignored = detection.signature
    if name == "raw":
        image.raw_reason = f"--format {format} was given"
    return image

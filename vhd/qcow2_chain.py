"""qcow2 backing files: names resolved as qemu resolves them, opened in any format azlift
reads, chains bounded and loops refused."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .errors import (
    ParentChainError,
    ParentNotFoundError,
    UnknownFormatError,
    UnsupportedImageError,
)
from .image import DiskImage
from .vhd import MAX_CHAIN_DEPTH

if TYPE_CHECKING:
    from .qcow2 import Qcow2Image


def has_protocol(name: str) -> bool:
    """qemu's rule: a ``:`` before any ``/`` makes a name a protocol (nbd:, json:, ...)."""
    colon = name.find(":")
    slash = name.find("/")
    return colon >= 0 and (slash < 0 or colon < slash)


def resolve_relative(image_path: str, name: str) -> str:
    """A name stored in an image, resolved as qemu does: relative to the folder of the
    image that names it (as that image was named, symlinks not followed)."""
    if os.path.isabs(name):
        return name
    return os.path.join(os.path.dirname(image_path), name)


def open_backing(image: Qcow2Image, name: str, fmt: str | None, depth: int,
                 seen: frozenset[str]) -> DiskImage:
    """Open the backing file ``name`` of ``image`` (format ``fmt``, or from content)."""
    from .detect import detect_format, open_image  # detect imports this module
    from .qcow2 import Qcow2Image

    seen = seen | {os.path.realpath(image.path)}
    if depth + 1 > MAX_CHAIN_DEPTH:
        raise ParentChainError(
            f"{image.path}: the backing chain is deeper than {MAX_CHAIN_DEPTH} images")
    if has_protocol(name):
        raise UnsupportedImageError(
            f"{image.path}: backing file {name!r} is not a local file name (a qemu protocol "
            f"or json: name); azlift follows local backing files only")
    path = resolve_relative(image.path, name)
    if not os.path.isfile(path):
        raise ParentNotFoundError(
            f"{image.path}: backing file {name!r} not found (looked at {path})")
    if os.path.realpath(path) in seen:
        raise ParentChainError(f"{image.path}: the backing chain loops back to {path}")
    if (fmt or detect_format(path).format).lower() == "qcow2":
        return Qcow2Image(path, _depth=depth + 1, _seen=seen)
    try:
        return open_image(path, format=fmt)
    except UnknownFormatError as error:
        raise UnsupportedImageError(
            f"{image.path}: backing file {name!r} has format {fmt!r}, which azlift does not "
            f"read") from error


def parent_chain(image: DiskImage) -> list[dict[str, Any]]:
    """The backing chain from the nearest file to the base, as JSON-ready entries."""
    chain: list[dict[str, Any]] = []
    current = getattr(image, "parent", None)
    while current is not None:
        chain.append({"path": current.path, "format": current.format,
                      "virtual_size": current.virtual_size})
        current = getattr(current, "parent", None)
    return chain

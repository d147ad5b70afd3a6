"""Open any supported image: the format comes from content, never from the name alone."""
from __future__ import annotations

import os

from ._vhd_structs import FOOTER_COOKIE, FOOTER_SIZE, SHORT_FOOTER_SIZE
from ._vhdx_structs import FILE_SIGNATURE as VHDX_SIGNATURE
from .errors import FormatMismatchError, UnknownFormatError
from .image import DiskImage
from .raw import FileImage, RawImage
from .vhd import VhdImage
from .vhdx import VhdxImage

FORMATS = ("raw", "vhd", "vhdx")
FORMAT_ALIASES = {"raw": "raw", "img": "raw", "vhd": "vhd", "vpc": "vhd", "vhdx": "vhdx"}
IMAGE_EXTENSIONS = {".vhd": "vhd", ".avhd": "vhd", ".vhdx": "vhdx", ".avhdx": "vhdx"}
READERS = {"raw": RawImage, "vhd": VhdImage, "vhdx": VhdxImage}


def sniff_format(path: str | os.PathLike[str]) -> str | None:
    """'vhdx' or 'vhd' when the content carries that format's signature, else None."""
    with FileImage(path) as image:
        size = image.file_size
        head = image.pread_upto(0, 8)
        if head == VHDX_SIGNATURE:
            return "vhdx"
        if head == FOOTER_COOKIE:
            return "vhd"
        for footer_size in (FOOTER_SIZE, SHORT_FOOTER_SIZE):
            if size >= footer_size and image.pread(size - footer_size, 8) == FOOTER_COOKIE:
                return "vhd"
    return None


def open_image(path: str | os.PathLike[str], format: str | None = None) -> DiskImage:  # noqa: A002
    """Open ``path`` as a DiskImage; ``format`` forces "raw", "vhd" or "vhdx".

    Without ``format`` the content decides. A ``.vhd``/``.vhdx`` file without the matching
    signature is refused (FormatMismatchError) instead of being read silently as raw.
    """
    path = os.fspath(path)
    if format is not None:
        name = FORMAT_ALIASES.get(format.lower())
        if name is None:
            raise UnknownFormatError(
                f"unknown image format {format!r}; expected one of {', '.join(FORMATS)}")
        return READERS[name](path)
    found = sniff_format(path)
    if found is None:
        claimed = IMAGE_EXTENSIONS.get(os.path.splitext(path)[1].lower())
        if claimed is not None:
            signature = "a 'conectix' footer" if claimed == "vhd" else "the 'vhdxfile' identifier"
            raise FormatMismatchError(
                f"{path}: the name says {claimed.upper()} but the file has no {claimed.upper()} "
                f"signature (expected {signature}); if it really is a raw disk, pass "
                f"--format raw")
        found = "raw"
    return READERS[found](path)

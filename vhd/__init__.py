"""Disk images: read raw/VHD/VHDX, check them against Azure's rules, convert and fix.

No network, no Azure SDK, no other azlift package.
"""
from __future__ import annotations

from ._vhd_structs import MIB, SECTOR, Footer, azure_virtual_size, chs_geometry, fixed_footer
from .detect import open_image
from .errors import (
    ChecksumError,
    FormatMismatchError,
    ImageFormatError,
    ImageIOError,
    InvalidSizeError,
    OutputExistsError,
    ParentNotFoundError,
    TruncatedImageError,
    UnsupportedImageError,
    VhdError,
)
from .image import DiskImage

open = open_image  # noqa: A001  (vhd.open(path) reads naturally)

__all__ = [
    "MIB",
    "SECTOR",
    "ChecksumError",
    "DiskImage",
    "Footer",
    "FormatMismatchError",
    "ImageFormatError",
    "ImageIOError",
    "InvalidSizeError",
    "OutputExistsError",
    "ParentNotFoundError",
    "TruncatedImageError",
    "UnsupportedImageError",
    "VhdError",
    "azure_virtual_size",
    "chs_geometry",
    "fixed_footer",
    "open",
    "open_image",
]

"""Disk images: read raw/VHD/VHDX/qcow2/VMDK/OVA, check them against Azure's rules, convert and
fix.

No network, no Azure SDK, no other azlift package.
"""
from __future__ import annotations

from ._vhd_structs import MIB, SECTOR, Footer, azure_virtual_size, chs_geometry, fixed_footer
from .detect import Detection, detect_format, open_image
from .errors import (
    ChecksumError,
    CapacityMismatchError,
    ContainerFormatError,
    DiskSelectionError,
    FixUnsupportedError,
    SameFileError,
    FormatMismatchError,
    ImageFormatError,
    ImageIOError,
    InvalidOptionError,
    InvalidSizeError,
    OutputExistsError,
    ParentChainError,
    ParentMismatchError,
    ParentNotFoundError,
    ReadRangeError,
    TruncatedImageError,
    UnknownFormatError,
    UnsupportedImageError,
    VhdError,
)
from .image import DiskImage
from .partitions import DiskLayout, Partition, analyze
from .check import (
    CheckReport,
    Finding,
    check_image,
    check_output_rules,
    check_path,
    inspect_path,
)
# The readers load on first use (PEP 562), or when detect opens an image of their format:
# `vhd check` of a VHD does not import the qcow2, VMDK and OVA readers; nor does it load
# the writers (conversion.py, in_place.py). Name -> submodule.
_LAZY = {
    **dict.fromkeys(("ConvertResult", "convert", "footer_for"), "conversion"),
    **dict.fromkeys(("FixPlan", "FixResult", "fix", "plan_fix"), "in_place"),
    "OvaImage": "ova", "Qcow2Image": "qcow2", "RawImage": "raw", "VhdImage": "vhd",
    "VhdxImage": "vhdx", "VmdkImage": "vmdk",
    **dict.fromkeys(("VmdkStream", "open_ova_stream", "open_vmdk_stream"), "vmdk_stream"),
}


def __getattr__(name: str) -> object:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


open = open_image  # noqa: A001  (vhd.open(path) reads naturally)

__all__ = [
    "CheckReport",
    "DiskLayout",
    "Finding",
    "Partition",
    "analyze",
    "check_image",
    "check_output_rules",
    "check_path",
    "inspect_path",
    "ConvertResult",
    "FixPlan",
    "FixResult",
    "convert",
    "fix",
    "footer_for",
    "plan_fix",
    "SameFileError",
    "FixUnsupportedError",
    "MIB",
    "SECTOR",
    "ChecksumError",
    "CapacityMismatchError",
    "ContainerFormatError",
    "Detection",
    "detect_format",
    "DiskImage",
    "DiskSelectionError",
    "Footer",
    "FormatMismatchError",
    "ImageFormatError",
    "ImageIOError",
    "InvalidOptionError",
    "InvalidSizeError",
    "OutputExistsError",
    "ParentChainError",
    "ParentMismatchError",
    "ParentNotFoundError",
    "Qcow2Image",
    "RawImage",
    "ReadRangeError",
    "TruncatedImageError",
    "UnknownFormatError",
    "UnsupportedImageError",
    "VhdError",
    "VhdImage",
    "VhdxImage",
    "VmdkImage",
    "VmdkStream",
    "open_ova_stream",
    "open_vmdk_stream",
    "OvaImage",
    "azure_virtual_size",
    "chs_geometry",
    "fixed_footer",
    "open",
    "open_image",
]

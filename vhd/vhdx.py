"""VHDX reader (MS-VHDX)."""
from __future__ import annotations

import os

from .errors import UnsupportedImageError


class VhdxImage:
    """Placeholder: the VHDX reader follows the VHD readers."""

    format = "vhdx"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        raise UnsupportedImageError(f"{os.fspath(path)}: VHDX reading is not available yet")

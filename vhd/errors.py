"""The vhd package's exception tree.

Every error carries a stable ``code`` (used in ``--json`` output) and the process
``exit_code`` the CLI maps it to. Messages say what was expected and what was found.
"""
from __future__ import annotations


class VhdError(Exception):
    """Base of every error the vhd package raises."""

    code = "vhd_error"
    exit_code = 3


class ImageFormatError(VhdError):
    """The file is not a readable image of the format it claims (or was named as)."""

    code = "bad_image"


class ChecksumError(ImageFormatError):
    """A structure's checksum or CRC does not match its contents."""

    code = "bad_checksum"


class TruncatedImageError(ImageFormatError):
    """The file ends before a structure or block it references."""

    code = "truncated_image"


class UnsupportedImageError(VhdError):
    """A valid image that azlift cannot handle (yet), e.g. a VHDX with a pending log."""

    code = "unsupported_image"


class ContainerFormatError(UnsupportedImageError):
    """The content is a known container or compressed wrapper (qcow2, VMDK, gzip, ISO...)
    that azlift has no reader for: never read as a raw disk."""

    code = "unsupported_format"

    def __init__(self, message: str, format: str) -> None:  # noqa: A002
        super().__init__(message)
        self.format = format


class ParentNotFoundError(VhdError):
    """A differencing disk's parent could not be located."""

    code = "parent_not_found"


class FormatMismatchError(VhdError):
    """Content and file name disagree (a ``.vhd`` without a footer) and no format was named."""

    code = "format_mismatch"


class ImageIOError(VhdError):
    """The operating system refused to read or write a file."""

    code = "io_error"


class OutputExistsError(VhdError):
    """The destination exists and overwriting was not asked for."""

    code = "output_exists"
    exit_code = 5


class InvalidSizeError(VhdError):
    """A requested size is impossible (smaller than the data, beyond Azure's limits...)."""

    code = "invalid_size"
    exit_code = 2


class ParentMismatchError(ImageFormatError):
    """A differencing disk's parent is not the disk it was created from (unique id differs)."""

    code = "parent_mismatch"


class ParentChainError(ImageFormatError):
    """A differencing chain loops back on itself or is deeper than azlift follows."""

    code = "bad_parent_chain"


class ReadRangeError(VhdError, ValueError):
    """A read asked for bytes outside the disk's virtual size."""

    code = "read_out_of_range"


class InvalidOptionError(VhdError):
    """An option's value is none of those it takes."""

    code = "invalid_option"
    exit_code = 2


class UnknownFormatError(VhdError):
    """A format name azlift does not know was asked for."""

    code = "unknown_format"
    exit_code = 2


class SameFileError(OutputExistsError):
    """The destination is the source itself (or one of its parents): refused even with --force."""

    code = "same_file"


class FixUnsupportedError(UnsupportedImageError):
    """``fix`` cannot work in place on this image (dynamic/differencing VHD, VHDX): convert it."""

    code = "fix_unsupported"


class DiskSelectionError(VhdError):
    """A package holds several disks and none (or one that does not exist) was chosen."""

    code = "disk_selection"
    exit_code = 2

    def __init__(self, message: str, disks: list[dict] | None = None) -> None:
        super().__init__(message)
        self.disks = disks or []


class CapacityMismatchError(ImageFormatError):
    """An OVA's OVF gives a disk a smaller capacity than its VMDK holds: one of the two is
    wrong, and azlift cannot tell which."""

    code = "capacity_mismatch"

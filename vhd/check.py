"""Azure's rules for an uploaded disk, as findings with stable codes.

A fixed VHD is what Azure stores byte for byte, so every footer and size rule applies to
it as it is, and each broken rule is an error. Any other source (raw, dynamic,
differencing, VHDX) must be converted by ``azlift vhd convert``/``fix``/``upload`` first:
that is a ``needs_conversion`` warning, not an error, while the size rules apply to its
virtual size as they do to a fixed VHD's. The codes are part of the JSON contract (see
README.md).
"""
from __future__ import annotations

from typing import Any, Literal, NamedTuple

from ._vhd_structs import (
    DISK_TYPE_DIFFERENCING,
    DISK_TYPE_DYNAMIC,
    DISK_TYPE_FIXED,
    FEATURES_RESERVED,
    FIXED_DATA_OFFSET,
    FOOTER_COOKIE,
    FOOTER_SIZE,
    FORMAT_VERSION,
    GIB,
    MIB,
    SECTOR,
    Footer,
    azure_virtual_size,
    footer_fields,
    footer_problem,
    parse_footer,
    vhd_checksum,
)
from .errors import DiskSelectionError, ImageFormatError, VhdError
from .image import DiskImage
from .partitions import DiskLayout, analyze
from .raw import FileImage, RawImage

Role = Literal["os", "data"]
MIN_DISK_SIZE = 20 * MIB
MAX_OS_DISK_SIZE = 4095 * GIB
MAX_DATA_DISK_SIZE = 32767 * GIB
REPORT_SCHEMA = "azlift.vhd.check/1"

ERROR, WARNING, INFO = "error", "warning", "info"
SPARSE_DISK_TYPES = (DISK_TYPE_DYNAMIC, DISK_TYPE_DIFFERENCING)


class Finding(NamedTuple):
    """One rule's verdict: what was expected, what was found, how to fix it."""

    code: str
    severity: str  # "error" | "warning" | "info"
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "severity": self.severity, "message": self.message}


class CheckReport(NamedTuple):
    """Every finding for one image; ``ready`` when none of them is an error."""

    path: str
    format: str
    role: str | None
    virtual_size: int
    azure_virtual_size: int
    file_size: int | None
    findings: tuple[Finding, ...]
    layout: DiskLayout | None = None

    @property
    def ready(self) -> bool:
        return not any(f.severity == ERROR for f in self.findings)

    def codes(self) -> list[str]:
        return [f.code for f in self.findings]

    def to_dict(self) -> dict[str, Any]:
        counts = {s: sum(f.severity == s for f in self.findings) for s in (ERROR, WARNING, INFO)}
        return {
            "schema": REPORT_SCHEMA,
            "path": self.path,
            "format": self.format,
            "role": self.role,
            "ready": self.ready,
            "virtual_size": self.virtual_size,
            "azure_virtual_size": self.azure_virtual_size,
            "file_size": self.file_size,
            "os_type_hint": self.layout.os_type_hint if self.layout else None,
            "generation_hint": self.layout.generation_hint if self.layout else None,
            "summary": {"errors": counts[ERROR], "warnings": counts[WARNING],
                        "info": counts[INFO]},
            "findings": [f.to_dict() for f in self.findings],
            "layout": self.layout.to_dict() if self.layout else None,
        }


def _gib(size: int) -> str:
    return f"{size / GIB:.2f} GiB" if size >= GIB else f"{size / MIB:.2f} MiB"


def check_output_rules(virtual_size: int, role: Role | None = None,
                       *, remedy: str = "run `azlift vhd fix`") -> list[Finding]:
    """The size rules the fixed VHD sent to Azure must meet (virtual size = blob − 512)."""
    findings = []
    if virtual_size % MIB:
        findings.append(Finding(
            "size_not_whole_mib", ERROR,
            f"virtual size {virtual_size} is not a whole number of MiB (expected a multiple "
            f"of 1048576, {virtual_size % MIB} bytes over); {remedy} to round it up to "
            f"{azure_virtual_size(virtual_size)}"))
    if virtual_size < MIN_DISK_SIZE:
        findings.append(Finding(
            "size_too_small", ERROR,
            f"virtual size {virtual_size} ({_gib(virtual_size)}) is below Azure's minimum "
            f"of 20 MiB ({MIN_DISK_SIZE}); convert with `azlift vhd convert --size 20M`"))
    if role == "os" and virtual_size > MAX_OS_DISK_SIZE:
        findings.append(Finding(
            "os_disk_too_large", ERROR,
            f"virtual size {virtual_size} ({_gib(virtual_size)}) is above the largest OS "
            f"disk Azure accepts, 4095 GiB; shrink the guest's partitions and the disk, "
            f"or attach it as a data disk"))
    if virtual_size > MAX_DATA_DISK_SIZE:
        findings.append(Finding(
            "disk_too_large", ERROR,
            f"virtual size {virtual_size} ({_gib(virtual_size)}) is above the largest "
            f"disk Azure accepts, 32767 GiB; shrink the disk"))
    elif role is None and virtual_size > MAX_OS_DISK_SIZE:
        findings.append(Finding(
            "too_large_for_os_disk", WARNING,
            f"virtual size {virtual_size} ({_gib(virtual_size)}) is above 4095 GiB: it "
            f"can only be a data disk"))
    return findings


FOOTER_REMEDY = "run `azlift vhd fix` or `azlift vhd convert` to write a correct footer"
# A footer azlift cannot open the disk with (bad checksum, unknown disk type or version):
# only ``fix`` rewrites it, ``convert`` needs a readable source.
DAMAGED_FOOTER_REMEDY = "run `azlift vhd fix` to rewrite the footer in place"


def footer_rules(footer: Footer, how: str = FOOTER_REMEDY) -> list[Finding]:
    """The footer fields Azure checks, each against the value it expects."""
    findings = []

    def expect(code: str, name: str, found: object, expected: object) -> None:
        findings.append(Finding(code, ERROR,
                                f"footer {name} is {found}, expected {expected}; {how}"))

    if footer.cookie != FOOTER_COOKIE:
        expect("footer_cookie", "cookie", repr(footer.cookie), "b'conectix'")
    if footer.features != FEATURES_RESERVED:
        expect("footer_features", "features", f"{footer.features:#010x}", "0x00000002")
    if footer.format_version != FORMAT_VERSION:
        expect("footer_version", "format version", f"{footer.format_version:#010x}",
               "0x00010000")
    if footer.data_offset != FIXED_DATA_OFFSET:
        expect("footer_data_offset", "data offset", f"{footer.data_offset:#018x}",
               "0xffffffffffffffff (a fixed disk)")
    if footer.disk_type != DISK_TYPE_FIXED:
        expect("footer_disk_type", "disk type", f"{footer.disk_type} ({footer.disk_type_name})",
               "2 (fixed)")
    expected_sum = vhd_checksum(footer.pack())
    if footer.checksum != expected_sum:
        expect("footer_checksum", "checksum", f"{footer.checksum:#010x}",
               f"{expected_sum:#010x}")
    return findings


def blob_length_rule(file_size: int | None, current_size: int) -> list[Finding]:
    """A fixed VHD is exactly its virtual size plus one 512-byte footer."""
    if file_size is None or file_size == current_size + FOOTER_SIZE:
        return []
    return [Finding(
        "blob_length", ERROR,
        f"file length is {file_size}, expected virtual size + 512 = "
        f"{current_size + FOOTER_SIZE}; Azure takes the last 512 bytes as the footer. Run "
        f"`azlift vhd convert` to write a clean copy")]


def fixed_vhd_rules(footer: Footer, file_size: int | None, role: Role | None,
                    how: str = FOOTER_REMEDY) -> list[Finding]:
    """A fixed VHD is stored by Azure as it is: its footer, its length and its size."""
    return (footer_rules(footer, how) + blob_length_rule(file_size, footer.current_size)
            + check_output_rules(footer.current_size, role))


def find_stale_footer(image: DiskImage, virtual_size: int) -> int | None:
    """Offset of a fixed-VHD footer left inside the data by an interrupted ``vhd fix``.

    ``fix`` writes the new footer at the new end first and then zeroes the old one, which
    sits in the last MiB of data and describes a disk ending exactly where it sits. That
    self-description makes a false match in guest data practically impossible.
    """
    start = max(0, virtual_size - MIB)
    window = image.read(start, virtual_size - start)
    at = window.find(FOOTER_COOKIE)
    while at != -1:
        if at % 512 == 0 and at + FOOTER_SIZE <= len(window):
            footer = Footer.unpack(window[at:at + FOOTER_SIZE])
            if (footer.checksum_ok and footer.disk_type == DISK_TYPE_FIXED
                    and footer.current_size == start + at):
                return start + at
        at = window.find(FOOTER_COOKIE, at + 1)
    return None


def stale_footer_rule(image: DiskImage, virtual_size: int) -> list[Finding]:
    offset = find_stale_footer(image, virtual_size)
    if offset is None:
        return []
    return [Finding(
        "stale_footer", ERROR,
        f"a VHD footer is left inside the data area at offset {offset} (expected zeros "
        f"there): an interrupted `azlift vhd fix`; run `azlift vhd fix` again to finish")]


def layout_findings(layout: DiskLayout, role: Role | None, virtual_size: int) -> list[Finding]:
    """Generation and OS hints; a missing generation matters only for an OS disk."""
    why = "; ".join(layout.reasons)
    findings = []
    if layout.generation_hint == "V2":
        findings.append(Finding("generation_v2", INFO,
                                f"Hyper-V generation 2: {why}; create the Azure image with "
                                f"--hyper-v-generation V2"))
    elif layout.generation_hint == "V1":
        findings.append(Finding("generation_v1", INFO,
                                f"Hyper-V generation 1: {why}; create the Azure image with "
                                f"--hyper-v-generation V1"))
    elif role != "data":
        findings.append(Finding(
            "generation_unknown", WARNING,
            f"expected an EFI system partition on GPT (generation 2) or BIOS boot code on "
            f"MBR (generation 1), found neither: {why}; an OS disk needs one to boot"))
    if layout.os_type_hint:
        findings.append(Finding("os_type", INFO, f"looks like a {layout.os_type_hint} disk"))
    for part in layout.partitions:
        if part.start + part.size > virtual_size:
            findings.append(Finding(
                "partition_past_end", WARNING,
                f"partition {part.index} ends at byte {part.start + part.size}, past the "
                f"end of the disk ({virtual_size}): the image may be truncated"))
    return findings


def conversion_finding(image: DiskImage) -> Finding:
    kind = {"raw": "a raw disk without a VHD footer",
            "vhd-dynamic": "a dynamic VHD", "vhd-differencing": "a differencing VHD",
            "vhdx": "a VHDX", "qcow2": "a qcow2 image"}.get(image.format, image.format)
    fix_hint = ("`azlift vhd fix` appends a footer in place, " if image.format == "raw" else "")
    return Finding(
        "needs_conversion", WARNING,
        f"Azure takes a fixed VHD, found {kind}; {fix_hint}`azlift vhd convert` writes a "
        f"fixed copy and `azlift upload` converts on the fly")


def source_findings(image: DiskImage) -> list[Finding]:
    """What the way the image was opened says about it: a --format that overrode a
    container signature, or what its package says against it (``source_notes``, e.g. an
    OVF capacity larger than the disk), is worth a warning on every command that reads
    the image."""
    notes = [Finding(code, WARNING, message)
             for code, message in getattr(image, "source_notes", ())]
    signature = getattr(image, "signature_ignored", None)
    if signature is None:
        return notes
    return [*notes, Finding(
        "signature_ignored", WARNING,
        f"read as {image.format} because --format said so, but the content carries a "
        f"{signature.label} signature ({signature.describe_magic()}); if that is what it "
        f"is, the disk Azure gets is the container's bytes, not the guest's disk")]


def check_image(image: DiskImage, role: Role | None = None) -> CheckReport:
    """Check ``image`` against every rule Azure enforces on an uploaded disk."""
    virtual_size = image.virtual_size
    file_size = getattr(image, "file_size", None)
    findings: list[Finding] = source_findings(image)
    if image.format == "vhd-fixed":
        findings += fixed_vhd_rules(image.footer, file_size, role)  # type: ignore[attr-defined]
        if virtual_size % MIB == 0 and virtual_size >= MIB:
            findings += stale_footer_rule(image, virtual_size)
    else:
        findings.append(conversion_finding(image))
        remedy = ("run `azlift vhd fix` (in place) or `azlift vhd convert`"
                  if image.format == "raw" else "run `azlift vhd convert`")
        findings += check_output_rules(virtual_size, role, remedy=remedy)
    layout = analyze(image)
    findings += layout_findings(layout, role, virtual_size)
    return CheckReport(image.path, image.format, role, virtual_size,
                       azure_virtual_size(virtual_size), file_size, tuple(findings), layout)


def check_path(path: str, role: Role | None = None, format: str | None = None,  # noqa: A002
               disk: int | None = None) -> CheckReport:
    """Open and check ``path`` (``disk``: which disk of an OVA); a fixed VHD whose footer
    fields break the rules is reported as findings (not ready) rather than as an
    unreadable file."""
    image, damaged = open_with_damaged_footer(path, format, disk)
    with image:
        if damaged is None:
            return check_image(image, role)
        size = image.file_size  # type: ignore[attr-defined]
        findings = fixed_vhd_rules(damaged, size, role, DAMAGED_FOOTER_REMEDY)
        return CheckReport(path, "vhd-fixed", role, damaged.current_size,
                           azure_virtual_size(damaged.current_size), size,
                           tuple(findings), analyze(image))


def inspect_path(path: str, format: str | None = None,  # noqa: A002
                 disk: int | None = None) -> tuple[dict[str, Any], DiskLayout | None]:
    """``describe()`` and the partition layout of ``path``. A fixed VHD whose footer is too
    damaged to open is described from that footer (its problem under ``footer_problem``)
    rather than refused, as ``check_path`` reports it. A package of several disks (an
    OVA) without ``disk`` is described by its list of disks, with no layout."""
    try:
        image, damaged = open_with_damaged_footer(path, format, disk)
    except DiskSelectionError as error:
        if disk is not None or not error.disks:
            raise
        return {"path": path, "format": "ova", "disks": error.disks}, None
    with image:
        info = image.describe()
        layout = analyze(image)
        if damaged is not None:
            size = damaged.current_size
            info["allocated_bytes"] = sum(min(offset + length, size) - offset
                                          for offset, length in image.extents() if offset < size)
    if damaged is not None:
        info.update(format="vhd-fixed", virtual_size=damaged.current_size,
                    footer=footer_fields(damaged), footer_state={"end": "bad"},
                    footer_problem=footer_problem(damaged),
                    data_size=info["file_size"] - FOOTER_SIZE)
    return info, layout


def open_with_damaged_footer(path: str, format: str | None = None,  # noqa: A002
                             disk: int | None = None) -> tuple[DiskImage, Footer | None]:
    """``(image, None)``; or, for a fixed VHD whose footer stops it from opening (see
    ``damaged_fixed_footer``), the file read as raw and that footer, for ``check`` to
    report and ``fix`` to rewrite."""
    from .detect import open_image

    try:
        return open_image(path, format, disk), None
    except ImageFormatError:
        footer = damaged_fixed_footer(path, format)
        if footer is None:
            raise
        return RawImage(path), footer


def damaged_fixed_footer(path: str, format: str | None = None) -> Footer | None:  # noqa: A002
    """The footer at the end of ``path`` when the file looks like a fixed VHD whose footer
    azlift refused (bad checksum, unknown disk type or version), else None.

    A footer claiming more data than the file holds, or a dynamic disk's footer copy at
    offset 0, rule the file out; ``fix`` further needs the data to be exactly the footer's
    current size before it trusts the footer enough to rewrite it.
    """
    if format not in (None, "vhd", "vpc"):
        return None
    try:
        with FileImage(path) as image:
            size = image.file_size
            if size < FOOTER_SIZE:
                return None
            footer = parse_footer(image.pread(size - FOOTER_SIZE, FOOTER_SIZE))
            head = parse_footer(image.pread(0, FOOTER_SIZE))
    except VhdError:
        return None
    # a size that is no whole number of sectors is not a footer fix can move: the new one
    # would lie within 512 bytes of the old (its zeroing would wipe it out), and an
    # interrupted fix could not be recognised; the reader's own refusal stands
    if footer is None or footer.disk_type in SPARSE_DISK_TYPES \
            or footer.current_size > size - FOOTER_SIZE or footer.current_size % SECTOR:
        return None
    if head is not None and head.disk_type in SPARSE_DISK_TYPES:
        return None
    return footer

"""`azlift vhd` commands: inspect, check, convert, fix. Parse, call the library, render."""
from __future__ import annotations

import re
import sys
from enum import Enum
from typing import Annotated, Any

import typer

from azlift import vhd
from azlift.vhd.check import CheckReport
from azlift.vhd.partitions import DiskLayout

from .. import exit_codes
from .common import DiskOption, ForceOption, JsonOption, QuietOption, STATE, emit_json, say, warn

app = typer.Typer(
    help=(
        "Read, check and convert disk images (raw, VHD, VHDX, qcow2, VMDK, OVA) for Azure.\n\n"
        "Examples:\n\n"
        "  azlift vhd inspect disk.vhdx\n\n"
        "  azlift vhd check disk.vhd --os-disk --json\n\n"
        "  azlift vhd convert disk.vhdx disk-azure.vhd --size 30G\n\n"
        "  azlift vhd fix disk.raw"
    ),
    no_args_is_help=True,
    add_completion=False,
)


class ImageFormat(str, Enum):
    raw = "raw"
    vhd = "vhd"
    vhdx = "vhdx"
    qcow2 = "qcow2"
    vmdk = "vmdk"
    ova = "ova"


FormatOption = Annotated[
    ImageFormat | None,
    typer.Option("--format", case_sensitive=False,
                 help="Read the file as this format instead of detecting it from content "
                      "(e.g. a raw disk named .vhd)."),
]
ImageArgument = Annotated[str, typer.Argument(metavar="IMAGE",
                                              help="Disk image file (raw, VHD, VHDX, qcow2, "
                                                   "VMDK or OVA).",
                                              show_default=False)]

SIZE_UNITS = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}
SIZE_PATTERN = re.compile(r"^\s*(\d+)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """"30G", "30GiB", "1024M", "32212254720" → bytes (binary units, as Azure sizes disks)."""
    match = SIZE_PATTERN.match(text)
    if not match or (match.group(2) == "" and text.strip().upper().endswith("IB")):
        raise typer.BadParameter(
            f"expected a size such as 30G, 30GiB, 1024M or a number of bytes, found {text!r}")
    return int(match.group(1)) * SIZE_UNITS[match.group(2).upper()]


def _format_name(value: ImageFormat | None) -> str | None:
    return value.value if value is not None else None


def human_size(size: int) -> str:
    """``size`` with its binary unit, for people (JSON keeps bytes)."""
    for unit, factor in (("TiB", 1024 ** 4), ("GiB", 1024 ** 3), ("MiB", 1024 ** 2),
                         ("KiB", 1024)):
        if size >= factor:
            return f"{size} ({size / factor:.2f} {unit})"
    return f"{size} bytes"


def _render_value(key: str, value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and key.endswith(
            ("size", "bytes")):
        return human_size(value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def render_mapping(info: dict[str, Any], indent: str = "  ") -> list[str]:
    """Nested describe() fields as indented ``key: value`` lines."""
    lines = []
    for key, value in info.items():
        label = key.replace("_", " ")
        if isinstance(value, dict) and (
                len(value) > 3 or any(isinstance(v, (dict, list)) for v in value.values())):
            lines.append(f"{indent}{label}:")
            lines += render_mapping(value, indent + "  ")
        elif isinstance(value, list):
            if not value:
                lines.append(f"{indent}{label}: none")
                continue
            lines.append(f"{indent}{label}:")
            lines += [f"{indent}  - {_render_value(key, item)}" for item in value]
        else:
            lines.append(f"{indent}{label}: {_render_value(key, value)}")
    return lines


def render_layout(layout: DiskLayout) -> list[str]:
    lines = [f"partition table: {layout.scheme}"]
    if layout.whole_disk_filesystem:
        lines.append(f"  whole-disk filesystem: {layout.whole_disk_filesystem}")
    for part in layout.partitions:
        flag = " bootable" if part.bootable else ""
        name = f" \"{part.name}\"" if part.name else ""
        lines.append(f"  {part.index:>3}  start {part.start:>14}  size {human_size(part.size)}"
                     f"  {part.type_name} ({part.type}){name}  fs {part.filesystem}{flag}")
    lines.append(f"OS type hint: {layout.os_type_hint or 'unknown'}")
    lines.append(f"generation hint: {layout.generation_hint or 'unknown'}")
    lines += [f"  because {reason}" for reason in layout.reasons]
    return lines


def _print(lines: list[str]) -> None:
    say("\n".join(lines), err=False)


@app.command()
def inspect(image: ImageArgument, json_out: JsonOption = False,
            format: FormatOption = None, disk: DiskOption = None) -> None:  # noqa: A002
    """Show what a disk image holds: format, sizes, headers, partitions, OS and generation.

    Examples:

      azlift vhd inspect disk.vhdx

      azlift vhd inspect disk.img --format raw --json

      azlift vhd inspect vm.ova --disk 2
    """
    info, layout = vhd.inspect_path(image, _format_name(format), disk)
    if layout is None:  # a package of several disks: list them
        if json_out:
            emit_json({"ok": True, **info, "layout": None})
        else:
            _print([image, *render_mapping(info)])
        warn(f"{image} holds {len(info['disks'])} disks; pass --disk N to inspect one")
        return
    if json_out:
        emit_json({"ok": True, **info, "layout": layout.to_dict()})
    else:
        _print([image, *render_mapping(info), *render_layout(layout)])
    if "signature_ignored" in info:
        found = info["signature_ignored"]
        warn(f"read as {info['format']} because --format said so, but the content carries a "
             f"{found['label']} signature ({found['evidence']})")
    if "footer_problem" in info:
        warn(f"the footer cannot be trusted ({info['footer_problem']}); run `azlift vhd fix` "
             f"to rewrite it")
    if layout.generation_hint is None:
        warn("nothing in the partition table suggests a Hyper-V generation (expected an EFI "
             "system partition on GPT for V2, or BIOS boot code on MBR for V1); a wrong "
             "generation gives a VM that does not boot")


def render_report(report: CheckReport) -> list[str]:
    lines = [f"{report.path}: {report.format}, virtual size {human_size(report.virtual_size)}"
             + (f", role {report.role} disk" if report.role else "")]
    for finding in report.findings:
        lines.append(f"  {finding.severity.upper():<7} {finding.code}: {finding.message}")
    lines.append("ready for Azure" if report.ready else
                 "NOT ready for Azure: fix the errors above")
    return lines


@app.command()
def check(
    image: ImageArgument,
    json_out: JsonOption = False,
    os_disk: Annotated[bool, typer.Option("--os-disk", help="Check as an OS disk "
                                          "(at most 4095 GiB, bootable).")] = False,
    data_disk: Annotated[bool, typer.Option("--data-disk", help="Check as a data disk "
                                            "(at most 32767 GiB).")] = False,
    format: FormatOption = None,  # noqa: A002
    disk: DiskOption = None,
) -> None:
    """Check an image against every rule Azure enforces. Exit 0 ready, 1 not ready, 3 unreadable.

    Examples:

      azlift vhd check disk.vhd --os-disk

      azlift vhd check disk.vhd --json | jq .ready
    """
    if os_disk and data_disk:
        raise typer.BadParameter("expected at most one of --os-disk and --data-disk, found both")
    role = "os" if os_disk else "data" if data_disk else None
    report = vhd.check_path(image, role, _format_name(format), disk)
    if json_out:
        emit_json({"ok": True, **report.to_dict()})
    else:
        _print(render_report(report))
    if not report.ready:
        raise typer.Exit(exit_codes.NOT_READY)


class _ProgressBar:
    """A tqdm bar on stderr when it is a terminal (never in --json or --quiet runs)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar: Any = None
        self.enabled = not (STATE.quiet or STATE.json) and sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                            desc=self.label, file=sys.stderr, leave=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _warn_findings(findings: tuple[vhd.Finding, ...]) -> None:
    for finding in findings:
        warn(f"{finding.code}: {finding.message}")


@app.command()
def convert(
    source: Annotated[str, typer.Argument(metavar="SOURCE", help="Image to read (raw, VHD, "
                                          "VHDX, VMDK, OVA).", show_default=False)],
    dest: Annotated[str, typer.Argument(metavar="DEST", help="Fixed VHD to write.",
                                        show_default=False)],
    size: Annotated[str | None, typer.Option(
        "--size", help="Virtual size of the output, at least the source's: 30G, 30GiB, "
                       "1024M or bytes (binary units; rounded up to a whole MiB).")] = None,
    force: ForceOption = False,
    sync: Annotated[bool, typer.Option(
        "--sync", help="Flush DEST to the device before renaming it into place, so it "
                       "survives a power loss (slower).")] = False,
    cache: Annotated[str, typer.Option(
        "--cache", help="How DEST is written: auto (the first 64 MiB direct, then "
                        "through the page cache while it keeps ahead of that pace, then "
                        "a window direct again and the faster of the two to the end; "
                        "direct throughout with --sync), direct "
                        "(whole blocks straight to the device with O_DIRECT where the "
                        "filesystem allows; the page cache is left "
                        "alone) or buffered (through the page cache).")] = "auto",
    json_out: JsonOption = False,
    quiet: QuietOption = False,
    format: FormatOption = None,  # noqa: A002
    disk: DiskOption = None,
) -> None:
    """Write SOURCE as an Azure-ready fixed VHD at DEST (sparse; SOURCE is never modified).

    Examples:

      azlift vhd convert disk.vhdx disk-azure.vhd

      azlift vhd convert disk.img disk.vhd --size 30G --force
    """
    wanted = parse_size(size) if size is not None else None
    bar = _ProgressBar("converting")
    try:
        # no bar, no progress: the library then skips the pass over the extents that
        # only a bar's total needs
        result = vhd.convert(source, dest, size=wanted, force=force,
                             progress=bar if bar.enabled else None,
                             format=_format_name(format), durable=sync, disk=disk,
                             cache=cache)
    finally:
        bar.close()
    if json_out:
        emit_json({"ok": True, **result.to_dict()})
    else:
        _print([f"wrote {result.dest}: fixed VHD, virtual size "
                f"{human_size(result.virtual_size)}",
                f"  from {result.source_format} {result.source}",
                f"  read {human_size(result.data_bytes)} of data, wrote "
                f"{human_size(result.written_bytes)}, {human_size(result.allocated_bytes)} "
                f"allocated, in {result.seconds:.2f} s"])
    _warn_findings(result.findings)


@app.command()
def fix(image: ImageArgument, json_out: JsonOption = False,
        format: FormatOption = None) -> None:  # noqa: A002
    """Make a raw disk or a misaligned fixed VHD Azure-ready in place, without copying data.

    Crash-safe: rerun it after an interruption to finish. Dynamic VHD and VHDX are refused
    (exit 3): use `azlift vhd convert`.

    Examples:

      azlift vhd fix disk.raw

      azlift vhd fix disk.vhd --json
    """
    result = vhd.fix(image, format=_format_name(format))
    if json_out:
        emit_json({"ok": True, **result.to_dict()})
    elif result.changed:
        _print([f"fixed {result.path} ({result.source_format}): {result.action}, virtual size "
                f"{human_size(result.old_virtual_size)} -> {human_size(result.virtual_size)}",
                *[f"  done: {step}" for step in result.steps]])
    else:
        _print([f"{result.path} is already an Azure-ready fixed VHD; nothing to do"])
    _warn_findings(result.findings)

"""`azlift vhd` commands: inspect, check, convert, fix. Parse, call the library, render."""
from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from .common import DiskOption, ForceOption, JsonOption, QuietOption
from .vhd_run import (IMAGE_FORMATS, disk_role, run_check, run_convert, run_fix, run_inspect,
                      size_bytes)

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

ImageFormat = Enum("ImageFormat", [(name, name) for name in IMAGE_FORMATS], type=str)
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


def parse_size(text: str) -> int:
    """"30G", "30GiB", "1024M", "32212254720" → bytes (binary units, as Azure sizes disks)."""
    size = size_bytes(text)
    if size is None:
        raise typer.BadParameter(
            f"expected a size such as 30G, 30GiB, 1024M or a number of bytes, found {text!r}")
    return size


def _format_name(value: ImageFormat | None) -> str | None:
    return value.value if value is not None else None


def _exit_with(code: int) -> None:
    if code:
        raise typer.Exit(code)


@app.command()
def inspect(image: ImageArgument, json_out: JsonOption = False,
            format: FormatOption = None, disk: DiskOption = None) -> None:  # noqa: A002
    """Show what a disk image holds: format, sizes, headers, partitions, OS and generation.

    Examples:

      azlift vhd inspect disk.vhdx

      azlift vhd inspect disk.img --format raw --json

      azlift vhd inspect vm.ova --disk 2
    """
    _exit_with(run_inspect(image, json_out, _format_name(format), disk))


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
    _exit_with(run_check(image, json_out, disk_role(os_disk, data_disk), _format_name(format),
                         disk))


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
                        "a source that fits easily in the kernel's dirty room tries the "
                        "page cache first and stays there if it runs at memory speed; "
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
    _exit_with(run_convert(source, dest, wanted, force, sync, cache, json_out,
                           _format_name(format), disk))


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
    _exit_with(run_fix(image, json_out, _format_name(format)))

"""What the `azlift vhd` commands do once their arguments are parsed, without typer: the
typer commands (vhd.py) and the command lines answered before typer loads (quick.py) both
call these, so a command prints and exits the same whichever parsed it."""
from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING, Any

from .. import exit_codes
from .output import STATE, emit_json, say, warn

if TYPE_CHECKING:
    from azlift.vhd.check import CheckReport, Finding
    from azlift.vhd.partitions import DiskLayout

IMAGE_FORMATS = ("raw", "vhd", "vhdx", "qcow2", "vmdk", "ova")  # --format's choices
SIZE_UNITS = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}
SIZE_PATTERN = re.compile(r"^\s*(\d+)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)


def size_bytes(text: str) -> int | None:
    """"30G", "30GiB", "1024M", "32212254720" → bytes (binary units, as Azure sizes
    disks); None for anything else."""
    match = SIZE_PATTERN.match(text)
    if not match or (match.group(2) == "" and text.strip().upper().endswith("IB")):
        return None
    return int(match.group(1)) * SIZE_UNITS[match.group(2).upper()]


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


def run_inspect(image: str, json_out: bool, format: str | None,  # noqa: A002
                disk: int | None) -> int:
    """`azlift vhd inspect`; the exit code."""
    from azlift.vhd.check import inspect_path

    info, layout = inspect_path(image, format, disk)
    if layout is None:  # a package of several disks: list them
        if json_out:
            emit_json({"ok": True, **info, "layout": None})
        else:
            _print([image, *render_mapping(info)])
        warn(f"{image} holds {len(info['disks'])} disks; pass --disk N to inspect one")
        return exit_codes.OK
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
    return exit_codes.OK


def render_report(report: CheckReport) -> list[str]:
    lines = [f"{report.path}: {report.format}, virtual size {human_size(report.virtual_size)}"
             + (f", role {report.role} disk" if report.role else "")]
    for finding in report.findings:
        lines.append(f"  {finding.severity.upper():<7} {finding.code}: {finding.message}")
    lines.append("ready for Azure" if report.ready else
                 "NOT ready for Azure: fix the errors above")
    return lines


def disk_role(os_disk: bool, data_disk: bool) -> str | None:
    """The role `vhd check` judges the image for: --os-disk, --data-disk or neither."""
    return "os" if os_disk else "data" if data_disk else None


def run_check(image: str, json_out: bool, role: str | None, format: str | None,  # noqa: A002
              disk: int | None) -> int:
    """`azlift vhd check`; the exit code (NOT_READY when Azure would refuse the image)."""
    from azlift.vhd.check import check_path

    report = check_path(image, role, format, disk)
    if json_out:
        emit_json({"ok": True, **report.to_dict()})
    else:
        _print(render_report(report))
    return exit_codes.OK if report.ready else exit_codes.NOT_READY


class ProgressBar:
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


def warn_findings(findings: tuple[Finding, ...]) -> None:
    for finding in findings:
        warn(f"{finding.code}: {finding.message}")


def run_convert(source: str, dest: str, size: int | None, force: bool, sync: bool,
                cache: str, json_out: bool, format: str | None,  # noqa: A002
                disk: int | None) -> int:
    """`azlift vhd convert`; the exit code."""
    from azlift.vhd import convert

    bar = ProgressBar("converting")
    try:
        # no bar, no progress: the library then skips the pass over the extents that
        # only a bar's total needs
        result = convert(source, dest, size=size, force=force,
                         progress=bar if bar.enabled else None, format=format,
                         durable=sync, disk=disk, cache=cache)
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
    warn_findings(result.findings)
    return exit_codes.OK


def run_fix(image: str, json_out: bool, format: str | None) -> int:  # noqa: A002
    """`azlift vhd fix`; the exit code."""
    from azlift.vhd import fix

    result = fix(image, format=format)
    if json_out:
        emit_json({"ok": True, **result.to_dict()})
    elif result.changed:
        _print([f"fixed {result.path} ({result.source_format}): {result.action}, virtual "
                f"size {human_size(result.old_virtual_size)} -> "
                f"{human_size(result.virtual_size)}",
                *[f"  done: {step}" for step in result.steps]])
    else:
        _print([f"{result.path} is already an Azure-ready fixed VHD; nothing to do"])
    warn_findings(result.findings)
    return exit_codes.OK

"""Make a raw disk or a misaligned fixed VHD Azure-ready in place, without copying data.

``fix`` runs as a short list of durable steps, each leaving a state that ``check``
recognises and that a second ``fix`` completes (README.md "fix and interruptions").
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ._vhd_structs import DISK_TYPE_FIXED, FOOTER_SIZE, Footer, azure_virtual_size
from .check import (
    Finding,
    check_output_rules,
    find_stale_footer,
    footer_rules,
    open_with_damaged_footer,
)
from .conversion import Progress, footer_for, pwrite_all
from ._signatures import VHD_SET
from .detect import FORMAT_ALIASES, Detection, container_error, detect_format
from .errors import FixUnsupportedError, ImageIOError
from .image import DiskImage


@dataclass(frozen=True)
class FixStep:
    """One durable write of ``fix``; ``data`` goes at ``offset`` (None: only truncate)."""

    name: str
    description: str
    offset: int
    data: bytes | None = None
    truncate_to: int | None = None

    def apply(self, fd: int) -> None:
        if self.truncate_to is not None:
            os.ftruncate(fd, self.truncate_to)
        if self.data is not None:
            pwrite_all(fd, self.data, self.offset)
        os.fsync(fd)


@dataclass(frozen=True)
class FixPlan:
    """What ``fix`` will do to one file, decided before the first write."""

    path: str
    source_format: str
    old_virtual_size: int
    virtual_size: int
    action: str  # none | append_footer | extend | rewrite_footer | finish_interrupted_fix
    steps: tuple[FixStep, ...]


@dataclass(frozen=True)
class FixResult:
    """What ``fix`` did."""

    path: str
    source_format: str
    action: str
    old_virtual_size: int
    virtual_size: int
    steps: tuple[str, ...]
    findings: tuple[Finding, ...] = field(default_factory=tuple)

    @property
    def changed(self) -> bool:
        return bool(self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "source_format": self.source_format,
                "action": self.action, "changed": self.changed,
                "old_virtual_size": self.old_virtual_size, "virtual_size": self.virtual_size,
                "file_size": self.virtual_size + FOOTER_SIZE, "steps": list(self.steps),
                "findings": [f.to_dict() for f in self.findings]}


def plan_fix(path: str, format: str | None = None) -> FixPlan:  # noqa: A002
    """Read ``path`` and decide the steps that make it an Azure-ready fixed VHD in place.

    A fixed VHD whose footer azlift cannot open the disk with (bad checksum, unknown disk
    type or version) is planned from that footer, as ``check`` reports it, so the footer
    can be rewritten: the data must then be exactly the footer's current size.
    """
    _refuse_container(path, format)
    image, damaged = open_with_damaged_footer(path, format)
    with image:
        if damaged is not None:
            return _plan_fixed(image, damaged,
                               image.file_size - FOOTER_SIZE)  # type: ignore[attr-defined]
        if image.format == "raw":
            return _plan_raw(image)
        if image.format == "vhd-fixed":
            return _plan_fixed(image, image.footer,  # type: ignore[attr-defined]
                               image.data_size)  # type: ignore[attr-defined]
        raise FixUnsupportedError(
            f"{path} is a {image.format} image; `azlift vhd fix` works in place only on raw "
            f"disks and fixed VHDs. Expected one of those; run `azlift vhd convert "
            f"{path} OUTPUT.vhd` to write an Azure-ready copy")


def _refuse_container(path: str, format: str | None) -> None:  # noqa: A002
    """``fix`` writes in place, so it acts only on a file positively identified as a raw
    disk or a VHD: a container signature refuses it even under --format, and so does a
    --format that contradicts what the content is (raw forced on a VHDX, say)."""
    detection = detect_format(path)
    if os.path.splitext(path)[1].lower() == ".vhds":
        detection = Detection("vhds", VHD_SET)
    forced = FORMAT_ALIASES.get(format.lower()) if format is not None else None
    if detection.signature is None and forced in (None, detection.format):
        return
    if format is None:
        raise container_error(path, detection)
    found = (f"carries a {detection.signature.label} signature "
             f"({detection.signature.describe_magic()})" if detection.signature is not None
             else f"is a {detection.format.upper()} image")
    raise FixUnsupportedError(
        f"{path}: --format {format} was given but the content {found}; `azlift vhd fix` "
        f"rewrites a file in place only when it is positively a raw disk or a fixed VHD, "
        f"so the file was left untouched. If it really is a raw disk, `azlift vhd convert "
        f"--format raw {path} OUTPUT.vhd` writes an Azure-ready copy")


def _plan_raw(image: DiskImage) -> FixPlan:
    length = image.file_size  # type: ignore[attr-defined]
    target = azure_virtual_size(length)
    footer = footer_for(image, target).pack()
    steps = []
    if target != length:
        steps.append(FixStep("extend", f"extend the file from {length} to {target} bytes "
                             f"(zeros, a hole)", target, truncate_to=target))
    steps.append(FixStep("append_footer", f"append the fixed VHD footer at {target}",
                         target, footer))
    return FixPlan(image.path, "raw", image.virtual_size, target, "append_footer", tuple(steps))


def _plan_fixed(image: DiskImage, footer: Footer, data_size: int) -> FixPlan:
    """Steps for a fixed VHD holding ``data_size`` bytes before ``footer``."""
    current = footer.current_size
    file_size = image.file_size  # type: ignore[attr-defined]
    if data_size != current:
        raise FixUnsupportedError(
            f"{image.path}: the footer says {current} bytes of data, the file holds "
            f"{data_size} before the footer; expected them equal. Run `azlift vhd convert` "
            f"to write a clean copy")
    target = azure_virtual_size(current)
    if target != current:
        new_footer = _keep_identity(footer, footer_for(image, target)).pack()
        # A footer that breaks a rule is first made valid where it is: otherwise, after an
        # interruption, ``check`` could not recognise it as a stale footer inside the data.
        repair = (FixStep("rewrite_footer", f"rewrite the footer at {current} with the "
                          f"fields Azure expects", current, _keep_identity(
                              footer, footer_for(image, current)).pack()),
                  ) if footer_rules(footer) else ()
        steps = repair + (
            FixStep("write_new_footer", f"write the new footer at {target} (extends the "
                    f"file; the old footer at {current} is now inside the data)",
                    target, new_footer),
            FixStep("zero_old_footer", f"zero the old footer at {current}", current,
                    bytes(FOOTER_SIZE)),
        )
        return FixPlan(image.path, "vhd-fixed", current, target, "extend", steps)
    stale = find_stale_footer(image, current)
    if stale is not None:
        step = FixStep("zero_old_footer", f"zero the footer an interrupted fix left at "
                       f"{stale}", stale, bytes(FOOTER_SIZE))
        return FixPlan(image.path, "vhd-fixed", current, current, "finish_interrupted_fix",
                       (step,))
    if footer_rules(footer) or file_size != current + FOOTER_SIZE:
        step = FixStep("rewrite_footer", f"rewrite the footer at {current} with the fields "
                       f"Azure expects", current, _keep_identity(
                           footer, footer_for(image, current)).pack())
        return FixPlan(image.path, "vhd-fixed", current, current, "rewrite_footer", (step,))
    return FixPlan(image.path, "vhd-fixed", current, current, "none", ())


def _keep_identity(old: Footer, new: Footer) -> Footer:
    """``new`` with ``old``'s unique id, timestamp and creator (the same disk, resized)."""
    if old.disk_type != DISK_TYPE_FIXED:
        return new
    return new._replace(timestamp=old.timestamp, unique_id=old.unique_id).with_checksum()


def apply_fix(plan: FixPlan, *, stop_after: int | None = None,
              progress: Progress | None = None) -> tuple[str, ...]:
    """Run ``plan``'s steps in order (``stop_after`` steps only: to test interruptions)."""
    steps = plan.steps if stop_after is None else plan.steps[:stop_after]
    if not steps:
        return ()
    try:
        fd = os.open(plan.path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        raise ImageIOError(f"cannot open {plan.path} for writing: {error.strerror}") from error
    try:
        for number, step in enumerate(steps, start=1):
            step.apply(fd)
            if progress:
                progress(number, len(steps))
    except OSError as error:
        raise ImageIOError(f"cannot write {plan.path}: {error.strerror}; run `azlift vhd "
                           f"fix` again once the cause is removed") from error
    finally:
        os.close(fd)
    return tuple(step.name for step in steps)


def fix(path: str, progress: Progress | None = None, *,
        format: str | None = None) -> FixResult:  # noqa: A002
    """Make ``path`` an Azure-ready fixed VHD in place, without copying data."""
    plan = plan_fix(os.fspath(path), format)
    done = apply_fix(plan, progress=progress)
    return FixResult(plan.path, plan.source_format, plan.action, plan.old_virtual_size,
                     plan.virtual_size, done, tuple(check_output_rules(plan.virtual_size)))

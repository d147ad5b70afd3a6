"""Command lines answered before typer loads: ``azlift [--debug] vhd inspect|check|convert``
with plain arguments.

Importing typer (and the click it vendors) takes 65-80 ms on a 2-core machine: more than
checking an image does, and a pipeline that checks every image it builds pays it each
time. A command line this module parses completely runs the same function the typer
command runs (vhd_run.py), inside the same boundary (boundary.py). Anything it does not
take as plainly valid (help, an unknown, repeated or abbreviated option, a value out of
range, a missing or extra argument, ``--``, an argument that begins with a dash) is left
to typer, so help and usage errors read exactly as typer writes them.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, NamedTuple

from .boundary import failure_exit_code, terminate_as_interrupt
from .output import STATE
from .vhd_run import IMAGE_FORMATS, disk_role, run_check, run_convert, run_inspect, size_bytes

Converter = Callable[[str], Any]  # the value, or None where typer should judge it
POSITIVE = re.compile(r"[1-9][0-9]*\Z")


def _image_format(text: str) -> str | None:
    """--format: a choice, case-insensitive as typer's."""
    return text.lower() if text.lower() in IMAGE_FORMATS else None


def _disk_number(text: str) -> int | None:
    """--disk: 1 or more."""
    return int(text) if POSITIVE.match(text) else None


class Command(NamedTuple):
    """One command's grammar: its arguments in order, its flags and valued options (each
    option -> parameter name), and what runs it (None where typer must judge the
    combination)."""

    arguments: tuple[str, ...]
    run: Callable[[dict[str, Any]], Callable[[], int] | None]
    flags: dict[str, str]
    values: dict[str, tuple[str, Converter]]


IMAGE_OPTIONS = {"--format": ("format", _image_format), "--disk": ("disk", _disk_number)}


def _check(given: dict[str, Any]) -> Callable[[], int] | None:
    if given.get("os_disk") and given.get("data_disk"):
        return None  # typer's usage error
    role = disk_role(given.get("os_disk", False), given.get("data_disk", False))
    return lambda: run_check(given["image"], given.get("json_out", False), role,
                             given.get("format"), given.get("disk"))


def _inspect(given: dict[str, Any]) -> Callable[[], int]:
    return lambda: run_inspect(given["image"], given.get("json_out", False),
                               given.get("format"), given.get("disk"))


def _convert(given: dict[str, Any]) -> Callable[[], int]:
    return lambda: run_convert(given["source"], given["dest"], given.get("size"),
                               given.get("force", False), given.get("sync", False),
                               given.get("cache", "auto"), given.get("json_out", False),
                               given.get("format"), given.get("disk"))


COMMANDS: dict[str, Command] = {
    "check": Command(("image",), _check,
                     {"--json": "json_out", "--os-disk": "os_disk", "--data-disk": "data_disk"},
                     IMAGE_OPTIONS),
    "inspect": Command(("image",), _inspect, {"--json": "json_out"}, IMAGE_OPTIONS),
    "convert": Command(("source", "dest"), _convert,
                       {"--json": "json_out", "--force": "force", "--sync": "sync",
                        "--quiet": "quiet", "-q": "quiet"},
                       {**IMAGE_OPTIONS, "--size": ("size", size_bytes),
                        "--cache": ("cache", str)}),
}


class Parsed(NamedTuple):
    """A command line taken whole: the root's --debug, the parameters, what runs it."""

    debug: bool
    given: dict[str, Any]
    run: Callable[[], int]


def parse(args: list[str]) -> Parsed | None:
    """``args`` parsed as one of COMMANDS, or None where typer should parse them."""
    debug = args[:1] == ["--debug"]
    words = args[1:] if debug else args
    if len(words) < 2 or words[0] != "vhd" or words[1] not in COMMANDS:
        return None
    command = COMMANDS[words[1]]
    given: dict[str, Any] = {}
    positional: list[str] = []
    rest = iter(words[2:])
    for word in rest:
        if not word.startswith("-"):
            positional.append(word)
            continue
        name, equals, value = word.partition("=")
        if name in command.flags and not equals:
            key, converted = command.flags[name], True
        elif name in command.values:
            key, convert = command.values[name]
            if not equals:
                value = next(rest, "-")
            try:
                converted = None if value.startswith("-") else convert(value)
            except ValueError:  # e.g. more digits than int() takes: typer reports it
                converted = None
            if converted is None:
                return None
        else:
            return None  # help, --, an unknown or abbreviated option
        if key in given:
            return None  # repeated (or --quiet with -q): typer's rules
        given[key] = converted
    if len(positional) != len(command.arguments):
        return None
    given.update(zip(command.arguments, positional))
    run = command.run(given)
    return None if run is None else Parsed(debug, given, run)


def run_quick(args: list[str]) -> int | None:
    """Run ``args`` if this module takes them; the exit code, or None for typer."""
    parsed = parse(args)
    if parsed is None:
        return None
    STATE.debug = parsed.debug
    STATE.json = bool(parsed.given.get("json_out"))
    STATE.quiet = bool(parsed.given.get("quiet"))
    try:
        with terminate_as_interrupt():
            return parsed.run()
    except (KeyboardInterrupt, Exception) as error:  # noqa: BLE001 - the boundary
        return failure_exit_code(error)

"""`vhd inspect|check|convert` command lines answered before typer loads (quick.py): the
ones it takes print and exit exactly as typer's app does; the rest are left to typer."""
from __future__ import annotations

import os
import random
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from azlift.cli import quick, root
from tests.support import disk_layouts as layouts
from tests.vhd.images import MIB, qemu_img

IMAGES = ("ready.vhd", "unaligned.raw", "disk.qcow2", "windows.img", "missing.vhd",
          "broken.vhd", "folder")
OUTPUTS = ("out.vhd", "exists.vhd")
OPTIONS = (("--json",), ("--os-disk",), ("--data-disk",), ("--format", "raw"),
           ("--format", "VHD"), ("--format", "qcow2"), ("--format=raw",), ("--disk", "1"),
           ("--disk", "2"), ("--disk=1",), ("--size", "64M"), ("--size", "1G"),
           ("--size=100M",), ("--force",), ("--sync",), ("--quiet",), ("-q",),
           ("--cache", "direct"), ("--cache", "buffered"), ("--cache", "sideways"),
           ("--cache=direct",))
JUNK = (("extra.vhd",), ("--help",), ("-h",), ("--",), ("--jso",), ("-",), ("--disk", "0"),
        ("--disk", "x"), ("--disk",), ("--format", "bogus"), ("--size", "12Q"), ("--debug",),
        ("--json=1",), ("-qh",), ("raw",))
EXISTING = b"an earlier output\n"


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder of inputs each command meets in practice: ready, not ready, another
    format, a bootable layout, missing, damaged, and a folder where a file is expected."""
    folder = tmp_path_factory.mktemp("quick")
    qemu_img("create", "-q", "-f", "vpc", "-o", "subformat=fixed,force_size=on",
             folder / "ready.vhd", "8M")
    (folder / "unaligned.raw").write_bytes(random.Random(1).randbytes(3 * MIB + 512))
    qemu_img("convert", "-f", "raw", "-O", "qcow2", folder / "unaligned.raw",
             folder / "disk.qcow2")
    layouts.windows_gpt_disk(folder / "windows.img", 32 * MIB)
    broken = bytearray((folder / "ready.vhd").read_bytes())
    broken[-512 + 64] ^= 0xFF  # the footer's checksum no longer matches
    (folder / "broken.vhd").write_bytes(bytes(broken))
    (folder / "folder").mkdir()
    yield folder


def reset(folder: Path) -> None:
    """Outputs of an earlier run gone; the existing output as it was."""
    for name in ("out.vhd", "extra.vhd"):
        (folder / name).unlink(missing_ok=True)
    (folder / "exists.vhd").write_bytes(EXISTING)


SECONDS = re.compile(r'(in )\d+\.\d\d( s)|("seconds": )[0-9.e-]+')
FRAMES = re.compile(r"^Traceback \(most recent call last\):\n(?:  .*\n)+", re.MULTILINE)


def outcome(run, args: list[str], capfd: pytest.CaptureFixture[str]) -> tuple:
    """Exit code, stdout, stderr (timings masked) and the output file, of one way."""
    capfd.readouterr()
    code = run(args)
    out, err = capfd.readouterr()
    written = Path("out.vhd").read_bytes() if Path("out.vhd").exists() else None
    existing = Path("exists.vhd").read_bytes()
    # timings differ from run to run, and --debug's frames by who called the command
    masked = [FRAMES.sub("Traceback\n", SECONDS.sub(
        lambda m: (m.group(1) or m.group(3)) + "T" + (m.group(2) or ""), text))
        for text in (out, err)]
    return code, *masked, written, existing


def both_ways(args: list[str], folder: Path, capfd) -> tuple[tuple, tuple]:
    reset(folder)
    taken = outcome(quick.run_quick, args, capfd)
    reset(folder)
    typer_way = outcome(lambda a: root.run(a, exit_process=False), args, capfd)
    reset(folder)
    return taken, typer_way


TAKEN = [
    ["vhd", "check", "ready.vhd"],
    ["vhd", "check", "ready.vhd", "--json"],
    ["vhd", "check", "--os-disk", "windows.img"],
    ["vhd", "check", "unaligned.raw", "--data-disk", "--json"],
    ["vhd", "check", "disk.qcow2", "--format", "QCOW2"],
    ["vhd", "check", "disk.qcow2", "--format=raw"],
    ["vhd", "check", "missing.vhd"],
    ["vhd", "check", "broken.vhd", "--json"],
    ["vhd", "check", "folder"],
    ["vhd", "check", "unaligned.raw", "--disk", "2"],
    ["--debug", "vhd", "check", "broken.vhd"],
    ["vhd", "inspect", "windows.img"],
    ["vhd", "inspect", "disk.qcow2", "--json"],
    ["vhd", "inspect", "ready.vhd", "--format", "raw"],
    ["vhd", "inspect", "missing.vhd", "--json"],
    ["vhd", "convert", "disk.qcow2", "out.vhd"],
    ["vhd", "convert", "unaligned.raw", "out.vhd", "--json", "--size", "8M"],
    ["vhd", "convert", "--size=1G", "ready.vhd", "out.vhd", "-q", "--cache", "buffered"],
    ["vhd", "convert", "ready.vhd", "out.vhd", "--size", "1M"],
    ["vhd", "convert", "ready.vhd", "exists.vhd"],
    ["vhd", "convert", "ready.vhd", "exists.vhd", "--force", "--sync", "--json"],
    ["vhd", "convert", "ready.vhd", "out.vhd", "--cache", "sideways"],
    ["vhd", "convert", "ready.vhd", "ready.vhd", "--force"],
    ["vhd", "convert", "missing.vhd", "out.vhd", "--quiet"],
    ["vhd", "convert", "windows.img", "folder"],
]


@pytest.mark.parametrize("args", TAKEN, ids=" ".join)
def test_a_command_line_it_takes_runs_as_typer_runs_it(args, images: Path, capfd,
                                                       monkeypatch) -> None:
    monkeypatch.chdir(images)
    assert quick.parse(args) is not None
    taken, typer_way = both_ways(args, images, capfd)
    assert taken == typer_way


LEFT_TO_TYPER = [
    [], ["vhd"], ["vhd", "check"], ["vhd", "check", "--help"], ["vhd", "check", "-h"],
    ["--help"], ["vhd", "--help", "check", "x"], ["vhd", "fix", "x"], ["upload", "x", "y"],
    ["vhd", "check", "a", "b"], ["vhd", "convert", "a"], ["vhd", "check", "--", "a"],
    ["vhd", "check", "-"], ["vhd", "check", "a", "--os-disk", "--data-disk"],
    ["vhd", "check", "a", "--disk", "0"], ["vhd", "check", "a", "--disk", "x"],
    ["vhd", "check", "a", "--disk"], ["vhd", "check", "a", "--format", "bogus"],
    ["vhd", "check", "a", "--json", "--json"], ["vhd", "check", "a", "--jso"],
    ["vhd", "check", "a", "--json=1"], ["vhd", "check", "a", "--size", "1G"],
    ["vhd", "convert", "a", "b", "--size", "12Q"], ["vhd", "convert", "a", "b", "-q", "--quiet"],
    ["vhd", "convert", "a", "b", "--cache", "--json"], ["vhd", "--debug", "check", "a"],
    ["--debug", "--debug", "vhd", "check", "a"], ["vhd", "convert", "a", "b", "-qh"],
    ["vhd", "check", "a", "--disk", "1" * 5000],  # more digits than int() takes
    ["vhd", "convert", "a", "b", "--size", "9" * 5000],
]


@pytest.mark.parametrize("args", LEFT_TO_TYPER, ids=lambda args: " ".join(args)[:60])
def test_anything_else_is_left_to_typer(args) -> None:
    assert quick.parse(args) is None


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(debug=st.booleans(), command=st.sampled_from(("check", "inspect", "convert")),
       source=st.sampled_from(IMAGES), dest=st.sampled_from(OUTPUTS),
       options=st.lists(st.sampled_from(OPTIONS), max_size=4),
       junk=st.lists(st.sampled_from(JUNK), max_size=1), order=st.randoms())
def test_any_command_line_it_takes_runs_as_typer_runs_it(debug, command, source, dest,
                                                         options, junk, order, images: Path,
                                                         capfd, monkeypatch) -> None:
    """Arguments, options, values and junk in any order: wherever quick.py takes the line,
    typer's app, given the same line, prints the same and exits the same."""
    monkeypatch.chdir(images)
    units = [(source,), *([(dest,)] if command == "convert" else []), *options, *junk]
    order.shuffle(units)
    args = [*(["--debug"] if debug else []), "vhd", command, *(w for unit in units for w in unit)]
    if quick.parse(args) is None:
        return
    taken, typer_way = both_ways(args, images, capfd)
    assert taken == typer_way


def test_the_quick_commands_run_in_the_boundary(images: Path, capfd, monkeypatch) -> None:
    """An unexpected error is one line and the internal-error exit code, as under typer."""
    monkeypatch.chdir(images)

    def boom(*args: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("azlift.vhd.check.check_path", boom)
    taken, typer_way = both_ways(["vhd", "check", "ready.vhd"], images, capfd)
    assert taken == typer_way
    assert taken[0] == 70 and "internal error: RuntimeError: a bug" in taken[2]


def test_sigterm_during_a_quick_command_is_an_interrupt(images: Path, capfd,
                                                        monkeypatch) -> None:
    monkeypatch.chdir(images)

    def terminated(*args: object) -> None:
        os.kill(os.getpid(), 15)

    monkeypatch.setattr("azlift.vhd.check.check_path", terminated)
    taken, typer_way = both_ways(["vhd", "check", "ready.vhd"], images, capfd)
    assert taken == typer_way
    assert taken[0] == 130 and taken[2] == "azlift: interrupted\n"


# --- the end of the process: output flushed, then no interpreter teardown -------------
def run_installed(args: list[str], images: Path, **streams: object) -> "subprocess.CompletedProcess[bytes]":
    import subprocess

    from tests.cli.conftest import installed_azlift

    return subprocess.run([installed_azlift(), *args], cwd=images, timeout=120, **streams)


def test_a_quick_command_flushes_everything_it_printed(images: Path) -> None:
    """Through pipes, from the installed command that ends with exit_now: the JSON
    document arrives whole, with the exit code the command chose, and nothing on stderr.
    (Each write is flushed as it is made; that exit_now sends what is still buffered is
    test_exit_now_sends_what_is_buffered_or_says_why_not's to show.)"""
    import json
    import subprocess

    done = run_installed(["vhd", "check", "unaligned.raw", "--json"], images,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    report = json.loads(done.stdout)
    assert done.returncode == 1 and report["ready"] is False
    assert done.stderr == b""
    converted = run_installed(["vhd", "convert", "unaligned.raw", "piped.vhd", "--force"],
                              images, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert converted.returncode == 0, converted.stderr
    assert b"wrote piped.vhd" in converted.stdout


def test_a_reader_that_went_away_is_no_failure(images: Path) -> None:
    """`azlift vhd inspect x | head -0`: the output is unwanted, the command still did
    its work; no 'Exception ignored' noise from a flush at exit."""
    import subprocess

    reader, writer = os.pipe()
    os.close(reader)
    try:
        done = run_installed(["vhd", "inspect", "ready.vhd", "--json"], images,
                             stdout=writer, stderr=subprocess.PIPE)
    finally:
        os.close(writer)
    assert done.returncode == 0
    assert done.stderr == b""


def test_output_that_cannot_be_written_is_one_line_and_bad_input(images: Path) -> None:
    import subprocess

    with open("/dev/full", "wb") as full:
        done = run_installed(["vhd", "inspect", "ready.vhd"], images, stdout=full,
                             stderr=subprocess.PIPE)
    assert done.returncode == 3
    assert done.stderr == b"azlift: error: could not write the output: No space left on device\n"


EXIT_NOW = """
import sys
from azlift.cli.main import exit_now
sys.stdout.write("left in the buffer\\n")  # no flush: exit_now's own must send it
exit_now(int(sys.argv[1]))
"""


@pytest.mark.parametrize("stdout", ["pipe", "closed pipe", "full disk"])
@pytest.mark.parametrize("code", [0, 1])
def test_exit_now_sends_what_is_buffered_or_says_why_not(stdout: str, code: int) -> None:
    import subprocess
    import sys

    reader, writer = os.pipe()
    if stdout == "closed pipe":
        os.close(reader)
    target = open("/dev/full", "wb") if stdout == "full disk" else writer
    try:
        buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
        done = subprocess.run([sys.executable, "-c", EXIT_NOW, str(code)], stdout=target,
                              stderr=subprocess.PIPE, timeout=60, env=buffered)
    finally:
        os.close(writer)
        if stdout == "full disk":
            target.close()
    if stdout == "pipe":
        with os.fdopen(reader, "rb") as received:
            assert received.read() == b"left in the buffer\n"
    if stdout == "full disk" and code == 0:  # success that could not be reported
        assert done.returncode == 3
        assert done.stderr == b"azlift: error: could not write the output: No space left on device\n"
    else:  # a failure already said why; a reader that went away is no failure
        assert (done.returncode, done.stderr) == (code, b"")


@pytest.mark.parametrize("stdout", ["closed pipe", "full disk"])
def test_a_failure_whose_json_cannot_be_written_still_says_why(images: Path,
                                                                stdout: str) -> None:
    """The failure's own exit code and its stderr line, with no traceback, when --json's
    stdout is the thing that refuses."""
    import subprocess

    reader, writer = os.pipe()
    os.close(reader)
    target = open("/dev/full", "wb") if stdout == "full disk" else writer
    try:
        done = run_installed(["vhd", "check", "missing.vhd", "--json"], images, stdout=target,
                             stderr=subprocess.PIPE)
    finally:
        os.close(writer)
        if stdout == "full disk":
            target.close()
    assert done.returncode == 3
    assert done.stderr.decode().startswith("azlift: error: ")
    assert done.stderr.count(b"\n") == 1 and b"missing.vhd" in done.stderr

"""`azlift vhd inspect|check|convert|fix`: exit codes, JSON, odd file names, malformed input."""
from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import threading
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from azlift.cli.main import app, terminate_as_interrupt
from azlift.cli.vhd import parse_size
from azlift.vhd import cache_policy  # patched there: convert looks it up at each call
from azlift.vhd.cache_policy import choose_cache, fits_easily, machine_room
from tests.cli.conftest import installed_azlift
from tests.support import disk_layouts as layouts
from tests.vhd import corpus
from tests.vhd.images import MIB, make_dynamic_vhd, make_fixed_vhd, qemu_img, read_footer


@pytest.fixture
def windows_disk(tmp_path: Path) -> Path:
    return Path(layouts.windows_gpt_disk(tmp_path / "win.img", 48 * MIB + 1000))


def one_error_line(run) -> str:
    assert "Traceback" not in run.err
    assert len(run.err_lines) == 1, run.err
    assert run.err_lines[0].startswith("azlift: error: ")
    return run.err_lines[0]


# --- inspect --------------------------------------------------------------------------
def test_inspect_human_shows_layout_and_hints(run_main, windows_disk: Path) -> None:
    run = run_main("vhd", "inspect", windows_disk)
    assert run.code == 0
    assert "partition table: gpt" in run.out
    assert "EFI system partition" in run.out and "fs ntfs" in run.out
    assert "generation hint: V2" in run.out and "OS type hint: windows" in run.out
    assert run.err == ""


def test_inspect_json_merges_describe_and_layout(run_main, tmp_path: Path,
                                                 windows_disk: Path) -> None:
    dynamic = make_dynamic_vhd(windows_disk, tmp_path / "win.vhd")
    run = run_main("vhd", "inspect", dynamic, "--json")
    assert run.code == 0
    document = json.loads(run.out)
    assert document["ok"] is True
    assert document["format"] == "vhd-dynamic"
    assert document["footer"]["disk_type"] == "dynamic"
    assert document["layout"]["generation_hint"] == "V2"
    assert [p["filesystem"] for p in document["layout"]["partitions"]] == [
        "fat32", "unknown", "ntfs"]


def test_inspect_warns_when_no_generation_is_suggested(run_main, tmp_path: Path) -> None:
    blank = layouts.write_disk(tmp_path / "blank.img", 4 * MIB, {})
    run = run_main("vhd", "inspect", blank, "--json")
    assert run.code == 0
    assert json.loads(run.out)["layout"]["generation_hint"] is None
    assert "azlift: warning: nothing in the partition table suggests a Hyper-V generation" \
        in run.err


# --- check ----------------------------------------------------------------------------
def test_check_ready_exits_0_and_json_is_the_documented_schema(run_main, tmp_path: Path,
                                                               windows_disk: Path) -> None:
    whole_mib = layouts.windows_gpt_disk(tmp_path / "whole.img", 48 * MIB)
    fixed = make_fixed_vhd(whole_mib, tmp_path / "ok.vhd", force_size=True)
    run = run_main("vhd", "check", fixed, "--os-disk", "--json")
    assert run.code == 0, run.out
    document = json.loads(run.out)
    assert (document["ok"], document["ready"], document["role"]) == (True, True, "os")
    assert document["schema"] == "azlift.vhd.check/1"
    assert document["generation_hint"] == "V2"


def test_check_not_ready_exits_1_with_findings(run_main, tmp_path: Path,
                                               windows_disk: Path) -> None:
    misaligned = make_fixed_vhd(windows_disk, tmp_path / "chs.vhd", force_size=False)
    run = run_main("vhd", "check", misaligned)
    assert run.code == 1
    assert "ERROR   size_not_whole_mib" in run.out
    assert "azlift vhd fix" in run.out
    assert "NOT ready" in run.out
    json_run = run_main("vhd", "check", misaligned, "--json")
    assert json_run.code == 1
    assert "size_not_whole_mib" in [f["code"] for f in json.loads(json_run.out)["findings"]]


def test_check_small_disk_is_not_ready(run_main, tmp_path: Path) -> None:
    small = layouts.write_disk(tmp_path / "small.img", 8 * MIB, {})
    run = run_main("vhd", "check", small, "--data-disk", "--json")
    assert run.code == 1
    assert json.loads(run.out)["summary"]["errors"] == 1


def test_check_both_roles_is_a_usage_error(run_main, windows_disk: Path) -> None:
    run = run_main("vhd", "check", windows_disk, "--os-disk", "--data-disk")
    assert run.code == 2
    assert "Traceback" not in run.err


def test_check_missing_file_exits_3_and_json_error_document(run_main, tmp_path: Path) -> None:
    run = run_main("vhd", "check", tmp_path / "nope.vhd", "--json")
    assert run.code == 3
    document = json.loads(run.out)
    assert document["ok"] is False and document["error"]["exit_code"] == 3
    assert "no such file" in one_error_line(run)


def test_check_raw_named_vhd_needs_format(run_main, tmp_path: Path) -> None:
    disk = layouts.write_disk(tmp_path / "disk.vhd", 20 * MIB, {})
    assert run_main("vhd", "check", disk).code == 3
    assert run_main("vhd", "check", disk, "--format", "raw").code == 0


# --- convert --------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("30G", 30 * 1024 ** 3), ("30GiB", 30 * 1024 ** 3), ("1024M", 1024 * MIB),
    ("1024m", 1024 * MIB), ("2T", 2 * 1024 ** 4), ("512K", 512 * 1024), ("1048576", MIB),
    ("20 MiB", 20 * MIB), ("7GB", 7 * 1024 ** 3),
])
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "G", "1.5G", "-3M", "30X", "ten", "30 iB", "0x10"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_size(text)


def test_convert_json_and_qemu_agrees(run_main, tmp_path: Path, windows_disk: Path) -> None:
    out = tmp_path / "out.vhd"
    run = run_main("vhd", "convert", windows_disk, out, "--size", "60M", "--json")
    assert run.code == 0, run.err
    document = json.loads(run.out)
    assert (document["ok"], document["virtual_size"]) == (True, 60 * MIB)
    assert document["file_size"] == out.stat().st_size
    qemu_img("compare", "-f", "raw", "-F", "vpc", windows_disk, out)


def test_convert_with_sync(run_main, tmp_path: Path, windows_disk: Path) -> None:
    out = tmp_path / "synced.vhd"
    run = run_main("vhd", "convert", "--sync", "--quiet", windows_disk, out)
    assert run.code == 0, run.err
    assert "wrote" in run.out
    qemu_img("compare", "-f", "raw", "-F", "vpc", windows_disk, out)


def test_convert_cache_option(run_main, tmp_path: Path, windows_disk: Path,
                              monkeypatch) -> None:
    for cache in ("direct", "buffered"):
        run = run_main("vhd", "convert", "--json", "--cache", cache, windows_disk,
                       tmp_path / f"{cache}.vhd")
        assert run.code == 0, run.err
        document = json.loads(run.out)
        assert (document["direct_bytes"] > 0) == (cache == "direct"), document
        assert document["cache"] == cache
    # the default (auto) measures its way, and says which ways it went from which byte: a
    # disk shorter than the first measure goes one way throughout, the page cache where it
    # fits easily in the kernel's room, else direct
    assert machine_room() is not None  # this machine's /proc says
    for room, first in ((1 << 40, "buffered"), (windows_disk.stat().st_blocks * 512, "direct")):
        assert fits_easily(windows_disk.stat().st_blocks * 512, room) == (first == "buffered")
        monkeypatch.setattr(cache_policy, "machine_room", lambda room=room: room)
        out = tmp_path / f"auto-{first}.vhd"
        run = run_main("vhd", "convert", "--json", windows_disk, out)
        assert run.code == 0, run.err
        document = json.loads(run.out)
        assert document["cache"] == choose_cache(room) == "auto"
        assert document["cache_phases"] == [{"mode": first, "after_bytes_written": 0}]
        assert out.read_bytes() == (tmp_path / "direct.vhd").read_bytes()
    assert (tmp_path / "direct.vhd").read_bytes() == (tmp_path / "buffered.vhd").read_bytes()
    refused = run_main("vhd", "convert", "--cache", "fast", windows_disk, tmp_path / "x.vhd")
    assert refused.code == 2
    assert refused.err.strip().splitlines() == [
        "azlift: error: --cache must be one of auto, direct, buffered, not 'fast'"]
    assert not (tmp_path / "x.vhd").exists()


def test_convert_refuses_to_overwrite_then_force(run_main, tmp_path: Path,
                                                 windows_disk: Path) -> None:
    out = tmp_path / "out.vhd"
    out.write_bytes(b"precious")
    run = run_main("vhd", "convert", windows_disk, out)
    assert run.code == 5
    assert "--force" in one_error_line(run)
    assert out.read_bytes() == b"precious"
    assert run_main("vhd", "convert", windows_disk, out, "--force").code == 0
    assert read_footer(out)[0] == 49 * MIB


def test_convert_onto_the_source_is_refused(run_main, windows_disk: Path) -> None:
    before = windows_disk.read_bytes()
    run = run_main("vhd", "convert", windows_disk, windows_disk, "--force")
    assert run.code == 5
    assert "source" in one_error_line(run)
    assert windows_disk.read_bytes() == before


@pytest.mark.parametrize("size", ["1M", "big"])
def test_convert_bad_size_is_a_usage_error(run_main, tmp_path: Path, windows_disk: Path,
                                           size: str) -> None:
    out = tmp_path / "out.vhd"
    run = run_main("vhd", "convert", windows_disk, out, "--size", size)
    assert run.code == 2
    assert "Traceback" not in run.err
    assert not out.exists()


def test_convert_small_disk_warns_about_the_minimum(run_main, tmp_path: Path) -> None:
    small = layouts.write_disk(tmp_path / "small.img", 3 * MIB, {})
    run = run_main("vhd", "convert", small, tmp_path / "small.vhd")
    assert run.code == 0
    assert "azlift: warning: size_too_small" in run.err


# --- fix ------------------------------------------------------------------------------
def test_fix_then_check(run_main, windows_disk: Path) -> None:
    run = run_main("vhd", "fix", windows_disk, "--json")
    assert run.code == 0
    document = json.loads(run.out)
    assert (document["action"], document["virtual_size"]) == ("append_footer", 49 * MIB)
    assert run_main("vhd", "check", windows_disk, "--os-disk").code == 0
    again = run_main("vhd", "fix", windows_disk)
    assert again.code == 0 and "nothing to do" in again.out


def test_fix_refuses_dynamic_with_exit_3(run_main, tmp_path: Path,
                                         windows_disk: Path) -> None:
    dynamic = make_dynamic_vhd(windows_disk, tmp_path / "d.vhd")
    before = dynamic.read_bytes()
    run = run_main("vhd", "fix", dynamic)
    assert run.code == 3
    assert "azlift vhd convert" in one_error_line(run)
    assert dynamic.read_bytes() == before


def test_check_sends_a_damaged_footer_to_fix_and_fix_repairs_it(run_main, tmp_path: Path,
                                                                windows_disk: Path) -> None:
    path = make_fixed_vhd(windows_disk, tmp_path / "damaged.vhd", force_size=True)
    data = bytearray(path.read_bytes())
    data[-512 + 64] ^= 0xFF  # the footer checksum no longer matches
    path.write_bytes(bytes(data))
    report = run_main("vhd", "check", path, "--json")
    assert report.code == 1
    errors = {f["code"]: f["message"] for f in json.loads(report.out)["findings"]
              if f["severity"] == "error"}
    assert set(errors) == {"footer_checksum", "size_not_whole_mib"}  # 48 MiB + 1000 bytes
    assert all("azlift vhd fix" in message for message in errors.values())
    fixed = run_main("vhd", "fix", path, "--json")
    assert fixed.code == 0, fixed.err
    assert json.loads(fixed.out)["steps"] == [
        "rewrite_footer", "write_new_footer", "zero_old_footer"]
    assert run_main("vhd", "check", path, "--os-disk").code == 0
    qemu_img("compare", "-f", "raw", "-F", "vpc", windows_disk, path)


def test_inspect_shows_a_damaged_footer_and_points_to_fix(run_main, tmp_path: Path,
                                                         windows_disk: Path) -> None:
    path = make_fixed_vhd(windows_disk, tmp_path / "damaged.vhd", force_size=True)
    data = bytearray(path.read_bytes())
    data[-512 + 64] ^= 0xFF
    path.write_bytes(bytes(data))
    run = run_main("vhd", "inspect", path, "--json")
    assert run.code == 0, run.err
    document = json.loads(run.out)
    assert (document["format"], document["footer"]["checksum"]) == ("vhd-fixed", "bad")
    assert document["layout"]["generation_hint"] == "V2"  # the disk is still read
    assert "footer cannot be trusted" in run.err and "azlift vhd fix" in run.err
    human = run_main("vhd", "inspect", path)
    assert "checksum: bad" in human.out and "footer problem:" in human.out


# --- the app around them ----------------------------------------------------------------
def test_typer_runner_help_has_examples() -> None:
    result = CliRunner().invoke(app, ["vhd", "convert", "--help"])
    assert result.exit_code == 0
    assert "azlift vhd convert disk.vhdx disk-azure.vhd" in result.output
    assert "--size" in result.output
    group = CliRunner().invoke(app, ["vhd", "--help"])
    assert group.exit_code == 0 and "azlift vhd fix disk.raw" in group.output
    assert "completion" not in group.output


def test_typer_runner_check_exit_codes(tmp_path: Path, windows_disk: Path) -> None:
    runner = CliRunner()
    odd = runner.invoke(app, ["vhd", "check", str(windows_disk)])  # 48 MiB + 1000 bytes
    assert odd.exit_code == 1 and "size_not_whole_mib" in odd.output
    assert runner.invoke(app, ["vhd", "fix", str(windows_disk)]).exit_code == 0
    assert runner.invoke(app, ["vhd", "check", str(windows_disk), "--os-disk"]).exit_code == 0
    small = layouts.write_disk(tmp_path / "s.img", MIB, {})
    assert runner.invoke(app, ["vhd", "check", small]).exit_code == 1


def test_debug_shows_the_traceback(run_main, tmp_path: Path) -> None:
    text = tmp_path / "notes.vhd"
    text.write_text("hello\n")
    run = run_main("--debug", "vhd", "check", text)
    assert run.code == 3
    assert "Traceback" in run.err
    assert "Traceback" not in run_main("vhd", "check", text).err


ODD_NAMES = ["with space.img", "ünïcødé дис.img", "-leading-dash.img"]


@pytest.mark.parametrize("name", ODD_NAMES)
def test_installed_command_with_odd_file_names(run_azlift, tmp_path: Path, name: str) -> None:
    source = Path(layouts.windows_mbr_disk(tmp_path / name, 20 * MIB))
    out_name = "out " + name.replace(".img", ".vhd")
    checked = run_azlift("vhd", "check", "--json", "--", name, cwd=tmp_path)
    assert checked.code == 0, checked.err
    assert json.loads(checked.out)["path"] == name
    converted = run_azlift("vhd", "convert", "--json", "--", name, out_name, cwd=tmp_path)
    assert converted.code == 0, converted.err
    assert json.loads(converted.out)["dest"] == out_name
    qemu_img("compare", "-f", "raw", "-F", "vpc", source, tmp_path / out_name)
    inspected = run_azlift("vhd", "inspect", "--", out_name, cwd=tmp_path)
    assert inspected.code == 0 and "generation hint: V1" in inspected.out
    fixed = run_azlift("vhd", "fix", "--", name, cwd=tmp_path)
    assert fixed.code == 0, fixed.err
    assert (tmp_path / name).stat().st_size == 20 * MIB + 512  # the footer landed on it
    assert read_footer(tmp_path / name)[0] == 20 * MIB


def _limit_file_size() -> None:
    """In the child: files may not grow past 8 MiB (writes then fail with EFBIG)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (8 * MIB, 8 * MIB))


def test_write_failure_exits_3_and_leaves_nothing(tmp_path: Path, windows_disk: Path) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    done = subprocess.run([installed_azlift(), "vhd", "convert", windows_disk,
                           out_dir / "out.vhd"], capture_output=True, text=True, timeout=120,
                          preexec_fn=_limit_file_size)
    assert done.returncode == 3, done.stderr
    assert done.stderr.startswith("azlift: error: cannot write")
    assert "Traceback" not in done.stderr
    assert list(out_dir.iterdir()) == []


def test_installed_command_exit_codes(run_azlift, tmp_path: Path) -> None:
    assert run_azlift("vhd", "check", tmp_path / "missing.img").code == 3
    assert run_azlift("vhd", "check", "--bogus-flag", "x").code == 2
    version = run_azlift("--version")
    assert version.code == 0 and version.out.startswith("azlift ")


# --- the malformed corpus ----------------------------------------------------------------
@pytest.fixture(scope="module")
def malformed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, type]]:
    return corpus.build_all(tmp_path_factory.mktemp("corpus"))


def test_corpus_is_large_enough(malformed) -> None:
    assert len(malformed) >= 25


@pytest.mark.parametrize("name", sorted(corpus.CASES))
def test_malformed_check_exits_1_or_3_in_one_line(run_main, malformed, name: str) -> None:
    path, _expected = malformed[name]
    run = run_main("vhd", "check", path)
    assert run.code in (1, 3), (run.code, run.out, run.err)
    assert "Traceback" not in run.err + run.out
    if run.code == 3:
        one_error_line(run)
    else:
        assert "NOT ready" in run.out


@pytest.mark.parametrize("name", sorted(corpus.CASES))
def test_malformed_convert_exits_3_and_leaves_nothing(run_main, malformed, tmp_path: Path,
                                                      name: str) -> None:
    path, _expected = malformed[name]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    run = run_main("vhd", "convert", path, out_dir / "out.vhd")
    assert run.code == 3, (run.out, run.err)
    one_error_line(run)
    assert list(out_dir.iterdir()) == []


def test_malformed_through_the_installed_command(run_azlift, malformed) -> None:
    for name in ("text.vhd", "empty.vhd", "dynamic-bat-entry-past-eof", "vhdx-pending-log"):
        run = run_azlift("vhd", "convert", malformed[name][0], malformed[name][0].parent / "x.vhd")
        assert run.code == 3 and "Traceback" not in run.err
        assert len(run.err_lines) == 1
        assert not (malformed[name][0].parent / "x.vhd").exists()


def test_off_the_main_thread_errors_pass_through_untouched() -> None:
    """Signals are the main thread's: elsewhere the guard does nothing, and an error raised
    inside it carries no trace of the refused handler."""
    contexts: list[BaseException | None] = []

    def work() -> None:
        try:
            with terminate_as_interrupt():
                raise RuntimeError("inside")
        except RuntimeError as error:
            contexts.append(error.__context__)

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    assert contexts == [None]


def test_sigterm_while_converting_is_an_interruption() -> None:
    """kill (or a CI timeout) reaches the same clean-up as Ctrl-C: no temporary file left
    (the library side of that is tests/vhd/test_conversion.py's interruption tests)."""
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with terminate_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs between bytecodes of the main thread
                pass
    assert signal.getsignal(signal.SIGTERM) == before

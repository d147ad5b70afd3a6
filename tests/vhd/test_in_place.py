"""fix in place: raw and misaligned fixed VHDs, every interruption point, refusals."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from azlift import vhd
from tests.vhd.images import (
    MIB,
    build_fixed_vhd,
    make_dynamic_vhd,
    make_fixed_vhd,
    make_vhdx,
    qemu_img,
    read_footer,
    scattered_chunks,
    write_raw,
)
from azlift.vhd.check import check_path
from azlift.vhd.in_place import apply_fix, fix, plan_fix
from azlift.vhd.errors import FixUnsupportedError, FormatMismatchError


def odd_raw(tmp_path: Path, size: int = 20 * MIB + 1000, name: str = "disk.raw") -> Path:
    chunks = scattered_chunks(size, 12, seed=size) + [(size - 4, b"TAIL")]
    return write_raw(tmp_path / name, size, chunks)


def assert_ready_with_guest_bytes_of(path: Path, reference: Path, ref_format: str) -> None:
    report = check_path(str(path))
    assert (report.format, report.ready) == ("vhd-fixed", True), report.findings
    assert path.stat().st_size == report.virtual_size + 512
    qemu_img("compare", "-f", ref_format, "-F", "vpc", reference, path)


def test_raw_gets_extended_and_a_footer(tmp_path: Path) -> None:
    raw = odd_raw(tmp_path)
    original = tmp_path / "original.raw"
    shutil.copyfile(raw, original)
    result = fix(str(raw))
    assert (result.action, result.steps) == ("append_footer", ("extend", "append_footer"))
    assert (result.old_virtual_size, result.virtual_size) == (20 * MIB + 1024, 21 * MIB)
    assert_ready_with_guest_bytes_of(raw, original, "raw")


def test_raw_of_whole_mib_only_gets_a_footer(tmp_path: Path) -> None:
    raw = odd_raw(tmp_path, 20 * MIB)
    before = raw.read_bytes()
    result = fix(str(raw))
    assert result.steps == ("append_footer",)
    assert raw.read_bytes()[:20 * MIB] == before


def test_misaligned_qemu_vhd_is_extended_and_keeps_its_identity(tmp_path: Path) -> None:
    raw = odd_raw(tmp_path, 30 * MIB)
    src = make_fixed_vhd(raw, tmp_path / "chs.vhd", force_size=False)
    old_size, old_time, old_id = read_footer(src)
    assert old_size % MIB != 0
    result = fix(str(src))
    assert result.action == "extend"
    assert result.steps == ("write_new_footer", "zero_old_footer")
    new_size, new_time, new_id = read_footer(src)
    assert (new_size, new_time, new_id) == (-(-old_size // MIB) * MIB, old_time, old_id)
    assert_ready_with_guest_bytes_of(src, raw, "raw")


def test_a_second_fix_changes_nothing(tmp_path: Path) -> None:
    raw = odd_raw(tmp_path)
    fix(str(raw))
    before = (raw.read_bytes(), raw.stat().st_mtime_ns)
    result = fix(str(raw))
    assert (result.action, result.steps, result.changed) == ("none", (), False)
    assert (raw.read_bytes(), raw.stat().st_mtime_ns) == before


@pytest.mark.parametrize("kind", ["raw", "fixed"])
def test_every_interruption_point_is_recognised_and_completed(tmp_path: Path,
                                                              kind: str) -> None:
    raw = odd_raw(tmp_path, 25 * MIB + 4096)
    pristine = (tmp_path / "pristine.vhd" if kind == "fixed" else tmp_path / "pristine.raw")
    if kind == "fixed":
        build_fixed_vhd(pristine, 25 * MIB + 4096, [(0, raw.read_bytes()[:25 * MIB + 4096])])
    else:
        shutil.copyfile(raw, pristine)
    steps = plan_fix(str(pristine)).steps
    assert len(steps) == 2
    for stop_after in range(len(steps) + 1):
        work = tmp_path / f"work-{stop_after}{pristine.suffix}"
        shutil.copyfile(pristine, work)
        apply_fix(plan_fix(str(work)), stop_after=stop_after)
        state = check_path(str(work))
        if stop_after == len(steps):
            assert state.ready
        elif kind == "fixed" and stop_after == 1:
            assert state.codes().count("stale_footer") == 1 and not state.ready
        elif kind == "fixed":
            assert "size_not_whole_mib" in state.codes()
        else:
            assert state.format == "raw" and "needs_conversion" in state.codes()
        fix(str(work))
        assert_ready_with_guest_bytes_of(work, raw, "raw")
        assert fix(str(work)).steps == ()


def test_wrong_footer_fields_are_rewritten_in_place(tmp_path: Path) -> None:
    raw = odd_raw(tmp_path, 20 * MIB)
    path = tmp_path / "bad.vhd"
    build_fixed_vhd(path, 20 * MIB, [(0, raw.read_bytes())])
    data = bytearray(path.read_bytes())
    data[-512 + 8:-512 + 12] = b"\0\0\0\0"  # features 0
    footer = vhd.Footer.unpack(bytes(data[-512:])).with_checksum()
    data[-512:] = footer.pack()
    path.write_bytes(bytes(data))
    assert "footer_features" in check_path(str(path)).codes()
    result = fix(str(path))
    assert result.action == "rewrite_footer"
    assert_ready_with_guest_bytes_of(path, raw, "raw")


def test_short_footer_becomes_a_full_one(tmp_path: Path) -> None:
    raw = odd_raw(tmp_path, 20 * MIB)
    path = build_fixed_vhd(tmp_path / "short.vhd", 20 * MIB, [(0, raw.read_bytes())],
                           short_footer=True)
    assert "blob_length" in check_path(str(path)).codes()
    assert fix(str(path)).action == "rewrite_footer"
    assert_ready_with_guest_bytes_of(path, raw, "raw")


@pytest.mark.parametrize("make", [make_dynamic_vhd, make_vhdx])
def test_sparse_formats_are_refused_and_untouched(tmp_path: Path, make) -> None:
    raw = odd_raw(tmp_path, 8 * MIB)
    src = make(raw, tmp_path / "sparse.img")
    before = src.read_bytes()
    with pytest.raises(FixUnsupportedError) as caught:
        fix(str(src))
    assert caught.value.exit_code == 3
    assert "azlift vhd convert" in str(caught.value)
    assert src.read_bytes() == before


def test_raw_named_vhd_needs_the_format_named(tmp_path: Path) -> None:
    raw = odd_raw(tmp_path, 20 * MIB, name="disk.vhd")
    with pytest.raises(FormatMismatchError):
        fix(str(raw))
    assert fix(str(raw), format="raw").action == "append_footer"
    assert check_path(str(raw)).ready


def damage_footer(path: Path, *, checksum: bool = False, disk_type: int | None = None) -> None:
    """Break the footer so the disk no longer opens: a wrong checksum or disk type."""
    data = bytearray(path.read_bytes())
    footer = vhd.Footer.unpack(bytes(data[-512:]))
    if disk_type is not None:
        footer = footer._replace(disk_type=disk_type).with_checksum()
    if checksum:
        footer = footer._replace(checksum=footer.checksum ^ 0x5A5A)
    data[-512:] = footer.pack()
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [{"checksum": True}, {"disk_type": 5}])
def test_footer_that_check_sends_to_fix_is_rewritten(tmp_path: Path, damage: dict) -> None:
    raw = odd_raw(tmp_path, 20 * MIB)
    path = build_fixed_vhd(tmp_path / "damaged.vhd", 20 * MIB, [(0, raw.read_bytes())])
    damage_footer(path, **damage)
    with pytest.raises(vhd.ImageFormatError):
        vhd.open_image(path)
    report = check_path(str(path))
    assert not report.ready
    errors = [f for f in report.findings if f.severity == "error"]
    assert errors and all("azlift vhd fix" in f.message for f in errors)
    assert not any("convert" in f.message for f in errors)  # convert cannot read it
    result = fix(str(path))
    assert (result.action, result.steps) == ("rewrite_footer", ("rewrite_footer",))
    assert_ready_with_guest_bytes_of(path, raw, "raw")


def test_damaged_misaligned_footer_survives_every_interruption(tmp_path: Path) -> None:
    size = 25 * MIB + 4096
    raw = odd_raw(tmp_path, size)
    pristine = build_fixed_vhd(tmp_path / "pristine.vhd", size, [(0, raw.read_bytes())])
    damage_footer(pristine, checksum=True)
    steps = plan_fix(str(pristine)).steps
    assert [step.name for step in steps] == [
        "rewrite_footer", "write_new_footer", "zero_old_footer"]
    for stop_after in range(len(steps) + 1):
        work = tmp_path / f"work-{stop_after}.vhd"
        shutil.copyfile(pristine, work)
        apply_fix(plan_fix(str(work)), stop_after=stop_after)
        state = check_path(str(work))
        assert state.ready == (stop_after == len(steps)), (stop_after, state.codes())
        fix(str(work))
        assert_ready_with_guest_bytes_of(work, raw, "raw")


def test_damaged_footer_with_more_data_than_it_claims_is_refused(tmp_path: Path) -> None:
    raw = odd_raw(tmp_path, 20 * MIB)
    path = build_fixed_vhd(tmp_path / "long.vhd", 20 * MIB, [(0, raw.read_bytes())])
    data = path.read_bytes()
    path.write_bytes(data[:-512] + bytes(MIB) + data[-512:])
    damage_footer(path, checksum=True)
    before = path.read_bytes()
    with pytest.raises(FixUnsupportedError, match="expected them equal"):
        fix(str(path))
    assert path.read_bytes() == before


@pytest.mark.parametrize("current", [MIB - 100, 2 * MIB + 1000])
def test_a_footer_whose_size_is_no_whole_number_of_sectors_is_refused(
        tmp_path: Path, current: int) -> None:
    """Rounding such a size up puts the new footer within 512 bytes of the old one, whose
    zeroing would wipe it out: check and fix refuse the file as the reader does, and
    leave it as it was."""
    path = build_fixed_vhd(tmp_path / "odd.vhd", current, [(0, b"\x11" * current)])
    before = path.read_bytes()
    for attempt in (check_path, fix, plan_fix):
        with pytest.raises(vhd.VhdError, match=f"current size {current} is not a multiple "
                                                f"of 512"):
            attempt(str(path))
    assert path.read_bytes() == before


@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(8, 511), st.binary(min_size=1, max_size=8)),
                      min_size=1, max_size=4))
def test_any_damaged_footer_is_refused_or_repaired_without_touching_data(
        tmp_path_factory: pytest.TempPathFactory, edits: list[tuple[int, bytes]]) -> None:
    """Footer bytes changed at random, checksum left stale: check, then fix, either raise
    the package's errors or end with an Azure-ready disk holding the same guest bytes."""
    folder = tmp_path_factory.mktemp("footer")
    size = 2 * MIB + 4096
    guest = bytes(range(256)) * (size // 256)
    path = build_fixed_vhd(folder / "disk.vhd", size, [(0, guest)])
    data = bytearray(path.read_bytes())
    for at, blob in edits:
        data[-512 + at:-512 + at + len(blob)] = blob[:512 - at]
    path.write_bytes(bytes(data))
    try:
        check_path(str(path))
        fix(str(path))
    except vhd.VhdError:
        assert path.read_bytes() == bytes(data)  # refused: untouched
        return
    errors = [f.code for f in check_path(str(path)).findings if f.severity == "error"]
    assert errors == ["size_too_small"]  # 3 MiB: every other rule holds
    with vhd.open_image(path) as image:
        kept = min(size, image.virtual_size)
        assert image.read(0, kept) == guest[:kept]
        assert not any(image.read(kept, image.virtual_size - kept))

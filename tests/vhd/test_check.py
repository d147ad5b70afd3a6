"""Azure's rules as findings: pure size/footer rules, then real images."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from azlift import vhd
from tests.support import disk_layouts as dl
from tests.vhd.images import build_fixed_vhd, make_dynamic_vhd, make_fixed_vhd
from azlift.vhd.check import (
    GIB,
    MAX_DATA_DISK_SIZE,
    MAX_OS_DISK_SIZE,
    MIN_DISK_SIZE,
    check_image,
    check_output_rules,
    check_path,
    footer_rules,
)
from azlift.vhd.errors import ImageFormatError

MIB = dl.MIB


def codes(findings) -> list[str]:
    return [f.code for f in findings]


# --- the size rules the produced fixed VHD must meet -------------------------------------
@pytest.mark.parametrize("size, role, expected", [
    (MIN_DISK_SIZE, None, []),
    (MIN_DISK_SIZE - MIB, None, ["size_too_small"]),
    (MIN_DISK_SIZE + 512, None, ["size_not_whole_mib"]),
    (MIN_DISK_SIZE - 512, "data", ["size_not_whole_mib", "size_too_small"]),
    (MAX_OS_DISK_SIZE, "os", []),
    (MAX_OS_DISK_SIZE + MIB, "os", ["os_disk_too_large"]),
    (MAX_OS_DISK_SIZE + MIB, "data", []),
    (MAX_OS_DISK_SIZE + MIB, None, ["too_large_for_os_disk"]),
    (MAX_DATA_DISK_SIZE, "data", []),
    (MAX_DATA_DISK_SIZE + MIB, "data", ["disk_too_large"]),
    (MAX_DATA_DISK_SIZE + MIB, "os", ["os_disk_too_large", "disk_too_large"]),
])
def test_output_size_rules(size: int, role: str | None, expected: list[str]) -> None:
    assert codes(check_output_rules(size, role)) == expected


def test_limits_are_azures_documented_ones() -> None:
    assert MIN_DISK_SIZE == 20 * MIB
    assert MAX_OS_DISK_SIZE == 4095 * GIB
    assert MAX_DATA_DISK_SIZE == 32767 * GIB


def test_size_message_says_expected_found_and_fix() -> None:
    (finding,) = check_output_rules(104865792, "data")
    assert finding.severity == "error"
    assert "104865792 is not a whole number of MiB" in finding.message
    assert "azlift vhd fix" in finding.message
    assert str(vhd.azure_virtual_size(104865792)) in finding.message


@given(st.integers(min_value=0, max_value=2 ** 50))
def test_whole_mib_rule_matches_arithmetic(size: int) -> None:
    found = codes(check_output_rules(size))
    assert ("size_not_whole_mib" in found) == (size % MIB != 0)
    assert ("size_too_small" in found) == (size < 20 * MIB)


# --- footer rules -------------------------------------------------------------------------
GOOD_FOOTER = vhd.fixed_footer(32 * MIB, unique_id=bytes(range(16)), timestamp=1)


def test_good_footer_has_no_findings() -> None:
    assert footer_rules(GOOD_FOOTER) == []


@pytest.mark.parametrize("field, value, code", [
    ("cookie", b"conectiX", "footer_cookie"),
    ("features", 0, "footer_features"),
    ("format_version", 0x00010001, "footer_version"),
    ("data_offset", 512, "footer_data_offset"),
    ("disk_type", 3, "footer_disk_type"),
])
def test_each_footer_field_has_its_code(field: str, value: object, code: str) -> None:
    footer = GOOD_FOOTER._replace(**{field: value}).with_checksum()
    (finding,) = footer_rules(footer)
    assert (finding.code, finding.severity) == (code, "error")
    assert "expected" in finding.message


def test_bad_checksum_names_both_values() -> None:
    footer = GOOD_FOOTER._replace(checksum=GOOD_FOOTER.checksum ^ 1)
    (finding,) = footer_rules(footer)
    assert finding.code == "footer_checksum"
    assert f"{GOOD_FOOTER.checksum:#010x}" in finding.message


# --- real images --------------------------------------------------------------------------
def marked_raw(tmp_path: Path, size: int, name: str = "disk.img") -> str:
    return dl.write_disk(tmp_path / name, size, {0: b"\x01" * 4096})


def test_qemu_fixed_vhd_with_force_size_is_ready(tmp_path: Path) -> None:
    raw = dl.windows_gpt_disk(tmp_path / "src.img", 32 * MIB)
    out = make_fixed_vhd(raw, tmp_path / "qemu.vhd")
    report = check_path(str(out), "os")
    assert report.format == "vhd-fixed"
    assert report.ready, report.findings
    assert "generation_v2" in report.codes() and "os_type" in report.codes()
    assert report.layout.os_type_hint == "windows"


def test_qemu_fixed_vhd_without_force_size_is_misaligned(tmp_path: Path) -> None:
    raw = marked_raw(tmp_path, 30 * MIB)
    report = check_path(str(make_fixed_vhd(raw, tmp_path / "chs.vhd", force_size=False)))
    assert not report.ready
    assert report.virtual_size % MIB != 0
    assert "size_not_whole_mib" in report.codes()


def test_qemu_dynamic_vhd_needs_conversion_but_is_ready(tmp_path: Path) -> None:
    raw = dl.linux_gpt_disk(tmp_path / "src.img", 24 * MIB)
    out = make_dynamic_vhd(raw, tmp_path / "dyn.vhd")
    report = check_path(str(out), "os")
    assert report.format == "vhd-dynamic"
    assert report.ready
    assert "needs_conversion" in report.codes()
    assert report.layout.generation_hint == "V2"


def test_raw_of_odd_length_is_not_ready_and_points_to_fix(tmp_path: Path) -> None:
    path = marked_raw(tmp_path, 21 * MIB + 1000)
    report = check_path(path)
    assert report.format == "raw"
    assert report.azure_virtual_size == 22 * MIB
    assert report.codes()[:2] == ["needs_conversion", "size_not_whole_mib"]
    assert "azlift vhd fix" in report.findings[1].message
    assert not report.ready


def test_raw_of_whole_mib_is_ready_with_a_conversion_warning(tmp_path: Path) -> None:
    report = check_path(marked_raw(tmp_path, 21 * MIB))
    (warning,) = [f for f in report.findings if f.severity == "warning"
                  and f.code == "needs_conversion"]
    assert "azlift vhd fix" in warning.message
    assert report.ready


def test_small_raw_is_not_ready(tmp_path: Path) -> None:
    report = check_path(marked_raw(tmp_path, 5 * MIB))
    assert not report.ready
    assert "size_too_small" in report.codes()


def test_fixed_vhd_with_wrong_features_is_not_ready(tmp_path: Path) -> None:
    path = dl.append_footer(marked_raw(tmp_path, 20 * MIB), features=0)
    report = check_path(path)
    assert not report.ready
    assert report.codes().count("footer_features") == 1


def test_fixed_vhd_with_bad_checksum_is_a_finding_not_a_crash(tmp_path: Path) -> None:
    path = dl.append_footer(marked_raw(tmp_path, 20 * MIB), checksum=0x12345678)
    report = check_path(path)
    assert (report.format, report.ready) == ("vhd-fixed", False)
    assert "footer_checksum" in report.codes()


def test_unknown_disk_type_is_reported(tmp_path: Path) -> None:
    path = dl.append_footer(marked_raw(tmp_path, 20 * MIB), disk_type=6)
    assert "footer_disk_type" in check_path(path).codes()


def test_data_longer_than_current_size_breaks_blob_length(tmp_path: Path) -> None:
    path = marked_raw(tmp_path, 21 * MIB)
    footer = vhd.fixed_footer(20 * MIB)
    with open(path, "ab") as handle:
        handle.write(footer.pack())
    report = check_path(path)
    assert "blob_length" in report.codes()
    assert not report.ready


def test_stale_footer_left_by_interrupted_fix_is_an_error(tmp_path: Path) -> None:
    old_size = 20 * MIB + 3 * 512
    path = dl.append_footer(marked_raw(tmp_path, old_size))  # old footer at old_size
    with open(path, "r+b") as handle:
        handle.truncate(21 * MIB)
        handle.seek(21 * MIB)
        handle.write(vhd.fixed_footer(21 * MIB).pack())
    report = check_path(path)
    assert report.codes().count("stale_footer") == 1
    assert str(old_size) in [f for f in report.findings if f.code == "stale_footer"][0].message
    assert not report.ready


def test_empty_os_disk_warns_about_generation(tmp_path: Path) -> None:
    report = check_path(dl.write_disk(tmp_path / "e.img", 20 * MIB, {}), "os")
    (finding,) = [f for f in report.findings if f.code == "generation_unknown"]
    assert finding.severity == "warning"
    assert "generation_unknown" not in check_path(str(tmp_path / "e.img"), "data").codes()


def test_unreadable_file_raises_the_package_error(tmp_path: Path) -> None:
    path = tmp_path / "text.vhd"
    path.write_text("not a disk\n" * 100)
    with pytest.raises(vhd.FormatMismatchError) as caught:
        check_path(str(path))
    assert caught.value.exit_code == 3  # the issue: 3 when the file cannot be read as an image


def test_truncated_dynamic_vhd_is_unreadable(tmp_path: Path) -> None:
    raw = marked_raw(tmp_path, 24 * MIB)
    out = make_dynamic_vhd(raw, tmp_path / "dyn.vhd", force_size=False)
    data = out.read_bytes()
    out.write_bytes(data[:600] + data[-512:])
    with pytest.raises(ImageFormatError):
        check_path(str(out))


def test_report_json_schema(tmp_path: Path) -> None:
    path = dl.windows_mbr_disk(tmp_path / "w.img", 20 * MIB)
    with vhd.open_image(path) as image:
        document = json.loads(json.dumps(check_image(image, "os").to_dict()))
    assert set(document) == {"schema", "path", "format", "role", "ready", "virtual_size",
                             "azure_virtual_size", "file_size", "os_type_hint",
                             "generation_hint", "summary", "findings", "layout"}
    assert document["schema"] == "azlift.vhd.check/1"
    assert (document["generation_hint"], document["os_type_hint"]) == ("V1", "windows")
    assert document["summary"]["warnings"] == sum(
        f["severity"] == "warning" for f in document["findings"])
    assert all(set(f) == {"code", "severity", "message"} for f in document["findings"])


# --- fuzz: check and convert let only the package's own errors escape ----------------------
@pytest.fixture(scope="module")
def valid_bases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    from tests.vhd import corpus

    folder = tmp_path_factory.mktemp("bases")
    return {kind: path.read_bytes() for kind, path in corpus.valid_images(folder).items()
            if kind != "vhd-differencing"}


@settings(max_examples=120, deadline=None)
@given(kind=st.sampled_from(["vhd-fixed", "vhd-dynamic", "vhdx"]),
       edits=st.lists(st.tuples(st.integers(0, 2 ** 22), st.binary(min_size=1, max_size=16)),
                      min_size=1, max_size=6),
       from_end=st.booleans())
def test_mutated_images_never_escape_the_error_tree(
        tmp_path_factory: pytest.TempPathFactory, valid_bases: dict[str, bytes], kind: str,
        edits: list[tuple[int, bytes]], from_end: bool) -> None:
    from tests.vhd import corpus

    data = bytearray(valid_bases[kind])
    for offset, blob in edits:
        at = (len(data) - 1 - offset % len(data)) if from_end else offset % len(data)
        data[at:at + len(blob)] = blob
    folder = tmp_path_factory.mktemp("fuzz")
    path = folder / ("disk.vhdx" if kind == "vhdx" else "disk.vhd")
    path.write_bytes(bytes(corpus.refresh_checksums(data)))
    try:
        report = check_path(str(path))
    except vhd.VhdError:
        pass
    else:
        json.dumps(report.to_dict())
    try:
        vhd.convert(str(path), str(folder / "out.vhd"))
    except vhd.VhdError:
        assert not (folder / "out.vhd").exists()
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []


def test_inspect_describes_a_footer_too_damaged_to_open(tmp_path: Path) -> None:
    raw = dl.write_disk(tmp_path / "d.img", 21 * 1024 * 1024, {4096: b"data" * 1024})
    path = build_fixed_vhd(tmp_path / "damaged.vhd", 21 * 1024 * 1024, [(4096, b"data" * 1024)])
    with open(path, "r+b") as handle:  # in place: the file stays sparse
        handle.seek(-512 + 64, 2)
        handle.write(b"\xff\xff\xff\xff")
    with pytest.raises(ImageFormatError):
        vhd.open_image(path)
    info, layout = vhd.inspect_path(str(path))
    assert (info["format"], info["virtual_size"]) == ("vhd-fixed", 21 * 1024 * 1024)
    assert info["footer"]["checksum"] == "bad" and info["footer_state"] == {"end": "bad"}
    assert "checksum" in info["footer_problem"]
    assert info["allocated_bytes"] == 4096  # the data, not the footer
    assert layout.scheme == "none"
    json.dumps(info)
    with vhd.open_image(raw) as image:  # a good image is described as it opens
        assert vhd.inspect_path(str(raw))[0] == image.describe()

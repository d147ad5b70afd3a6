"""Pure struct arithmetic: checksums, CHS geometry, sizes, BAT layout, extent math."""
from __future__ import annotations

import struct
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.vhd.images import build_differencing_vhd, build_dynamic_vhd, qemu_img, with_crc32c
from azlift.vhd import _vhd_structs as S
from azlift.vhd import _vhdx_structs as X
from azlift.vhd.raw import FROM_PARENT, FROM_ZERO, Run, align_extents, coalesce_runs, merge_extents

MIB = 1024 * 1024


# --- VHD footer and checksum ----------------------------------------------------------
footers = st.builds(
    S.Footer, cookie=st.just(b"conectix"), features=st.integers(0, 2**32 - 1),
    format_version=st.integers(0, 2**32 - 1), data_offset=st.integers(0, 2**64 - 1),
    timestamp=st.integers(0, 2**32 - 1), creator_app=st.binary(min_size=4, max_size=4),
    creator_version=st.integers(0, 2**32 - 1), creator_host_os=st.binary(min_size=4, max_size=4),
    original_size=st.integers(0, 2**64 - 1), current_size=st.integers(0, 2**64 - 1),
    cylinders=st.integers(0, 65535), heads=st.integers(0, 255),
    sectors_per_track=st.integers(0, 255), disk_type=st.integers(0, 2**32 - 1),
    checksum=st.integers(0, 2**32 - 1), unique_id=st.binary(min_size=16, max_size=16),
    saved_state=st.integers(0, 255), reserved=st.binary(min_size=427, max_size=427))


@given(footers)
def test_footer_round_trips_and_checksums(footer: S.Footer) -> None:
    raw = footer.pack()
    assert len(raw) == 512 and S.Footer.unpack(raw) == footer
    good = footer.with_checksum()
    assert good.checksum_ok
    packed = good.pack()
    expected = ~(sum(packed[:64]) + sum(packed[68:])) & 0xFFFFFFFF
    assert struct.unpack_from(">I", packed, 64)[0] == expected


@given(footers, st.integers(0, 511).filter(lambda i: not 64 <= i < 68), st.integers(1, 255))
def test_any_changed_byte_breaks_the_checksum(footer: S.Footer, index: int, delta: int) -> None:
    raw = bytearray(footer.with_checksum().pack())
    raw[index] = (raw[index] + delta) % 256
    assert not S.Footer.unpack(bytes(raw)).checksum_ok


def test_footer_problems_name_the_field() -> None:
    footer = S.fixed_footer(MIB)
    assert S.footer_problem(footer) is None
    assert "checksum" in S.footer_problem(S.Footer.unpack(footer.pack()[:64] + b"\0\0\0\0"
                                                          + footer.pack()[68:]))
    assert "disk type" in S.footer_problem(footer._replace(disk_type=9).with_checksum())
    assert "version" in S.footer_problem(footer._replace(format_version=0x20000).with_checksum())


def test_short_footer_is_padded() -> None:
    raw = S.fixed_footer(MIB).pack()
    assert raw[511] == 0
    assert S.parse_footer(raw[:511]) == S.parse_footer(raw)
    assert S.parse_footer(b"x" * 512) is None and S.parse_footer(b"") is None


# --- CHS geometry ---------------------------------------------------------------------
@given(st.integers(0, 4 * 2**40))
def test_geometry_stays_in_range_and_below_the_size(size: int) -> None:
    cylinders, heads, spt = S.chs_geometry(size)
    assert 0 <= cylinders <= 65535 and 0 < heads <= 16 and spt in (17, 31, 63, 255)
    assert cylinders * heads * spt * 512 <= size or size < 512


@pytest.mark.parametrize("size_mib", [1, 20, 127, 500, 4000, 40000, 200000])
def test_geometry_matches_qemu(tmp_path: Path, size_mib: int) -> None:
    """qemu-img (without force_size) rounds the size up to a geometry from the spec's
    algorithm: the algorithm applied to qemu's size must give qemu's geometry back."""
    path = tmp_path / "g.vhd"
    qemu_img("create", "-f", "vpc", "-o", "subformat=dynamic", path, f"{size_mib}M")
    footer = S.Footer.unpack(path.read_bytes()[-512:])
    assert footer.checksum_ok and footer.current_size >= size_mib * MIB
    geometry = (footer.cylinders, footer.heads, footer.sectors_per_track)
    assert S.chs_geometry(footer.current_size) == geometry
    if geometry != (65535, 16, 255):  # below the largest geometry, the size is c*h*s
        cylinders, heads, spt = geometry
        assert footer.current_size == cylinders * heads * spt * 512


@given(st.integers(0, 2**45))
def test_azure_size_is_the_next_whole_mib(size: int) -> None:
    rounded = S.azure_virtual_size(size)
    assert rounded % MIB == 0 and rounded >= max(size, MIB)
    assert rounded < max(size, 1) + MIB  # the next whole MiB, not a later one (0 -> 1 MiB)


# --- dynamic header -------------------------------------------------------------------
def test_dynamic_header_parses_what_the_spec_layout_holds(tmp_path: Path) -> None:
    parent = build_dynamic_vhd(tmp_path / "p.vhd", 8 * MIB, [(0, b"p")], block_size=MIB)
    child = build_differencing_vhd(tmp_path / "c.vhd", parent, [(0, b"c" * 512)],
                                   block_size=MIB, locators=("W2ru", "W2ku", "MacX"))
    raw = child.read_bytes()
    header = S.DynamicHeader.unpack(raw[512:1536])
    assert header.checksum_ok and header.cookie == b"cxsparse"
    assert (header.table_offset, header.max_table_entries, header.block_size) == (1536, 8, MIB)
    assert header.parent_unique_id == parent.read_bytes()[-512 + 68:-512 + 84]
    assert header.parent_name == "p.vhd"
    paths = [loc.decode(raw[loc.data_offset:loc.data_offset + loc.data_length])
             for loc in header.locators]
    assert [loc.platform_code for loc in header.locators] == [b"W2ru", b"W2ku", b"MacX"]
    assert paths == [".\\p.vhd", str(parent), str(parent)]
    assert S.dynamic_header_problem(header, 8 * MIB) is None
    assert "needs 9" in S.dynamic_header_problem(header, 9 * MIB)
    assert "2040 GiB" in S.dynamic_header_problem(header, 3 * 2**40)


@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
               min_size=1, max_size=100))
def test_locator_paths_decode(path: str) -> None:
    w2ku = S.ParentLocator(b"W2ku", 512, 0, 0)
    assert w2ku.decode(path.encode("utf-16-le") + b"\0\0") == (path.strip() or None)
    macx = S.ParentLocator(b"MacX", 512, 0, 0)
    from urllib.parse import quote
    assert macx.decode(("file://" + quote("/" + path)).encode()) == ("/" + path).strip()
    assert S.ParentLocator(b"Mac ", 512, 0, 0).decode(b"alias") is None


@given(st.integers(0, 40))
def test_bitmap_size_holds_one_bit_per_sector(log2: int) -> None:
    block = 512 << min(log2, 20)
    size = S.bitmap_size(block)
    assert size % 512 == 0 and size * 8 >= block // 512 and size - 512 < block // 512 / 8


# --- VHDX -----------------------------------------------------------------------------
def test_crc32c_check_value() -> None:
    assert X.crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value


@given(st.binary(min_size=8, max_size=4096))
def test_structure_crc_takes_the_checksum_field_as_zero(raw: bytes) -> None:
    stamped = with_crc32c(raw)  # stamped by the test images' own code, not the reader's
    assert X.structure_crc(stamped) == struct.unpack_from("<I", stamped, 4)[0]
    assert X.structure_crc(raw) == X.structure_crc(stamped)  # whatever the field held


@pytest.mark.parametrize(("sector", "block", "ratio"),
                         [(512, MIB, 4096), (512, 32 * MIB, 128), (4096, MIB, 32768),
                          (4096, 256 * MIB, 128), (512, 256 * MIB, 16)])
def test_chunk_ratio(sector: int, block: int, ratio: int) -> None:
    assert X.chunk_ratio(sector, block) == ratio


@given(st.integers(1, 5000), st.sampled_from([16, 128, 512, 4096]), st.booleans())
def test_bat_layout_interleaves_bitmap_entries(blocks: int, ratio: int, parent: bool) -> None:
    """Lay the BAT out one entry at a time, as the spec draws it, and compare."""
    layout: list[str] = []
    for block in range(blocks):
        layout.append(f"p{block}")
        if (block + 1) % ratio == 0:
            layout.append("sb")
    if parent:
        while len(layout) % (ratio + 1):
            layout.append("p-" if len(layout) % (ratio + 1) != ratio else "sb")
    elif layout[-1] == "sb":
        layout.pop()
    assert X.bat_entry_count(blocks, ratio, parent) == len(layout)
    for block in range(0, blocks, max(1, blocks // 50)):
        assert layout[X.bat_index(block, ratio)] == f"p{block}"


def test_guids_are_mixed_endian() -> None:
    text = "2DC27766-F623-4200-9D64-115E9BFD4A08"
    assert X.REGION_BAT[:4] == bytes.fromhex("6677C22D")
    assert X.guid_str(X.REGION_BAT) == text.lower()
    metadata = uuid.UUID("8B7CA206-4790-4B9A-B8FE-575F050F886E")
    assert uuid.UUID(bytes_le=X.REGION_METADATA) == metadata


# --- extents and runs -----------------------------------------------------------------
ranges = st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 3000)), max_size=30)


def covered_bytes(extents) -> set[int]:
    return {b for offset, length in extents for b in range(offset, offset + length)}


@given(ranges)
def test_merge_extents_keeps_the_same_bytes(raw: list[tuple[int, int]]) -> None:
    merged = list(merge_extents(sorted(raw)))
    assert covered_bytes(merged) == covered_bytes(raw)
    assert all(length > 0 for _, length in merged)
    assert all(a + n < b for (a, n), (b, _) in zip(merged, merged[1:]))


@given(ranges, st.integers(0, 14_000))
def test_align_extents_widens_to_sectors(raw: list[tuple[int, int]], limit: int) -> None:
    aligned = list(align_extents(sorted(raw), limit))
    wanted = {b for b in covered_bytes(raw) if b < limit}
    assert wanted <= covered_bytes(aligned)
    assert all(o % 512 == 0 and (o + n) % 512 == 0 or o + n == limit for o, n in aligned)
    assert all(o + n <= limit for o, n in aligned)


@given(st.lists(st.tuples(st.integers(1, 900),
                          st.sampled_from([FROM_ZERO, FROM_PARENT, 0, 1, 2])), max_size=30))
def test_coalesce_runs_keeps_every_byte_in_place(parts: list[tuple[int, int]]) -> None:
    runs, position, file_offset = [], 0, 10_000
    for length, kind in parts:
        if kind >= 0:  # file runs: contiguous (kind 0) or with a gap
            file_offset += kind * 7
            runs.append(Run(position, length, file_offset))
            file_offset += length
        else:
            runs.append(Run(position, length, kind))
        position += length

    def source_of(runs_: list[Run]) -> list[int]:
        out = []
        for run in runs_:
            out += [run.source + i if run.source >= 0 else run.source for i in range(run.length)]
        return out

    merged = list(coalesce_runs(runs))
    assert source_of(merged) == source_of(runs)
    assert len(merged) <= len(runs)


def test_crc32c_loads_only_when_a_vhdx_needs_it() -> None:
    """Start-up of `vhd check` on a VHD pays for no VHDX checksum module."""
    probe = ("import sys; from azlift import vhd; before = 'crc32c' in sys.modules; "
             "vhd._vhdx_structs.crc32c(b'123456789'); print(before, 'crc32c' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split() == ["False", "True"]

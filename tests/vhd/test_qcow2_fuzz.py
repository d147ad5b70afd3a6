"""Fuzz the qcow2 reader: only the package's own errors may escape, and nothing hangs.

Two ways in: headers built field by field from hypothesis strategies (so the values reach
every check of the header parser, not only the magic), and small valid images made by
qemu-img with bytes overwritten in their header, extensions, L1 and L2 tables and data.
"""
from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.vhd.images import KIB, MIB
from tests.vhd.qcow2_corpus import valid_images
from tests.vhd.test_fuzz import exercise  # open (by content), describe, map, read

# Where the structures of the bases live: header, extensions, L1, L2, first data.
HOT_SPOTS = [(0, 112), (112, 400), (192 * KIB, 16), (256 * KIB, 128), (320 * KIB, 512)]
EXAMPLES = 150  # per base


headers = st.fixed_dictionaries({
    "version": st.sampled_from([2, 3, 3, 3, 1, 4]),
    "backing": st.sampled_from([(0, 0), (0, 0), (512, 9), (512, 2000), (70000, 5)]),
    "cluster_bits": st.one_of(st.integers(8, 22), st.integers(0, 2**32 - 1)),
    "size": st.one_of(st.integers(0, 64 * MIB), st.integers(0, 2**64 - 1)),
    "crypt": st.sampled_from([0, 0, 0, 1, 2]),
    "l1_size": st.one_of(st.integers(0, 4), st.integers(0, 2**32 - 1)),
    "l1_offset": st.sampled_from([0, 65536, 4096, 512, 1 << 50, 65537]),
    "incompatible": st.one_of(st.sampled_from([0, 1, 2, 4, 8, 16, 32]), st.integers(0, 2**64 - 1)),
    "header_length": st.sampled_from([104, 112, 105, 96, 4096, 2**32 - 1]),
    "compression": st.integers(0, 3),
    "extensions": st.binary(max_size=200),
    "l1": st.binary(max_size=64),
    "tail": st.integers(0, 3 * 65536),
})


def build_header(fields: dict) -> bytes:
    offset, length = fields["backing"]
    raw = bytearray(struct.pack(">4sIQIIQIIQQIIQ", b"QFI\xfb", fields["version"], offset,
                                length, fields["cluster_bits"], fields["size"],
                                fields["crypt"], fields["l1_size"], fields["l1_offset"],
                                65536, 1, 0, 0))
    raw += struct.pack(">QQQII", fields["incompatible"], 0, 0, 4, fields["header_length"])
    raw += bytes([fields["compression"]]) + bytes(7) + fields["extensions"]
    raw += bytes(max(0, 512 - len(raw))) + b"base.img\0"
    raw += bytes(max(0, fields["tail"] - len(raw)))
    if len(raw) >= 65536 + len(fields["l1"]):
        raw[65536:65536 + len(fields["l1"])] = fields["l1"]
    return bytes(raw)


@pytest.mark.timeout(120)
@settings(max_examples=400, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(headers)
def test_header_parser_only_raises_vhd_errors(tmp_path: Path, fields: dict) -> None:
    path = tmp_path / "fuzz.qcow2"
    path.write_bytes(build_header(fields))
    (tmp_path / "base.img").write_bytes(bytes(4096))
    assert exercise(path)


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, bytes]]:
    folder = tmp_path_factory.mktemp("qcow2-fuzz")
    return {kind: (path, path.read_bytes()) for kind, path in valid_images(folder).items()}


mutation = st.tuples(st.integers(0, 10**6), st.integers(0, 2**31),
                     st.binary(min_size=1, max_size=8))


def mutate(data: bytes, edits: list[tuple[int, int, bytes]], cut: int | None) -> bytes:
    out = bytearray(data)
    for spot_pick, position, value in edits:
        start, length = HOT_SPOTS[spot_pick % len(HOT_SPOTS)]
        if spot_pick % 7 == 6:  # now and then anywhere in the file
            start, length = 0, len(out)
        offset = min(start + position % length, len(out) - len(value))
        out[offset:offset + len(value)] = value
    if cut is not None:
        del out[cut % (len(out) + 1):]
    return bytes(out)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("kind", ["plain", "compressed", "extended", "overlay"])
def test_mutated_qcow2_images_only_raise_vhd_errors(bases, kind: str) -> None:
    source, data = bases[kind]
    target = source.with_name("mutant.qcow2")
    outcomes: Counter[str] = Counter()

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.lists(mutation, min_size=1, max_size=6),
           st.one_of(st.none(), st.none(), st.integers(0, 2**40)))
    def run(edits, cut) -> None:
        target.write_bytes(mutate(data, edits, cut))
        outcomes[exercise(target)] += 1

    run()
    print(kind, dict(outcomes))
    assert outcomes["opened"] > 0 and sum(outcomes.values()) > outcomes["opened"]

"""Fuzz the parsers: mutate small valid images; only the package's own errors may escape.

Each example takes one valid image, overwrites a few bytes (mostly inside the
structures: footer, dynamic header, BAT, VHDX headers, region tables, metadata), maybe
truncates it, and usually recomputes the checksums so the mutation reaches the parsing
behind them. Then open, describe, extents and a few reads must either work or raise a
VhdError. Bounded to about half a minute on a loaded 2-core machine.
"""
from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from azlift import vhd
from tests.vhd.corpus import refresh_checksums, valid_images
from tests.vhd.images import KIB, MIB

# Where the structures of each base image live (offsets from the start; negative: from the end).
HOT_SPOTS = {
    "vhd-fixed": [(-512, 512)],
    "vhd-dynamic": [(0, 512), (512, 1024), (1536, 512), (2048, 512), (-512, 512)],
    "vhd-differencing": [(0, 512), (512, 1024), (1536, 512), (2048, 2048), (-512, 512)],
    "vhdx": [(0, 64), (64 * KIB, 128), (128 * KIB, 128), (192 * KIB, 128),
             (256 * KIB, 128), (2 * MIB, 256), (2 * MIB + 64 * KIB, 20 * KIB),
             (3 * MIB, 128)],
}
KINDS = sorted(HOT_SPOTS)
EXAMPLES = 300  # per kind: about 15 s in all


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, bytes]]:
    folder = tmp_path_factory.mktemp("fuzz")
    return {kind: (path, path.read_bytes()) for kind, path in valid_images(folder).items()}


mutation = st.tuples(st.integers(0, 10**6), st.integers(0, 2**31),
                     st.binary(min_size=1, max_size=8))


def mutate(kind: str, data: bytes, edits: list[tuple[int, int, bytes]], cut: int | None,
           refresh: bool) -> bytes:
    out = bytearray(data)
    spots = HOT_SPOTS[kind]
    for spot_pick, position, value in edits:
        start, length = spots[spot_pick % len(spots)]
        if spot_pick % 7 == 6:  # now and then anywhere in the file
            start, length = 0, len(out)
        base = start if start >= 0 else len(out) + start
        offset = min(base + position % length, len(out) - len(value))
        out[offset:offset + len(value)] = value
    if refresh:
        refresh_checksums(out)
    if cut is not None:
        del out[cut % (len(out) + 1):]
    return bytes(out)


def exercise(path: Path) -> str:
    """Everything a consumer does with an image; only VhdError may come out.

    Returns "opened" or the name of the error class, for the outcome tally."""
    try:
        with vhd.open_image(path) as image:
            image.describe()
            size = image.virtual_size
            extents = list(itertools.islice(image.extents(), 10_000))
            assert all(0 <= o and 0 < n and o + n <= size for o, n in extents)
            for offset, length in extents[:3]:
                assert len(image.read(offset, min(length, 64 * KIB))) == min(length, 64 * KIB)
            for offset in (0, size // 2, max(size - 4096, 0)):
                length = min(4096, size - offset)
                assert len(image.read(offset, length)) == length
    except vhd.VhdError as error:
        message = str(error)
        assert message and "\n" not in message
        return type(error).__name__
    return "opened"


@pytest.mark.timeout(120)  # a hang is a failure, whatever the machine's load
@pytest.mark.parametrize("kind", KINDS)
def test_mutated_images_only_raise_vhd_errors(bases, kind: str) -> None:
    source, data = bases[kind]
    target = source.with_name("mutant" + source.suffix)
    outcomes: Counter[str] = Counter()

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.lists(mutation, min_size=1, max_size=6),
           st.one_of(st.none(), st.integers(0, 2**40)), st.booleans() | st.just(True))
    def run(edits, cut, refresh) -> None:
        target.write_bytes(mutate(kind, data, edits, cut, refresh))
        outcomes[exercise(target)] += 1

    run()
    print(kind, dict(outcomes))
    # the mutations must reach both sides: images that still open, and refused ones
    assert outcomes["opened"] > 0 and sum(outcomes.values()) > outcomes["opened"]


@pytest.mark.timeout(120)
@settings(max_examples=200, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=3000), st.sampled_from([b"conectix", b"vhdxfile", b""]),
       st.booleans(), st.sampled_from([".vhd", ".vhdx", ".img"]))
def test_random_small_files_only_raise_vhd_errors(tmp_path: Path, body: bytes, signature: bytes,
                                                  at_end: bool, suffix: str) -> None:
    path = tmp_path / f"random{suffix}"
    path.write_bytes(body + signature + bytes(504) if at_end else signature + body)
    assert exercise(path)

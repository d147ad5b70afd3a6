"""Fuzz the VMDK and OVA parsers: mutate small valid files; only VhdError may escape.

Bases: qemu-img's monolithicSparse and streamOptimized VMDKs, VMware's stream layout
(VMDKstream), and a one-disk OVA made by tar. Each example overwrites a few bytes, mostly
inside the structures (header, embedded descriptor, grain directory and tables, grain
markers, footer, tar headers, OVF), maybe truncates, then opens, describes, lists extents
and reads everything. The text parsers get arbitrary text too.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.vhd.images import MIB, write_raw
from tests.vhd.vmdk_images import make_ova, make_vmdk, make_vmware_stream
from azlift.vhd._ovf_structs import OvfError, parse_manifest, parse_ovf
from azlift.vhd._vmdk_structs import DescriptorError, parse_descriptor
from azlift.vhd.errors import VhdError
from azlift.vhd.ova import OvaImage
from azlift.vhd.vmdk import VmdkImage

SIZE = 2 * MIB
# (offset, length) of the structures; negative offsets count from the end
HOT_SPOTS = {
    "sparse": [(0, 512), (512, 10240), (10752, 6656), (65536, 512)],
    "stream": [(0, 512), (512, 10240), (10752, 6656), (65536, 512)],
    "vmware": [(0, 512), (512, 1024), (-2048, 2048)],
    "ova": [(0, 512), (512, 1536), (2048, 512), (2560, 1024)],
}
EXAMPLES = 150


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, bytes]]:
    folder = tmp_path_factory.mktemp("vmdk-fuzz")
    raw = write_raw(folder / "r.img", SIZE, [(0, b"\xeb" * 3000), (MIB + 77, b"data" * 900),
                                             (SIZE - 100, b"t" * 100)])
    paths = {"sparse": make_vmdk(raw, folder / "s.vmdk", "monolithicSparse"),
             "stream": make_vmdk(raw, folder / "o.vmdk", "streamOptimized"),
             "vmware": make_vmware_stream(raw, folder / "v.vmdk")}
    paths["ova"] = make_ova(folder / "vm.ova", [(paths["stream"], SIZE)])
    return {kind: (path, path.read_bytes()) for kind, path in paths.items()}


def exercise(path: Path, kind: str) -> None:
    try:
        image = OvaImage(path) if kind == "ova" else VmdkImage(path)
        with image:
            image.describe()
            extents = list(image.extents())
            for offset, length in extents[:8]:
                image.read(offset, min(length, MIB))
            image.read(0, image.virtual_size) if image.virtual_size <= 16 * MIB else None
    except VhdError as error:
        message = str(error)
        assert "\n" not in message and message


edit = st.tuples(st.integers(0, 10**6), st.integers(0, 2**31), st.binary(min_size=1, max_size=8))


@pytest.mark.parametrize("kind", sorted(HOT_SPOTS))
def test_mutated_files_raise_only_vhd_errors(bases: dict[str, tuple[Path, bytes]],
                                             tmp_path_factory: pytest.TempPathFactory,
                                             kind: str) -> None:
    _, original = bases[kind]
    folder = tmp_path_factory.mktemp(f"m-{kind}")

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(edits=st.lists(edit, min_size=1, max_size=4),
           cut=st.none() | st.integers(0, 2**31))
    def run(edits: list[tuple[int, int, bytes]], cut: int | None) -> None:
        out = bytearray(original)
        spots = HOT_SPOTS[kind]
        for pick, position, value in edits:
            start, length = spots[pick % len(spots)]
            base = start if start >= 0 else len(out) + start
            offset = max(0, min(base + position % length, len(out) - len(value)))
            out[offset:offset + len(value)] = value
        if cut is not None and cut % 3 == 0:
            del out[cut % (len(out) + 1):]
        path = folder / ("f.ova" if kind == "ova" else "f.vmdk")
        path.write_bytes(bytes(out))
        exercise(path, kind)

    run()


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_descriptor_parser_raises_only_its_error(text: str) -> None:
    try:
        parse_descriptor(text)
    except DescriptorError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400) | st.text(max_size=400).map(
    lambda t: f'<Envelope xmlns:ovf="urn:ovf"><References><File ovf:id="a" ovf:href="{t}"/></References>'
              f'<DiskSection><Disk ovf:fileRef="a" ovf:capacity="{t}"/></DiskSection>'
              f'</Envelope>'.encode()))
def test_ovf_and_manifest_parsers_raise_only_their_error(data: bytes) -> None:
    for parse in (parse_ovf, parse_manifest):
        try:
            parse(data)
        except OvfError:
            pass

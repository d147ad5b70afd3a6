"""The malformed corpus: opening each file raises the expected VhdError, nothing else."""
from __future__ import annotations

from pathlib import Path

import pytest

from azlift import vhd
from tests.vhd.corpus import CASES, valid_images


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 25


@pytest.mark.parametrize("name", sorted(CASES))
def test_malformed_image_raises_a_typed_error(tmp_path: Path, name: str) -> None:
    case = CASES[name]
    path = case.build(tmp_path)
    with pytest.raises(vhd.VhdError) as caught:
        image = vhd.open_image(path)
        image.close()
    error = caught.value
    assert isinstance(error, case.expected), f"{type(error).__name__}: {error}"
    message = str(error)
    assert "\n" not in message and len(message) < 600
    assert path.name in message or str(path.parent) in message, message
    assert error.exit_code == 3 and error.code


@pytest.mark.parametrize("kind", ["vhd-fixed", "vhd-dynamic", "vhd-differencing", "vhdx"])
def test_the_bases_of_the_corpus_are_valid(tmp_path: Path, kind: str) -> None:
    path = valid_images(tmp_path)[kind]
    with vhd.open_image(path) as image:
        assert image.format == kind
        assert image.read(0, 4)[:1] == b"\xeb"
        assert image.describe()["virtual_size"] == 4 * 1024 * 1024

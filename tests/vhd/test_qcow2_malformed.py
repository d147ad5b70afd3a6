"""The malformed qcow2 corpus: opening, mapping or reading each file raises the expected
VhdError (exit code 3, one line naming the file), nothing else."""
from __future__ import annotations

from pathlib import Path

import pytest

from azlift import vhd
from tests.vhd.qcow2_corpus import CASES, open_fully, valid_images


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 20


@pytest.mark.parametrize("name", sorted(CASES))
def test_malformed_qcow2_raises_a_typed_error(tmp_path: Path, name: str) -> None:
    case = CASES[name]
    path = case.build(tmp_path)
    with pytest.raises(vhd.VhdError) as caught:
        open_fully(path)
    error = caught.value
    assert type(error) is case.expected, f"{type(error).__name__}: {error}"
    message = str(error)
    assert "\n" not in message and len(message) < 600
    assert path.name in message, message
    assert case.says in message, message
    assert error.exit_code == 3 and error.code


@pytest.mark.parametrize("kind", ["plain", "compressed", "extended", "overlay"])
def test_the_bases_of_the_corpus_are_valid(tmp_path: Path, kind: str) -> None:
    path = valid_images(tmp_path)[kind]
    open_fully(path)
    with vhd.Qcow2Image(path) as image:
        assert image.read(0, 2) == b"\xeba"
        assert image.read(1024 * 1024 + 17, 3) == b"xxx"

"""new_file: the temporary output's name, made without tempfile."""
from __future__ import annotations

import os
from pathlib import Path

from azlift.vhd.new_file import create_temporary


def test_the_temporary_output_takes_a_free_hidden_name(tmp_path: Path, monkeypatch) -> None:
    taken = tmp_path / ".out.vhd.azlift-tmp-000000000000"
    taken.write_bytes(b"someone else's")
    draws = iter([bytes(6), b"\x01" * 6])
    monkeypatch.setattr(os, "urandom", lambda count: next(draws))
    fd, path = create_temporary(str(tmp_path), ".out.vhd.azlift-tmp-")
    os.close(fd)
    assert path == str(tmp_path / ".out.vhd.azlift-tmp-010101010101")
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert taken.read_bytes() == b"someone else's"

"""fast_params converts plainly valid values as typer's own (pydantic) converter does, and
leaves every other value to it, so results and error messages are typer's."""
# No `from __future__ import annotations`: typer reads the test command's real annotations.
from enum import Enum
from pathlib import Path
from typing import Annotated, Literal

import pytest
import typer
from typer._click.exceptions import BadParameter
from typer._coercion import build_runtime_param
from typer.core import _TyperParameter

from azlift.cli import fast_params


class Color(str, Enum):
    red = "red"
    blue = "blue"


def _param(annotation, **info):
    """The typer parameter of a one-option command taking ``annotation``."""
    app = typer.Typer()

    @app.command()
    def command(value: Annotated[annotation, typer.Option(**info)] = None) -> None:
        pass

    click_command = typer.main.get_command(app)
    return next(p for p in click_command.params if isinstance(p, _TyperParameter))


CASES = [
    (str, {}, ["plain", "", "-x", "ünïcode"]),
    (int, {}, ["0", "42", "-3", "+7", " 5 ", "1_000", "4.0", "x", ""]),
    (int, {"min": 1, "max": 64}, ["1", "64", "0", "65", "8"]),
    (float, {"min": 0.1}, ["0.5", "1e3", ".5", "0.05", "nan", "inf", "abc", "3"]),
    (Color, {}, ["red", "blue", "green", "RED"]),
    (Color, {"case_sensitive": False}, ["RED", "Blue", "green"]),
    (Literal["crc64", "md5", "none"], {}, ["crc64", "none", "sha1"]),
    (Path, {}, ["a/b.vhd", "/nonexistent/x", "."]),
    (Path, {"exists": True, "dir_okay": False}, ["/nonexistent/x", "/", __file__]),
    (bool, {}, [True, False]),
]


@pytest.mark.parametrize("annotation, info, values", CASES)
def test_same_value_or_same_error_as_typer(annotation, info, values) -> None:
    param = _param(annotation, **info)
    ours = fast_params._runtime_param(param)
    assert isinstance(ours, fast_params.PlainRuntimeParam)
    theirs = build_runtime_param(param.type_descriptor)
    for value in values:
        try:
            expected = theirs.coerce(value, param=param, ctx=None)
        except BadParameter as error:
            with pytest.raises(BadParameter) as ours_failed:
                ours.coerce(value, param=param, ctx=None)
            assert ours_failed.value.message == error.message
            continue
        got = ours.coerce(value, param=param, ctx=None)
        assert got == expected and type(got) is type(expected), value


def test_lists_and_custom_parsers_stay_with_typer() -> None:
    assert fast_params.plain_kind(list[str], _param(list[str]).type_descriptor.parameter_info) \
        is None
    info = _param(str, parser=str.upper).type_descriptor.parameter_info
    assert fast_params.plain_kind(str, info) is None

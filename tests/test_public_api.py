"""Each package's __all__ names exactly what it exports, and every name resolves."""
from __future__ import annotations

import importlib

import pytest

import azlift


@pytest.mark.parametrize("package", ["azlift.vhd", "azlift.upload", "azlift.prep", "azlift", "azlift.bulk"])
def test_all_names_resolve(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__all__, f"{package} has an empty __all__"
    assert len(set(module.__all__)) == len(module.__all__)
    for name in module.__all__:
        assert hasattr(module, name), f"{package}.__all__ names missing {name}"


# What each library package may not import: the CLI's toolkit, the CLI itself, and the
# packages above it in the one direction azlift -> upload -> vhd, azlift -> prep.
FORBIDDEN = {
    "azlift.vhd": ("azlift.upload", "azlift.prep", "from azlift import upload",
                   "from azlift import prep"),
    "azlift.upload": ("azlift.prep", "from azlift import prep"),
    "azlift.prep": ("azlift.vhd", "azlift.upload", "from azlift import vhd",
                    "from azlift import upload"),
    "azlift.bulk": (),
}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_library_packages_do_not_import_the_cli(package: str) -> None:
    import pathlib
    root = pathlib.Path(importlib.import_module(package).__file__).parent
    for source in root.rglob("*.py"):
        text = source.read_text()
        for forbidden in ("import typer", "import tqdm", "azlift.cli", "from azlift import cli",
                          *FORBIDDEN[package]):
            assert forbidden not in text, f"{source} has {forbidden!r}"


def test_version_is_a_string() -> None:
    assert azlift.__version__.count(".") == 2

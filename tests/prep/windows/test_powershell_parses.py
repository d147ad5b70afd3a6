"""Every PowerShell text azlift ships or sends parses without errors (tree-sitter-powershell).

Covered: each .ps1 file in the prep package (found by globbing, so new scripts are covered
without editing this test), each script as ``scripts.script()`` sends it with its
parameters bound, and every multi-line PowerShell constant in the WinRM and Windows
modules (the stdin loader and the like).
"""
from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest
import tree_sitter
import tree_sitter_powershell

from azlift import prep
from azlift.prep import windows
from azlift.prep.windows import scripts

PREP = Path(prep.__file__).parent
PS1_FILES = sorted(PREP.rglob("*.ps1"))
# Parameters the scripts are sent with (sysprep.py, preparer.py), one of each literal type.
SAMPLE_PARAMS = {
    "start-sysprep": {"SysprepArguments": ["/generalize", "/oobe", "/quiet", "/quit"]},
    "fetch-logs": {"TailLines": 60},
}


def _parser() -> tree_sitter.Parser:
    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))


def syntax_errors(text: str) -> list[str]:
    """Each ERROR or MISSING node as 'line:column: text'."""
    source = text.encode("utf-8")
    found, stack = [], [_parser().parse(source).root_node]
    while stack:
        node = stack.pop()
        if node.type == "ERROR" or node.is_missing:
            line, column = node.start_point
            snippet = source[node.start_byte:node.end_byte][:60].decode("utf-8", "replace")
            found.append(f"{line + 1}:{column + 1}: {node.type} {snippet!r}")
        stack.extend(node.children)
    return found


def powershell_constants() -> dict[str, str]:
    """Multi-line PowerShell held in module constants of prep.winrm and prep.windows.*."""
    modules = ["azlift.prep.winrm"] + [f"azlift.prep.windows.{m.name}"
                                for m in pkgutil.iter_modules(windows.__path__)]
    found = {}
    for name in modules:
        module = importlib.import_module(name)
        for attribute, value in vars(module).items():
            if attribute.isupper() and isinstance(value, str) and "\n" in value and "$" in value:
                found[f"{name}.{attribute}"] = value
    return found


def test_the_parser_reports_real_syntax_errors() -> None:
    # The check below can fail: an unclosed condition and an unclosed array are errors.
    assert syntax_errors("if ($x { 1 }")
    assert syntax_errors("$a = @(1, 2")
    assert syntax_errors("$b = $x ?? 'default'")  # PowerShell 7 only; 5.1 rejects it
    assert not syntax_errors("$c = @(1, 2)\nif ($c) { 'ok' }\n")


def test_the_package_ships_its_scripts() -> None:
    names = {path.name for path in PS1_FILES}
    assert "check.ps1" in names
    assert set(scripts.SCRIPT_FILES.values()) <= names


@pytest.mark.parametrize("path", PS1_FILES, ids=[p.name for p in PS1_FILES])
def test_each_ps1_file_parses(path: Path) -> None:
    assert syntax_errors(path.read_text("utf-8")) == []


@pytest.mark.parametrize("name", sorted(scripts.SCRIPT_FILES))
def test_each_script_parses_as_sent(name: str) -> None:
    assert syntax_errors(scripts.script(name, **SAMPLE_PARAMS.get(name, {}))) == []


def test_parameters_with_quotes_and_lists_parse() -> None:
    text = scripts.script("check", Note="it's", Names=["a'b", "c"], Count=3, Flag=True)
    assert syntax_errors(text) == []


def test_powershell_constants_parse() -> None:
    constants = powershell_constants()
    assert "azlift.prep.winrm.STDIN_LOADER" in constants
    for name, text in constants.items():
        assert syntax_errors(text) == [], name

"""check.ps1 read as a program: properties the findings rules rely on."""
from __future__ import annotations

import re
from importlib import resources

import tree_sitter
import tree_sitter_powershell

CHECK_PS1 = resources.files("azlift.prep.windows").joinpath("check.ps1").read_text("utf-8")

# Commands that cannot fail in a way that hides a fact, and the script's own functions.
CANNOT_HIDE_A_FAILURE = {
    "ForEach-Object", "Where-Object", "Select-String", "Sort-Object", "Out-String",
    "ConvertTo-Json", "New-Object", "Test-Path",
    "Get-RegValue", "Get-Fact", "Get-BcdEntry", "Test-Administrator",
}


def commands(text: str) -> list[tuple[str, str]]:
    """(name, whole command text) of each command the script runs."""
    parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))
    source = text.encode("utf-8")
    found, stack = [], [parser.parse(source).root_node]
    while stack:
        node = stack.pop()
        name = node.child_by_field_name("command_name") if node.type == "command" else None
        if name is not None:
            found.append((name.text.decode(), source[node.start_byte:node.end_byte].decode()))
        stack.extend(node.children)
    return found


def test_every_cmdlet_says_what_to_do_on_error() -> None:
    # $ErrorActionPreference does not reach functions of script and CDXML modules
    # (Get-NetFirewallRule, Get-AppxPackage, Get-BitLockerVolume, Get-StorageSetting), so a
    # failure there would be a silent empty answer unless the call says -ErrorAction.
    cmdlets = [(name, text) for name, text in commands(CHECK_PS1)
               if re.fullmatch(r"[A-Z][a-z]+-[A-Za-z]+", name)
               and name not in CANNOT_HIDE_A_FAILURE]
    assert len(cmdlets) > 15
    assert [name for name, text in cmdlets if "-ErrorAction" not in text] == []


def test_every_failing_query_reports_its_reason() -> None:
    # Get-Fact's catch is the only catch that does not name what went wrong in the facts:
    # each catch either returns an error section or records into read_errors.
    catches = re.findall(r"catch \{([^}]*)\}", CHECK_PS1)
    assert catches
    for body in catches:
        assert ("error = " in body or "$ReadErrors[" in body or "whoami.exe" in body
                or "return $null" in body), body

"""The PowerShell scripts shipped with the package, with parameters bound as literals."""
from __future__ import annotations

from importlib import resources

from ..winrm import POWERSHELL_PREAMBLE

SCRIPT_FILES = {
    "check": "check.ps1",
    "image-state": "image_state.ps1",
    "clean-panther": "clean_panther.ps1",
    "start-sysprep": "start_sysprep.ps1",
    "fetch-logs": "fetch_logs.ps1",
    "shutdown": "shutdown.ps1",
}


def ps_literal(value: object) -> str:
    """``value`` as a PowerShell literal: single-quoted strings, arrays, ints, booleans."""
    if isinstance(value, bool):
        return "$true" if value else "$false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "@(" + ", ".join(ps_literal(item) for item in value) + ")"
    return "'" + str(value).replace("'", "''") + "'"


def script(name: str, **params: object) -> str:
    """The text of script ``name`` as it is sent: the marker line, then each parameter as
    ``$Name = literal``, then the transport's preamble (no progress records, UTF-8 output),
    then the body, so the script file itself stays plain and reviewable."""
    text = resources.files(__package__).joinpath(SCRIPT_FILES[name]).read_text("utf-8")
    marker, _, body = text.partition("\n")
    assignments = "".join(f"${key} = {ps_literal(value)}\n" for key, value in params.items())
    return f"{marker}\n{assignments}{POWERSHELL_PREAMBLE}{body}"

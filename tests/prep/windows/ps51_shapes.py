"""What Windows PowerShell 5.1's ConvertTo-Json writes, as fixtures for the findings rules.

check.ps1 runs under powershell.exe 5.1 on Server 2016-2025. Its JSON differs from
PowerShell 7's in ways the rules must survive:
- a string that carries note properties (every line ``Get-Content`` returns) is written
  as an object: ``{"value": "...", "PSPath": ..., "ReadCount": 1, ...}``
  (PowerShell/PowerShell#5797, #6458);
- an array that passed through the pipeline as one object (``,$list``,
  ``Write-Output -NoEnumerate``) is written as ``{"value": [...], "Count": n}``;
- a pipeline result assigned without ``@()`` is the bare element when there is one;
- ``'``, ``<``, ``>`` and ``&`` are written as ``\\u0027``-style escapes.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures"
# check.ps1's documents as 5.1 prints them (compressed, escaped, CRLF):
# a Server 2022 guest that passes every check;
READY_SERVER_2022 = FIXTURES / "check_ps51_server2022_ready.json"
# a Server 2019 guest lifted from VMware: German display names, VMware Tools and drivers,
# a static IP with a persistent default route, a corporate WinHTTP proxy without the
# platform bypass, no Azure platform rules, no guest agent, pending renames from the tools;
FROM_VMWARE_SERVER_2019 = FIXTURES / "check_ps51_server2019_from_vmware.json"
# a Server 2016 guest whose BitLocker, AppX, WS-Management and Defender queries fail inside
# the WinRM session, and one registry value it may not read.
QUERIES_FAILED_SERVER_2016 = FIXTURES / "check_ps51_server2016_queries_failed.json"


def load(fixture: Path) -> dict[str, Any]:
    return json.loads(fixture.read_text("utf-8"))


def ready_facts() -> dict[str, Any]:
    """The ready Server 2022 guest's facts."""
    return load(READY_SERVER_2022)


def get_content_string(text: str, path: str) -> dict[str, Any]:
    """A string read by Get-Content, as 5.1 serializes it with its note properties."""
    parent, _, child = path.rpartition("\\")
    provider = "Microsoft.PowerShell.Core\\FileSystem"
    return {"value": text, "PSPath": f"{provider}::{path}",
            "PSParentPath": f"{provider}::{parent}", "PSChildName": child,
            "PSDrive": {"CurrentLocation": "", "Name": path[:1], "Provider": provider,
                        "Root": path[:3], "Description": "", "MaximumSize": None,
                        "Credential": "System.Management.Automation.PSCredential",
                        "DisplayRoot": None},
            "PSProvider": {"ImplementingType": "Microsoft.PowerShell.Commands."
                           "FileSystemProvider", "HelpFile": "System.Management.Automation"
                           ".dll-Help.xml", "Name": "FileSystem", "PSSnapIn":
                           "Microsoft.PowerShell.Core", "ModuleName": "Microsoft.PowerShell"
                           ".Core", "Module": None, "Description": "", "Capabilities": 52,
                           "Home": "C:\\Users\\Administrator", "Drives": "C A D"},
            "ReadCount": 1}


def ps_object_array(items: list[Any]) -> dict[str, Any]:
    """An array that travelled as one pipeline object, as 5.1 serializes it."""
    return {"value": items, "Count": len(items)}


def collapsed(items: list[Any]) -> Any:
    """A pipeline result assigned without @(): one element arrives bare, none as null."""
    if not items:
        return None
    return items[0] if len(items) == 1 else items


def failed_query(message: str, error_id: str, command: str) -> dict[str, Any]:
    """A section whose query threw, as check.ps1's Get-Fact reports it."""
    return {"error": message, "error_id": error_id, "command": command}


def in_51_shapes(value: Any, wrap: str = "collapse") -> Any:
    """``value`` with every list re-shaped the way 5.1 can write it: ``collapse`` (bare
    single elements) or ``psobject`` ({"value": [...], "Count": n}); strings inside
    lists become Get-Content strings."""
    value = copy.deepcopy(value)
    if isinstance(value, dict):
        return {key: in_51_shapes(item, wrap) for key, item in value.items()}
    if isinstance(value, list):
        items = [get_content_string(item, "C:\\Windows\\Temp\\x.txt") if isinstance(item, str)
                 else in_51_shapes(item, wrap) for item in value]
        return collapsed(items) if wrap == "collapse" else ps_object_array(items)
    return value

"""Manifest documents written back as TOML (``azlift bulk import``, test fixtures): the
standard library reads TOML but does not write it, and a manifest needs only plain
values, inline tables, tables and arrays of tables."""
from __future__ import annotations

import math
import re
from typing import Any


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)  # Python's shortest round-trip form is valid TOML
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}"
                                for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _toml_key(key: str) -> str:
    return key if re.match(r"^[A-Za-z0-9_-]+$", key) else _toml_value(key)


def to_toml(document: dict[str, Any]) -> str:
    """A manifest document (plain values, tables, arrays of tables) as TOML text."""
    lines: list[str] = []

    def table(values: dict[str, Any], prefix: str) -> None:
        for key, value in values.items():
            if not isinstance(value, dict) and not (
                    isinstance(value, list) and value and all(isinstance(v, dict) for v in value)):
                lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
        for key, value in values.items():
            name = f"{prefix}{_toml_key(key)}"
            if isinstance(value, dict):
                lines.extend(["", f"[{name}]"])
                table(value, f"{name}.")
            elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                for item in value:
                    lines.extend(["", f"[[{name}]]"])
                    table(item, f"{name}.")

    table(document, "")
    return "\n".join(lines).lstrip("\n") + "\n"

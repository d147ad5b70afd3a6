"""Checks of manifest values: each records a problem under its key path (``vm[3].lun``)
with what was expected and what was found, and returns the value checked or None. A
secret (a key or SAS) is refused wherever it appears, without being echoed.
"""
from __future__ import annotations

import re
from typing import Any

from .errors import ManifestError, SecretInManifestError

SECRET_KEYS = frozenset({"sas", "sas_token", "account_key", "key", "connection_string",
                         "password", "secret", "client_secret", "token", "storage_key"})
SECRET_VALUE = re.compile(r"(?i)(AccountKey=|SharedAccessSignature=|[?&]sig=)")
SECRET_ADVICE = ("a manifest names no secrets: set AZURE_STORAGE_CONNECTION_STRING, "
                 "AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN on the workers, or use "
                 "auth_mode = \"login\"")


class _Problems:
    """Collects every problem of one manifest, each with its key path."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.lines: list[str] = []
        self.secret = False

    def add(self, path: str, message: str) -> None:
        self.lines.append(f"{self.file}: {path}: {message}")

    def raise_if_any(self) -> None:
        if not self.lines:
            return
        error_class = SecretInManifestError if self.secret else ManifestError
        raise error_class(self.lines)


def _found(value: Any) -> str:
    kind = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "an array", dict: "a table"}.get(type(value), type(value).__name__)
    if isinstance(value, (dict, list)):
        return kind
    return f"{kind} ({value!r})" if not isinstance(value, str) or len(value) < 80 else kind


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _check_secrets(table: Any, path: str, problems: _Problems) -> None:
    """Refuse any key or value that carries a secret, anywhere in the document."""
    if isinstance(table, dict):
        for key, value in table.items():
            where = _join(path, key)
            if key.lower() in SECRET_KEYS:
                problems.add(where, f"refused: {SECRET_ADVICE}")
                problems.secret = True
            else:
                _check_secrets(value, where, problems)
    elif isinstance(table, list):
        for index, value in enumerate(table):
            _check_secrets(value, f"{path}[{index}]", problems)
    elif isinstance(table, str) and SECRET_VALUE.search(table):
        problems.add(path, f"refused: the value carries a key or SAS signature; {SECRET_ADVICE}")
        problems.secret = True


def _unknown_keys(table: dict, allowed: tuple[str, ...] | frozenset[str], path: str,
                  problems: _Problems) -> None:
    for key in table:
        if key not in allowed and key.lower() not in SECRET_KEYS:
            problems.add(_join(path, key), f"unknown key; expected one of {', '.join(sorted(allowed))}")


def _text(value: Any, path: str, problems: _Problems, *, pattern: re.Pattern | None = None,
          choices: tuple[str, ...] | None = None, what: str = "a string") -> str | None:
    if not isinstance(value, str) or not value.strip():
        problems.add(path, f"expected {what}, found {_found(value) if value != '' else 'an empty string'}")
        return None
    if choices is not None:
        for choice in choices:
            if choice.lower() == value.lower():
                return choice
        problems.add(path, f"expected one of {', '.join(choices)}, found {value!r}")
        return None
    if pattern is not None and not pattern.match(value):
        problems.add(path, f"expected {what}, found {value!r}")
        return None
    return value


def _integer(value: Any, path: str, problems: _Problems, low: int, high: int) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        problems.add(path, f"expected an integer {low}..{high}, found {_found(value)}")
        return None
    if not low <= value <= high:
        problems.add(path, f"expected an integer {low}..{high}, found {value}")
        return None
    return value


def _boolean(value: Any, path: str, problems: _Problems) -> bool | None:
    if not isinstance(value, bool):
        problems.add(path, f"expected true or false, found {_found(value)}")
        return None
    return value


def _string_list(value: Any, path: str, problems: _Problems) -> tuple[str, ...] | None:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        problems.add(path, f"expected an array of strings, found {_found(value)}")
        return None
    return tuple(value)


def _tags(value: Any, path: str, problems: _Problems) -> tuple[tuple[str, str], ...] | None:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        problems.add(path, f"expected a table of string values, found {_found(value)}")
        return None
    return tuple(sorted(value.items()))


def _array_of_tables(value: Any, path: str, problems: _Problems) -> list[dict]:
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        problems.add(path, f"expected an array of tables ([[{path}]]), found {_found(value)}")
        return []
    return value

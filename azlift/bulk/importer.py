"""`azlift bulk import`: a manifest from a spreadsheet export (CSV, one row per disk).

Columns: ``vm`` (or ``id``), ``source``, ``path``, ``role`` and/or ``lun``, optional
``blob`` and ``format``, and any per-VM setting (``os_type``, ``register``, ...) as a
per-VM override. The rows of one VM must agree on its settings. The result is validated
like any manifest before it is written (to a temporary name, then renamed).
"""
from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import ManifestError, OutputExistsError
from .manifest import DISK_KEYS, SCHEMA, SETTING_NAMES, Manifest, parse_manifest
from .toml_writer import to_toml

BOOLEAN_SETTINGS = frozenset({"emulator", "overwrite", "specialized", "zone_resilient"})
INTEGER_SETTINGS = frozenset({"threads"})
LIST_SETTINGS = frozenset({"target_regions"})
VM_COLUMNS = ("vm", "id")


def _setting(name: str, text: str, where: str, problems: list[str]) -> Any:
    if name in BOOLEAN_SETTINGS:
        if text.lower() not in ("true", "false", "yes", "no", "1", "0"):
            problems.append(f"{where}: {name}: expected true or false, found {text!r}")
        return text.lower() in ("true", "yes", "1")
    if name in INTEGER_SETTINGS:
        if not text.isdigit():
            problems.append(f"{where}: {name}: expected a whole number, found {text!r}")
            return text
        return int(text)
    if name in LIST_SETTINGS:
        return [part.strip() for part in text.split(";") if part.strip()]
    return text


def table_to_document(table: Path, defaults: dict[str, Any]) -> dict[str, Any]:
    """The manifest document the CSV describes (not yet validated)."""
    try:
        with open(table, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ManifestError([f"{table}: cannot read the table: {error}"]) from None
    problems: list[str] = []
    known = {*VM_COLUMNS, "source", *DISK_KEYS, *SETTING_NAMES}
    columns = [name.strip().lower() for name in (rows[0].keys() if rows else [])]
    unknown = [name for name in columns if name not in known]
    if unknown:
        problems.append(f"{table}: unknown column(s) {', '.join(unknown)}; expected vm, source, "
                        "path, role, lun, blob, format or a per-VM setting")
    if not rows:
        problems.append(f"{table}: expected a header row and one row per disk, found no rows")
    vms: dict[str, dict[str, Any]] = {}
    sources: list[str] = []
    for number, raw in enumerate(rows, start=2):
        row = {(key or "").strip().lower(): (value or "").strip() for key, value in raw.items()}
        where = f"{table}: row {number}"
        vm_id = row.get("vm") or row.get("id")
        if not vm_id:
            problems.append(f"{where}: vm: expected a VM id, found an empty cell")
            continue
        vm = vms.setdefault(vm_id, {"id": vm_id, "disk": [], "_rows": {}})
        for name in ("source", *SETTING_NAMES):
            if not row.get(name):
                continue
            value = row[name] if name == "source" else _setting(name, row[name], where, problems)
            if name in vm and vm[name] != value:
                problems.append(f"{where}: {name}: {row[name]!r} differs from row "
                                f"{vm['_rows'][name]}'s value for vm {vm_id}")
                continue
            vm[name] = value
            vm["_rows"].setdefault(name, number)
        if row.get("source") and row["source"] not in sources:
            sources.append(row["source"])
        disk: dict[str, Any] = {key: row[key] for key in ("path", "role", "blob", "format")
                                if row.get(key)}
        if row.get("lun"):
            if not row["lun"].isdigit():
                problems.append(f"{where}: lun: expected a whole number, found {row['lun']!r}")
            else:
                disk["lun"] = int(row["lun"])
        vm["disk"].append(disk)
    if problems:
        raise ManifestError(problems)
    for vm in vms.values():
        del vm["_rows"]
        vm["disk"] = vm.pop("disk")  # disks after the VM's own keys
    return {"schema": SCHEMA, "defaults": defaults,
            "source": [{"name": name} for name in sources], "vm": list(vms.values())}


def import_table(table: Path, output: Path, *, defaults: dict[str, Any],
                 force: bool = False) -> Manifest:
    """Write ``output`` from ``table``; nothing is written when the result is invalid."""
    if output.exists() and not force:
        raise OutputExistsError(f"{output} exists; pass --force to replace it")
    document = table_to_document(table, defaults)
    text = to_toml(document)
    manifest = parse_manifest(document, f"{table} (as {output.name})",
                              base_dir=output.resolve().parent)
    fd, temp = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.resolve().parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temp, output)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return manifest

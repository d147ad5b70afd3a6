"""The bulk manifest (TOML, schema ``azlift.bulk/1``): parse, validate, resolve defaults.

Everything is checked before any work starts, and every problem names the file, the key
path (``vm[3].disk[1].lun``, indexes from 0) and what was expected against what was found.
Secrets are refused: a manifest names environment variables, never holds a SAS or a key.
Paths are not opened here: in a scale-out run only the workers can read them.
"""
from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from azlift.vhd.detect import FORMAT_ALIASES

from .errors import ManifestError
# The model's names are re-exported: the runner, tasks and tests import them from here.
from .manifest_model import (  # noqa: F401
    DiskSpec,
    Limits,
    Manifest,
    MANAGED_DISK,
    SETTING_NAMES,
    Settings,
    SourceSpec,
    VmSpec,
)
from .manifest_values import (
    _array_of_tables,
    _boolean,
    _check_secrets,
    _found,
    _integer,
    _join,
    _Problems,
    _string_list,
    _tags,
    _text,
    _unknown_keys,
)
from .prep_spec import parse_prep, parse_reach

SCHEMA = "azlift.bulk/1"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
VERSION_PATTERN = re.compile(r"^\d{1,10}\.\d{1,10}\.\d{1,10}$")
REGISTER_KINDS = ("none", "image", "gallery-version", "disk")
DISK_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?$")
OS_TYPES = ("linux", "windows")
GENERATIONS = ("V1", "V2")
ROLES = ("os", "data")
MAX_LUN = 63


def _destination(value: Any, path: str, problems: _Problems) -> str | None:
    text = _text(value, path, problems, what="a container URL")
    if text is None:
        return None
    if text == MANAGED_DISK:
        return text
    if text.startswith(("http://", "https://")):
        parts = urlsplit(text)
        # A query (a SAS) was refused by the secret check; judge the rest without it.
        text = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        segments = [segment for segment in parts.path.split("/") if segment]
        if not parts.hostname or not segments:
            problems.add(path, f"expected a container URL like https://ACCOUNT.blob.core."
                               f"windows.net/CONTAINER/, found {text!r}")
            return None
        # an emulator's URL carries the account first: its container is not told apart here
        container = segments[0] if ".blob." in parts.hostname else None
    else:
        container = text.strip("/").split("/", 1)[0]
    if container is not None and not CONTAINER_NAME.fullmatch(container):
        problems.add(path, f"expected a container name of 3-63 lowercase letters, digits and "
                           f"single hyphens (as Azure allows), found {container!r}")
        return None
    return text


# Azure's rule for container names (and its special $root container)
CONTAINER_NAME = re.compile(r"\$root|(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")


SETTING_CHECKS: dict[str, Callable[[Any, str, _Problems], Any]] = {
    "destination": _destination,
    "emulator": _boolean,
    "auth_mode": lambda v, p, pr: _text(v, p, pr, choices=("key", "login")),
    "threads": lambda v, p, pr: _integer(v, p, pr, 1, 64),
    "register": lambda v, p, pr: _text(v, p, pr, choices=REGISTER_KINDS),
    "overwrite": _boolean,
    "verify": lambda v, p, pr: _text(v, p, pr, choices=("pages", "full")),
    "resource_group": _text,
    "location": _text,
    "subscription": _text,
    "cloud": lambda v, p, pr: _text(v, p, pr, choices=("AzureCloud", "AzureChinaCloud",
                                                        "AzureUSGovernment")),
    "arm_endpoint": lambda v, p, pr: _text(v, p, pr, pattern=re.compile(r"^https://\S+$"),
                                           what="an https:// URL"),
    "os_type": lambda v, p, pr: _text(v, p, pr, choices=OS_TYPES),
    "hyper_v_generation": lambda v, p, pr: _text(v, p, pr, choices=GENERATIONS),
    "specialized": _boolean,
    "zone_resilient": _boolean,
    "image_name": lambda v, p, pr: _text(v, p, pr, pattern=NAME_PATTERN,
                                         what="a name of letters, digits, '.', '_', '-'"),
    "gallery": _text,
    "gallery_image": _text,
    "gallery_version": lambda v, p, pr: _text(v, p, pr, pattern=VERSION_PATTERN,
                                              what="MAJOR.MINOR.PATCH"),
    "storage_account_id": lambda v, p, pr: _text(
        v, p, pr, pattern=re.compile(r"(?i)^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/"
                                     r"Microsoft\.Storage/storageAccounts/[^/]+$"),
        what="a storage account resource id"),
    "publisher": _text,
    "offer": _text,
    "sku": _text,
    "disk_sku": _text,
    "target_regions": _string_list,
    "tags": _tags,
}


def _settings(table: dict, path: str, base: Settings, problems: _Problems) -> Settings:
    changes: dict[str, Any] = {}
    for name in SETTING_NAMES:
        if name in table:
            value = SETTING_CHECKS[name](table[name], _join(path, name), problems)
            if value is not None:
                changes[name] = value
    return replace(base, **changes)


# ---- the document ---------------------------------------------------------------------------

TOP_KEYS = ("schema", "defaults", "limits", "source", "vm")
SOURCE_KEYS = ("name", "max_disks")
VM_KEYS = ("id", "source", "disk", "prep", "reach", *SETTING_NAMES)
DISK_KEYS = ("path", "role", "lun", "blob", "format", "disk_name")
LIMIT_KEYS = ("account_requests", "arm_writes", "prep_guests")


def load_manifest(path: str | Path) -> Manifest:
    """Read and validate ``path``; ManifestError lists every problem found."""
    path = Path(path)
    shown = str(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ManifestError([f"{shown}: cannot read the manifest: {error.strerror or error}"]) from None
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ManifestError([f"{shown}: expected UTF-8 TOML, found undecodable bytes"]) from None
    except tomllib.TOMLDecodeError as error:
        raise ManifestError([f"{shown}: not valid TOML: {error}"]) from None
    return parse_manifest(document, shown, base_dir=path.resolve().parent,
                          digest=hashlib.sha256(raw).hexdigest())


def parse_manifest(document: dict, file: str, *, base_dir: Path | None = None,
                   digest: str = "") -> Manifest:
    """Validate a parsed TOML document (see module docstring)."""
    problems = _Problems(file)
    _check_secrets(document, "", problems)
    _unknown_keys(document, TOP_KEYS, "", problems)
    if document.get("schema") != SCHEMA:
        problems.add("schema", f"expected \"{SCHEMA}\", found "
                     f"{_found(document['schema']) if 'schema' in document else 'nothing'}")
    defaults_table = document.get("defaults", {})
    defaults = Settings()
    if not isinstance(defaults_table, dict):
        problems.add("defaults", f"expected a table, found {_found(defaults_table)}")
    else:
        _unknown_keys(defaults_table, SETTING_NAMES, "defaults", problems)
        defaults = _settings(defaults_table, "defaults", defaults, problems)
    limits = _limits(document.get("limits", {}), problems)
    sources = _sources(document.get("source", []), problems)
    vms = _vms(document.get("vm"), defaults, {s.name for s in sources}, base_dir, problems)
    problems.raise_if_any()
    return Manifest(path=file, digest=digest, sources=tuple(sources), vms=tuple(vms),
                    limits=limits)


def _limits(table: Any, problems: _Problems) -> Limits:
    if not isinstance(table, dict):
        problems.add("limits", f"expected a table, found {_found(table)}")
        return Limits()
    _unknown_keys(table, LIMIT_KEYS, "limits", problems)
    values = {}
    for key, high in (("account_requests", 4096), ("arm_writes", 200), ("prep_guests", 256)):
        if key in table:
            value = _integer(table[key], f"limits.{key}", problems, 1, high)
            if value is not None:
                values[key] = value
    return Limits(**values)


def _sources(value: Any, problems: _Problems) -> list[SourceSpec]:
    sources: list[SourceSpec] = []
    seen: set[str] = set()
    for index, table in enumerate(_array_of_tables(value, "source", problems)):
        where = f"source[{index}]"
        _unknown_keys(table, SOURCE_KEYS, where, problems)
        name = _text(table.get("name"), f"{where}.name", problems, pattern=NAME_PATTERN,
                     what="a name of letters, digits, '.', '_', '-' (no ',' or '=')")
        max_disks = 2
        if "max_disks" in table:
            max_disks = _integer(table["max_disks"], f"{where}.max_disks", problems, 1, 256) or 2
        if name is None:
            continue
        if name in seen:
            problems.add(f"{where}.name", f"source {name!r} is declared twice")
            continue
        seen.add(name)
        sources.append(SourceSpec(name, max_disks))
    return sources


def _vms(value: Any, defaults: Settings, source_names: set[str], base_dir: Path | None,
         problems: _Problems) -> list[VmSpec]:
    if value is None:
        problems.add("vm", "expected at least one [[vm]], found none")
        return []
    vms: list[VmSpec] = []
    ids: set[str] = set()
    blobs: dict[str, str] = {}
    paths: dict[str, str] = {}
    for index, table in enumerate(_array_of_tables(value, "vm", problems)):
        vm = _vm(table, f"vm[{index}]", defaults, source_names, base_dir, problems)
        if vm is None:
            continue
        if vm.id in ids:
            problems.add(f"vm[{index}].id", f"duplicate id {vm.id!r}: every VM needs its own id")
            continue
        ids.add(vm.id)
        for number, disk in enumerate(vm.disks):
            where = f"vm[{index}].disk[{number}]"
            target = vm.target_key(disk)
            if target in blobs:
                key, what = (("disk_name", "managed disk") if vm.settings.managed_disk
                             else ("blob", "blob"))
                problems.add(f"{where}.{key}", f"{what} {vm.target_url(disk)!r} is also the "
                             f"target of {blobs[target]}")
            blobs.setdefault(target, where)
            if disk.path in paths:
                problems.add(f"{where}.path", f"{disk.path!r} is also listed at {paths[disk.path]}")
            paths.setdefault(disk.path, where)
        vms.append(vm)
    return vms


def _vm(table: dict, where: str, defaults: Settings, source_names: set[str],
        base_dir: Path | None, problems: _Problems) -> VmSpec | None:
    before = len(problems.lines)
    _unknown_keys(table, VM_KEYS, where, problems)
    vm_id = _text(table.get("id"), f"{where}.id", problems, pattern=NAME_PATTERN,
                  what="an id of letters, digits, '.', '_', '-' (1-63 characters)")
    source = table.get("source")
    if source is None and len(source_names) == 1:
        source = next(iter(source_names))
    source = _text(source, f"{where}.source", problems, what="the name of a [[source]]")
    if source is not None and source not in source_names:
        declared = ", ".join(sorted(source_names)) or "none"
        problems.add(f"{where}.source", f"no [[source]] named {source!r} (declared: {declared})")
    settings = _settings(table, where, defaults, problems)
    prep = parse_prep(table["prep"], f"{where}.prep", base_dir, problems) if "prep" in table \
        else None
    reach = parse_reach(table["reach"], f"{where}.reach", problems) if "reach" in table else None
    if "reach" in table and "prep" not in table:
        problems.add(f"{where}.reach", "reach names the workers that run a guest's prep; this "
                     "VM has no [vm.prep]")
    if prep is not None:
        if settings.os_type is None:
            settings = replace(settings, os_type=prep.os)
        elif settings.os_type != prep.os:
            problems.add(f"{where}.os_type", f"os_type = \"{settings.os_type}\" but the guest "
                         f"is prepared as os = \"{prep.os}\"")
    _check_settings(settings, where, problems)
    disks = _disks(table.get("disk"), f"{where}.disk", vm_id or "vm", base_dir, problems)
    for number, disk in enumerate(disks):
        if disk.disk_name is not None and not settings.managed_disk:
            problems.add(f"{where}.disk[{number}].disk_name", "disk_name applies to "
                         f"destination = \"{MANAGED_DISK}\"; this VM uploads to blobs (set blob)")
    if disks and settings.register in ("image", "gallery-version") and \
            not any(disk.role == "os" for disk in disks):
        problems.add(f"{where}.disk", f"register = \"{settings.register}\" needs one disk with "
                     "role = \"os\", found none")
    if len(problems.lines) > before or vm_id is None or source is None:
        return None
    return VmSpec(vm_id, source, tuple(disks), settings, prep, reach)


def _check_settings(settings: Settings, where: str, problems: _Problems) -> None:
    """Settings that only make sense together (after defaults were applied)."""
    if settings.managed_disk:
        _check_managed_disk(settings, where, problems)
        return
    if settings.destination is None:
        problems.add(f"{where}.destination", "expected a container URL (here or in "
                     "[defaults]), found none")
    elif not settings.emulator and not settings.destination.startswith(("http://", "https://")):
        problems.add(f"{where}.destination", f"expected a container URL (or emulator = true "
                     f"with a container name), found {settings.destination!r}")
    needs = {"image": ("resource_group", "location"),
             "gallery-version": ("resource_group", "location", "gallery", "gallery_image",
                                 "gallery_version", "storage_account_id"),
             "disk": ("resource_group", "location", "storage_account_id")}
    for name in needs.get(settings.register, ()):
        if getattr(settings, name) is None:
            problems.add(f"{where}.{name}", f"register = \"{settings.register}\" needs {name} "
                         "(here or in [defaults]), found none")


def _check_managed_disk(settings: Settings, where: str, problems: _Problems) -> None:
    """Direct upload: the disks need a resource group and a region; an image or the disks
    themselves can be registered, a gallery version (made from VHD blobs) cannot."""
    for name in ("resource_group", "location"):
        if getattr(settings, name) is None:
            problems.add(f"{where}.{name}", f"destination = \"{MANAGED_DISK}\" needs {name} "
                         "(here or in [defaults]), found none")
    if settings.register == "gallery-version":
        problems.add(f"{where}.register", f"register = \"gallery-version\" is made from VHD "
                     f"blobs; with destination = \"{MANAGED_DISK}\" expected register = "
                     "\"image\", \"disk\" or \"none\" (or give a container destination)")


def _disks(value: Any, where: str, vm_id: str, base_dir: Path | None,
           problems: _Problems) -> list[DiskSpec]:
    if value is None:
        problems.add(where, "expected at least one [[vm.disk]], found none")
        return []
    disks: list[DiskSpec] = []
    luns: dict[int, int] = {}
    os_at: int | None = None
    for number, table in enumerate(_array_of_tables(value, where, problems)):
        here = f"{where}[{number}]"
        _unknown_keys(table, DISK_KEYS, here, problems)
        path = _text(table.get("path"), f"{here}.path", problems, what="a file path")
        role = table.get("role")
        lun = table.get("lun")
        if role is None:
            role = "data" if lun is not None else None
        if role is None:
            problems.add(f"{here}.role", "expected role = \"os\" or a data disk's lun, found neither")
            continue
        role = _text(role, f"{here}.role", problems, choices=ROLES)
        if role == "os":
            if lun is not None:
                problems.add(f"{here}.lun", "an OS disk has no LUN; remove lun or set role = \"data\"")
            if os_at is not None:
                problems.add(f"{here}.role", f"a VM has one OS disk; disk[{os_at}] is already "
                             "role = \"os\"")
            os_at = number
        elif role == "data":
            if lun is None:
                problems.add(f"{here}.lun", f"expected a LUN 0..{MAX_LUN} for a data disk, found none")
            else:
                lun = _integer(lun, f"{here}.lun", problems, 0, MAX_LUN)
                if lun is not None and lun in luns:
                    problems.add(f"{here}.lun", f"LUN {lun} is also used by disk[{luns[lun]}]")
                elif lun is not None:
                    luns[lun] = number
        blob = None
        if "blob" in table:
            blob = _text(table["blob"], f"{here}.blob", problems,
                         pattern=re.compile(r"^[^/\\?#][^\\?#]{0,1023}$"),
                         what="a blob name (no '?', '#' or leading '/')")
        disk_name = None
        if "disk_name" in table:
            disk_name = _text(table["disk_name"], f"{here}.disk_name", problems,
                              pattern=DISK_NAME_PATTERN,
                              what="a disk name of 1-80 letters, digits, '_', '.', '-'")
        fmt = None
        if "format" in table:
            fmt = _text(table["format"], f"{here}.format", problems, choices=tuple(FORMAT_ALIASES))
        if path is None or role is None:
            continue
        if base_dir is not None and not Path(path).is_absolute():
            path = str(base_dir / path)
        label = "os" if role == "os" else f"lun{lun}"
        disks.append(DiskSpec(path=path, role=role, lun=lun if role == "data" else None,
                              blob=blob or f"{vm_id}-{label}.vhd", format=fmt,
                              disk_name=disk_name))
    return disks

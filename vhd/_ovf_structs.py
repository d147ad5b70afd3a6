"""OVF descriptor and OVA manifest: the parts azlift reads, as pure parsing (no I/O).

Source: DMTF DSP0243 (OVF 1.x/2.x): ``References/File`` (href, size, compression,
chunkSize), ``DiskSection/Disk`` (diskId, fileRef, capacity, capacityAllocationUnits,
format); the manifest lines ``SHA256(file)= hex`` (SHA1 in older packages).
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from typing import Any

MAX_OVF_BYTES = 16 << 20
MAX_MANIFEST_BYTES = 4 << 20
MANIFEST_LINE = re.compile(r"^(?P<algo>[A-Za-z0-9-]+)\((?P<name>.+)\)\s*=\s*(?P<digest>[0-9a-fA-F]+)$")
DIGESTS = {"SHA1": "sha1", "SHA256": "sha256", "SHA512": "sha512", "SHA-256": "sha256",
           "SHA-1": "sha1", "SHA-512": "sha512"}
UNITS = re.compile(r"^\s*byte\s*(?:\*\s*(?P<base>\d+)\s*\^\s*(?P<power>\d+))?\s*$", re.I)
NAMED_UNITS = {"bytes": 1, "kilobytes": 1 << 10, "megabytes": 1 << 20, "gigabytes": 1 << 30,
               "terabytes": 1 << 40}


class OvfError(ValueError):
    """The OVF or manifest says something azlift cannot use (the reader adds the path)."""


@dataclass(frozen=True)
class OvfFile:
    """A ``References/File``: a member of the OVA."""

    id: str
    href: str
    size: int | None
    compression: str  # "" or "gzip"
    chunk_size: int | None


@dataclass(frozen=True)
class OvfDisk:
    """A ``DiskSection/Disk``, numbered from 1 in the OVF's order."""

    number: int
    disk_id: str
    capacity: int  # bytes
    format: str  # a URI, e.g. ...vmdk.html#streamOptimized
    file: OvfFile | None

    @property
    def format_name(self) -> str:
        """The short form of the format URI ("vmdk#streamOptimized")."""
        tail = self.format.rsplit("/", 1)[-1]
        return tail.replace(".html", "") or "unknown"

    def summary(self) -> dict[str, Any]:
        return {"disk": self.number, "id": self.disk_id, "capacity": self.capacity,
                "format": self.format_name, "file": self.file.href if self.file else None,
                "compression": (self.file.compression or None) if self.file else None}

    def label(self) -> str:
        name = self.file.href if self.file else "no file"
        return f"{self.number} = {self.disk_id} ({name}, {self.capacity} bytes)"


def local(tag: str) -> str:
    """An element or attribute name without its namespace."""
    return tag.rsplit("}", 1)[-1]


def attribute(element: ElementTree.Element, name: str) -> str | None:
    for key, value in element.attrib.items():
        if local(key) == name:
            return value
    return None


def capacity_bytes(value: str, units: str | None) -> int:
    """``ovf:capacity`` in bytes, with ``capacityAllocationUnits`` ("byte * 2^30")."""
    try:
        number = int(value.strip())
    except ValueError as error:
        raise OvfError(f"disk capacity {value!r} is not a whole number") from error
    if number < 0:
        raise OvfError(f"disk capacity {value!r} is negative")
    return number * allocation_unit(units)


def allocation_unit(units: str | None) -> int:
    """Bytes per unit of ``capacityAllocationUnits`` (1 when absent)."""
    if not units:
        return 1
    named = NAMED_UNITS.get(units.strip().lower())
    if named is not None:
        return named
    match = UNITS.match(units)
    if match is None:
        raise OvfError(f"capacity unit {units!r} is unknown (expected e.g. 'byte * 2^30')")
    if match["base"] is None:
        return 1
    power = int(match["power"])
    if power > 60:
        raise OvfError(f"capacity unit {units!r} is absurd")
    return int(match["base"]) ** power


def parse_ovf(text: bytes) -> list[OvfDisk]:
    """The disks of an OVF descriptor in DiskSection order, each with its file."""
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as error:
        raise OvfError(f"the OVF descriptor is not well-formed XML ({error})") from error
    if local(root.tag) != "Envelope":
        raise OvfError(f"the OVF root element is {local(root.tag)!r}, expected 'Envelope'")
    files: dict[str, OvfFile] = {}
    for element in root.iter():
        if local(element.tag) != "File":
            continue
        file_id, href = attribute(element, "id"), attribute(element, "href")
        if not file_id or not href:
            raise OvfError("a References/File lacks ovf:id or ovf:href")
        files[file_id] = OvfFile(
            id=file_id, href=href, size=_optional_int(attribute(element, "size"), "size"),
            compression=(attribute(element, "compression") or "").lower(),
            chunk_size=_optional_int(attribute(element, "chunkSize"), "chunkSize"))
    disks: list[OvfDisk] = []
    for element in root.iter():
        if local(element.tag) != "Disk":
            continue
        disk_id = attribute(element, "diskId") or f"disk{len(disks) + 1}"
        capacity = attribute(element, "capacity")
        if capacity is None:
            raise OvfError(f"disk {disk_id} has no ovf:capacity")
        file_ref = attribute(element, "fileRef")
        units = attribute(element, "capacityAllocationUnits")
        if file_ref and file_ref not in files:
            raise OvfError(f"disk {disk_id} refers to file {file_ref!r}, which References "
                           f"does not list")
        disks.append(OvfDisk(
            number=len(disks) + 1, disk_id=disk_id,
            capacity=capacity_bytes(capacity, units),
            format=attribute(element, "format") or "", file=files.get(file_ref or "")))
    return disks


def _optional_int(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError as error:
        raise OvfError(f"ovf:{name} {value!r} is not a whole number") from error


def parse_manifest(text: bytes) -> dict[str, tuple[str, str]]:
    """``{file name: (hashlib algorithm, lower-case hex digest)}`` from a ``.mf`` file."""
    entries: dict[str, tuple[str, str]] = {}
    for number, raw in enumerate(text.decode("utf-8", errors="replace").splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        match = MANIFEST_LINE.match(line)
        if match is None:
            raise OvfError(f"manifest line {number} is not ALGO(file)= digest: {line[:80]!r}")
        algorithm = DIGESTS.get(match["algo"].upper())
        if algorithm is None:
            raise OvfError(f"manifest line {number} uses digest {match['algo']!r} "
                           f"(expected SHA1, SHA256 or SHA512)")
        entries[match["name"].strip()] = (algorithm, match["digest"].lower())
    return entries

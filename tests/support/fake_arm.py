"""A local Azure Resource Manager that answers the Compute calls azlift makes.

It speaks HTTPS (a self-signed certificate the tests trust through a CA bundle), wants a
bearer token, and behaves like ARM for: images, gallery image definitions and versions,
disks, disk ``beginGetAccess``/``endGetAccess``. Creates are long-running operations
(201 + ``Azure-AsyncOperation``, or 202 + ``Location``) with ``Retry-After``; every body
is checked against what ARM requires and refused with ARM's error shape
``{"error": {"code", "message"}}``. Each request is recorded for assertions.

Grant-access for ``Write`` creates a page blob of exactly ``uploadSizeBytes`` in Azurite
and answers with a SAS URL for it, as ARM does with its hidden upload blob.

Usage::

    from tests.support.fake_arm import fake_arm  # noqa: F401  (the fixture)

    def test_x(fake_arm):
        fake_arm.add_gallery("rg", "gal")
        env = fake_arm.env()      # AZLIFT_ARM_TOKEN, AZLIFT_ARM_CA_BUNDLE
"""
from __future__ import annotations

import datetime
import itertools
import json
import re
import ssl
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.support.tls_ca import self_signed

MIB = 1024 * 1024
MIN_UPLOAD_BYTES = 20 * MIB + 512
MAX_UPLOAD_BYTES = 32 * 1024 * 1024 * MIB + 512
TOKEN = "fake-arm-test-token"

OS_TYPES = {"Windows", "Linux"}
OS_STATES = {"Generalized", "Specialized"}
GENERATIONS = {"V1", "V2"}
DISK_SKUS = {"Standard_LRS", "Premium_LRS", "StandardSSD_LRS", "UltraSSD_LRS", "Premium_ZRS",
             "StandardSSD_ZRS", "PremiumV2_LRS"}
CREATE_OPTIONS = {"Empty", "Attach", "FromImage", "Import", "Copy", "Restore", "Upload",
                  "CopyStart", "ImportSecure", "UploadPreparedSecure", "CopyFromSanSnapshot"}
VERSION_RE = re.compile(r"^(\d{1,10})\.(\d{1,10})\.(\d{1,10})$")
INT32_MAX = 2**31 - 1

_PROVIDER = r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.Compute"
ROUTES = [
    ("image", re.compile(_PROVIDER + r"/images/(?P<name>[^/]+)$", re.I)),
    ("version", re.compile(_PROVIDER + r"/galleries/(?P<gallery>[^/]+)/images/(?P<definition>[^/]+)"
                           r"/versions/(?P<name>[^/]+)$", re.I)),
    ("definition", re.compile(_PROVIDER + r"/galleries/(?P<gallery>[^/]+)/images/(?P<name>[^/]+)$",
                              re.I)),
    ("gallery", re.compile(_PROVIDER + r"/galleries/(?P<name>[^/]+)$", re.I)),
    ("grant", re.compile(_PROVIDER + r"/disks/(?P<name>[^/]+)/beginGetAccess$", re.I)),
    ("revoke", re.compile(_PROVIDER + r"/disks/(?P<name>[^/]+)/endGetAccess$", re.I)),
    ("disk", re.compile(_PROVIDER + r"/disks/(?P<name>[^/]+)$", re.I)),
    ("operation", re.compile(r"^/subscriptions/[^/]+/providers/Microsoft\.Compute/locations/[^/]+"
                             r"/(?P<kind>operations|operationResults)/(?P<op>[^/]+)$", re.I)),
]
TYPES = {"image": "Microsoft.Compute/images", "definition": "Microsoft.Compute/galleries/images",
         "version": "Microsoft.Compute/galleries/images/versions", "disk": "Microsoft.Compute/disks",
         "gallery": "Microsoft.Compute/galleries"}


class ArmFault(Exception):
    """An ARM error answer: status, code, message."""

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


@dataclass
class Recorded:
    """One request as the fake saw it."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    at: float = field(default_factory=time.monotonic)  # when it arrived
    status: int = 0  # 429 when the fake throttled it


@dataclass
class Operation:
    """A long-running operation: polls left before it finishes, then its outcome."""

    polls_left: int
    finish: Any  # callable run once when the operation completes
    error: tuple[str, str] | None = None
    result: Any = None
    done: bool = False
    is_action: bool = False  # a POST: its result is the operation's output


@dataclass
class FakeArm:
    """State and knobs of the running fake (the server thread reads them)."""

    base_url: str = ""
    ca_bundle: str = ""
    azurite: Any = None
    requests: list[Recorded] = field(default_factory=list)
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    operations: dict[str, Operation] = field(default_factory=dict)
    polls_before_done: int = 1
    # Whole seconds, as ARM sends them; 0 lets the client's own poll interval decide
    # (AZLIFT_ARM_POLL_SECONDS in env(), a fraction of a second, keeps tests fast).
    retry_after: int = 0
    lro_style: str = "async-operation"  # or "location"
    fail_next_operation: tuple[str, str] | None = None
    read_only_sas: bool = False
    # ARM's write throttling: the next ``throttle_puts`` PUTs are answered 429
    # TooManyRequests with Retry-After ``throttle_retry_after`` (whole seconds).
    throttle_puts: int = 0
    throttle_retry_after: int = 1
    disk_blobs: dict[str, str] = field(default_factory=dict)
    # Every write SAS handed out (so tests can look for its signature where it must not be),
    # and a rewrite of the SAS URLs (e.g. through a proxy in front of Azurite).
    issued_sas: list[str] = field(default_factory=list)
    rewrite_sas_url: Any = None
    # Called with (method, path) as each request arrives, before it is answered: a test
    # can act at that instant (e.g. interrupt the client while it waits for the answer).
    on_request: Any = None
    lock: threading.RLock = field(default_factory=threading.RLock)
    _ids: Iterator[int] = field(default_factory=itertools.count)

    # ---- helpers for tests -------------------------------------------------------------
    def env(self) -> dict[str, str]:
        """Environment that points azlift's ARM client at this fake."""
        return {"AZLIFT_ARM_TOKEN": TOKEN, "AZLIFT_ARM_CA_BUNDLE": self.ca_bundle,
                "AZLIFT_ARM_POLL_SECONDS": "0.05",
                "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000001"}

    def resource_id(self, kind: str, rg: str, *names: str, sub: str | None = None) -> str:
        sub = sub or self.env()["AZURE_SUBSCRIPTION_ID"]
        tail = {"image": "images/{}", "disk": "disks/{}", "gallery": "galleries/{}",
                "definition": "galleries/{}/images/{}",
                "version": "galleries/{}/images/{}/versions/{}"}[kind].format(*names)
        return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/{tail}"

    def add_gallery(self, rg: str, name: str, location: str = "westeurope") -> None:
        rid = self.resource_id("gallery", rg, name)
        self.resources[rid.lower()] = {"id": rid, "name": name, "type": TYPES["gallery"],
                                       "location": location,
                                       "properties": {"provisioningState": "Succeeded"}}

    def get(self, resource_id: str) -> dict[str, Any] | None:
        return self.resources.get(resource_id.lower())

    def calls(self, method: str | None = None, contains: str = "") -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests
                    if (method is None or r.method == method) and contains.lower() in r.path.lower()]

    # ---- request handling ----------------------------------------------------------------
    def handle(self, method: str, raw_path: str, headers: Any, body: bytes) -> tuple[int, dict, Any]:
        parts = urlsplit(raw_path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        try:
            document = json.loads(body) if body else None
        except ValueError:
            document = body.decode(errors="replace")
        recorded = Recorded(method, parts.path, query, document)
        with self.lock:
            self.requests.append(recorded)
        if self.on_request is not None:
            self.on_request(method, parts.path)
        if headers.get("Authorization") != f"Bearer {TOKEN}":
            raise ArmFault(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' "
                           "header is missing or not a valid bearer token.")
        with self.lock:
            throttled = method == "PUT" and self.throttle_puts > 0
            if throttled:
                self.throttle_puts -= 1
        if throttled:
            recorded.status = 429
            raise ArmFault(429, "TooManyRequests", "The request is being throttled as the "
                           "limit has been reached for operation type - Write.",
                           {"Retry-After": str(self.throttle_retry_after)})
        if "api-version" not in query:
            raise ArmFault(400, "MissingApiVersionParameter",
                           "The api-version query parameter (?api-version=) is required for all "
                           "requests.")
        for kind, pattern in ROUTES:
            match = pattern.match(parts.path)
            if match:
                with self.lock:
                    return getattr(self, f"_{kind}")(method, match.groupdict(), document)
        raise ArmFault(404, "InvalidResourceType", f"The resource type could not be found: {parts.path}")

    def _new_operation(self, location: str, finish: Any, body: Any = None,
                       put_status: int = 201) -> tuple[int, dict, Any]:
        """Start an LRO: a PUT answers 201 + the resource, a POST 202 + Location.

        ``lro_style`` "async-operation" adds Azure-AsyncOperation; "location" leaves only
        Location, so both of ARM's polling protocols are exercised.
        """
        op_id = f"op-{next(self._ids)}-{uuid.uuid4().hex[:8]}"
        error, self.fail_next_operation = self.fail_next_operation, None
        self.operations[op_id] = Operation(self.polls_before_done, finish, error,
                                           is_action=body is None)
        sub = self.env()["AZURE_SUBSCRIPTION_ID"]
        base = f"{self.base_url}/subscriptions/{sub}/providers/Microsoft.Compute/locations/{location}"
        headers = {"Retry-After": str(self.retry_after)}
        if self.lro_style == "async-operation":
            headers["Azure-AsyncOperation"] = f"{base}/operations/{op_id}?api-version=2024-01-01"
        if body is None or self.lro_style == "location":
            headers["Location"] = f"{base}/operationResults/{op_id}?api-version=2024-01-01"
        return (202, headers, None) if body is None else (put_status, headers, body)

    def _operation(self, method: str, ids: dict, _body: Any) -> tuple[int, dict, Any]:
        operation = self.operations.get(ids["op"])
        if method != "GET" or operation is None:
            raise ArmFault(404, "NotFound", f"Operation {ids['op']} not found.")
        if not operation.done and operation.polls_left > 0:
            operation.polls_left -= 1
            status = {"status": "InProgress"}
            if ids["kind"].lower() == "operationresults":
                return 202, {"Retry-After": str(self.retry_after)}, None
            return 200, {"Retry-After": str(self.retry_after)}, status
        if not operation.done:
            operation.done = True
            if operation.error is None:
                operation.result = operation.finish()
            else:
                operation.finish(failed=True)
        if operation.error is not None:
            code, message = operation.error
            if ids["kind"].lower() == "operationresults":
                raise ArmFault(400, code, message)
            return 200, {}, {"status": "Failed", "error": {"code": code, "message": message}}
        if ids["kind"].lower() == "operationresults":
            return (200, {}, operation.result) if operation.result is not None else (204, {}, None)
        document = {"status": "Succeeded"}
        if operation.is_action and operation.result is not None:
            document["properties"] = {"output": operation.result}
        return 200, {}, document

    def _require_parent(self, resource_id: str, what: str) -> None:
        if resource_id.lower() not in self.resources:
            raise ArmFault(404, "ParentResourceNotFound",
                           f"Can not perform requested operation on nested resource. Parent "
                           f"resource '{what}' not found.")

    def _put_or_get(self, kind: str, method: str, rid: str, body: Any, validate: Any,
                    conflicts: tuple[str, ...], initial_state: dict | None = None) -> tuple[int, dict, Any]:
        existing = self.resources.get(rid.lower())
        if method == "GET":
            if existing is None:
                raise ArmFault(404, "ResourceNotFound", f"The Resource '{TYPES[kind]}/"
                               f"{rid.rsplit('/', 1)[-1]}' was not found.")
            return 200, {}, existing
        if method != "PUT":
            raise ArmFault(405, "MethodNotAllowed", f"{method} is not supported here.")
        if not isinstance(body, dict):
            raise ArmFault(400, "InvalidRequestContent", "The request content was invalid and "
                           "could not be deserialized.")
        if not body.get("location"):
            raise ArmFault(400, "LocationRequired", "The location property is required for this "
                           "definition.")
        validate(body)
        properties = body.get("properties") or {}
        if existing is not None:
            for key in conflicts:
                old, new = _dig(existing["properties"], key), _dig(properties, key)
                if new is not None and old != new:
                    raise ArmFault(409, "PropertyChangeNotAllowed",
                                   f"Changing property '{key}' is not allowed.")
            if existing["location"].lower() != body["location"].lower():
                raise ArmFault(409, "InvalidResourceLocation",
                               f"The resource already exists in location '{existing['location']}'.")
        resource = {"id": rid, "name": rid.rsplit("/", 1)[-1], "type": TYPES[kind],
                    "location": body["location"], **{k: v for k, v in body.items()
                                                      if k not in ("properties", "location")},
                    "properties": {**json.loads(json.dumps(properties)),
                                   "provisioningState": "Creating", **(initial_state or {})}}
        self.resources[rid.lower()] = resource

        def finish(failed: bool = False) -> dict:
            resource["properties"]["provisioningState"] = "Failed" if failed else "Succeeded"
            return resource

        # Disks answer a PUT with 202 + the resource, the others with 201 (as ARM does).
        return self._new_operation(body["location"], finish, body=resource,
                                   put_status=202 if kind == "disk" else 201)

    # ---- resource kinds --------------------------------------------------------------------
    def _gallery(self, method: str, ids: dict, body: Any) -> tuple[int, dict, Any]:
        rid = self.resource_id("gallery", ids["rg"], ids["name"], sub=ids["sub"])
        return self._put_or_get("gallery", method, rid, body, lambda b: None, ())

    def _image(self, method: str, ids: dict, body: Any) -> tuple[int, dict, Any]:
        rid = self.resource_id("image", ids["rg"], ids["name"], sub=ids["sub"])
        return self._put_or_get("image", method, rid, body, _validate_image,
                                ("storageProfile", "hyperVGeneration"))

    def _definition(self, method: str, ids: dict, body: Any) -> tuple[int, dict, Any]:
        gallery = self.resource_id("gallery", ids["rg"], ids["gallery"], sub=ids["sub"])
        self._require_parent(gallery, ids["gallery"])
        rid = self.resource_id("definition", ids["rg"], ids["gallery"], ids["name"], sub=ids["sub"])
        return self._put_or_get("definition", method, rid, body, _validate_definition,
                                ("osType", "osState", "hyperVGeneration", "identifier"))

    def _version(self, method: str, ids: dict, body: Any) -> tuple[int, dict, Any]:
        definition = self.resource_id("definition", ids["rg"], ids["gallery"], ids["definition"],
                                      sub=ids["sub"])
        self._require_parent(definition, ids["definition"])
        rid = self.resource_id("version", ids["rg"], ids["gallery"], ids["definition"], ids["name"],
                               sub=ids["sub"])
        if method == "PUT":
            _validate_version_name(ids["name"])
        return self._put_or_get("version", method, rid, body, _validate_version,
                                ("storageProfile",))

    def _disk(self, method: str, ids: dict, body: Any) -> tuple[int, dict, Any]:
        rid = self.resource_id("disk", ids["rg"], ids["name"], sub=ids["sub"])
        if method == "DELETE":
            return self._delete_disk(rid)
        if method == "PATCH":
            return self._patch_disk(ids, body)
        state = None
        if method == "PUT" and isinstance(body, dict):
            creation = (body.get("properties") or {}).get("creationData") or {}
            state = {"diskState": "ReadyToUpload" if creation.get("createOption") == "Upload"
                     else "Unattached"}
            if rid.lower() in self.resources:
                state = {"diskState": self.resources[rid.lower()]["properties"]["diskState"]}
        return self._put_or_get("disk", method, rid, body, _validate_disk,
                                ("creationData", "osType", "hyperVGeneration"), state)

    def _delete_disk(self, rid: str) -> tuple[int, dict, Any]:
        """ARM deletes a disk that is not attached nor open for upload or download (202 and
        an operation; 204 when there is no such disk)."""
        disk = self.resources.get(rid.lower())
        if disk is None:
            return 204, {}, None
        state = disk["properties"].get("diskState")
        if state in ("Attached", "Reserved", "ActiveUpload", "ActiveSAS"):
            raise ArmFault(409, "OperationNotAllowed", f"Disk '{disk['name']}' is {state}; "
                           "it cannot be deleted.")

        def finish(failed: bool = False) -> None:
            if not failed:
                self.resources.pop(rid.lower(), None)
                self.disk_blobs.pop(rid.lower(), None)

        return self._new_operation(disk["location"], finish)

    def _patch_disk(self, ids: dict, body: Any) -> tuple[int, dict, Any]:
        """An update of a disk's tags (the only update azlift makes)."""
        disk = self._disk_or_404(ids)
        if not isinstance(body, dict) or set(body) - {"tags"}:
            raise ArmFault(400, "InvalidRequestContent", "Only tags may be updated here.")
        if disk["properties"].get("diskState") in ("ActiveUpload", "ActiveSAS"):
            raise ArmFault(409, "OperationNotAllowed", f"Disk '{disk['name']}' is "
                           f"{disk['properties']['diskState']}; it cannot be updated.")
        disk["tags"] = dict(body.get("tags") or {})
        return self._new_operation(disk["location"], lambda failed=False: disk, body=disk,
                                   put_status=202)

    def _disk_or_404(self, ids: dict) -> dict:
        rid = self.resource_id("disk", ids["rg"], ids["name"], sub=ids["sub"])
        disk = self.resources.get(rid.lower())
        if disk is None:
            raise ArmFault(404, "ResourceNotFound", f"The Resource 'Microsoft.Compute/disks/"
                           f"{ids['name']}' was not found.")
        return disk

    def _grant(self, method: str, ids: dict, body: Any) -> tuple[int, dict, Any]:
        disk = self._disk_or_404(ids)
        if not isinstance(body, dict) or body.get("access") not in ("None", "Read", "Write"):
            raise ArmFault(400, "InvalidParameter", "The value of parameter access is invalid.")
        if not isinstance(body.get("durationInSeconds"), int):
            raise ArmFault(400, "InvalidParameter", "durationInSeconds is required.")
        state = disk["properties"]["diskState"]
        if body["access"] == "Write" and state not in ("ReadyToUpload", "ActiveUpload"):
            raise ArmFault(409, "OperationNotAllowed", f"Write access can only be granted to a disk "
                           f"in state ReadyToUpload; disk '{disk['name']}' is {state}.")
        new_state = "ActiveUpload" if body["access"] == "Write" else "ActiveSAS"
        disk["properties"]["diskState"] = new_state

        def finish(failed: bool = False) -> dict | None:
            return None if failed else {"accessSAS": self._sas_for(disk, body["access"])}

        return self._new_operation(disk["location"], finish)

    def _revoke(self, method: str, ids: dict, _body: Any) -> tuple[int, dict, Any]:
        disk = self._disk_or_404(ids)
        if disk["properties"]["diskState"] in ("ActiveUpload", "ActiveSAS"):
            disk["properties"]["diskState"] = "Unattached"
        return self._new_operation(disk["location"], lambda failed=False: None)

    def _sas_for(self, disk: dict, access: str) -> str:
        """A SAS URL of the disk's hidden page blob in Azurite (created on first grant)."""
        from azure.storage.blob import BlobSasPermissions, generate_blob_sas
        if self.azurite is None:
            raise ArmFault(500, "InternalServerError", "fake ARM has no Azurite attached")
        key = disk["id"].lower()
        if key not in self.disk_blobs:
            container = self.azurite.new_container()
            blob = f"{disk['name']}.vhd"
            size = disk["properties"]["creationData"].get("uploadSizeBytes") or 0
            self.azurite.service_client().get_blob_client(container, blob).create_page_blob(size)
            self.disk_blobs[key] = f"{container}/{blob}"
        container, blob = self.disk_blobs[key].split("/", 1)
        writable = access == "Write" and not self.read_only_sas
        permission = BlobSasPermissions(read=True, write=writable)
        sas = generate_blob_sas(self.azurite.account_name, container, blob,
                                account_key=self.azurite.account_key, permission=permission,
                                expiry=datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1))
        url = f"{self.azurite.blob_url(container, blob)}?{sas}"
        if self.rewrite_sas_url is not None:
            url = self.rewrite_sas_url(url)
        self.issued_sas.append(url)
        return url

    def disk_blob_bytes(self, resource_id: str) -> bytes:
        """Everything written to the disk's hidden blob."""
        container, blob = self.disk_blobs[resource_id.lower()].split("/", 1)
        client = self.azurite.service_client().get_blob_client(container, blob)
        return client.download_blob().readall()


def _dig(document: dict, key: str) -> Any:
    return document.get(key) if isinstance(document, dict) else None


def _require_enum(value: Any, allowed: set[str], name: str, required: bool = True) -> None:
    if value is None and not required:
        return
    if value is None:
        raise ArmFault(400, "InvalidParameter", f"Required parameter '{name}' is missing (null).")
    if value not in allowed:
        raise ArmFault(400, "InvalidParameter", f"The value '{value}' of parameter '{name}' is "
                       f"not allowed. Allowed values are {', '.join(sorted(allowed))}.")


def _check_luns(disks: list[dict], name: str) -> None:
    seen: set[int] = set()
    for disk in disks:
        lun = disk.get("lun")
        if not isinstance(lun, int) or not 0 <= lun <= 63:
            raise ArmFault(400, "InvalidParameter", f"The value '{lun}' of parameter '{name}.lun' "
                           "is invalid: expected an integer from 0 to 63.")
        if lun in seen:
            raise ArmFault(400, "InvalidParameter", f"Data disk LUN {lun} is used more than once "
                           f"in '{name}'.")
        seen.add(lun)


def _validate_image(body: dict) -> None:
    properties = body.get("properties") or {}
    _require_enum(properties.get("hyperVGeneration"), GENERATIONS, "hyperVGeneration", False)
    profile = properties.get("storageProfile") or {}
    os_disk = profile.get("osDisk")
    if not os_disk:
        raise ArmFault(400, "InvalidParameter", "Required parameter 'storageProfile.osDisk' is "
                       "missing (null).")
    _require_enum(os_disk.get("osType"), OS_TYPES, "osDisk.osType")
    _require_enum(os_disk.get("osState"), OS_STATES, "osDisk.osState")
    if not (os_disk.get("blobUri") or os_disk.get("managedDisk") or os_disk.get("snapshot")):
        raise ArmFault(400, "InvalidParameter", "One of 'osDisk.blobUri', 'osDisk.managedDisk' or "
                       "'osDisk.snapshot' is required.")
    data_disks = profile.get("dataDisks") or []
    _check_luns(data_disks, "dataDisks")
    for disk in data_disks:
        if not (disk.get("blobUri") or disk.get("managedDisk") or disk.get("snapshot")):
            raise ArmFault(400, "InvalidParameter", f"Data disk at LUN {disk['lun']} needs one of "
                           "'blobUri', 'managedDisk' or 'snapshot'.")


def _validate_definition(body: dict) -> None:
    properties = body.get("properties") or {}
    _require_enum(properties.get("osType"), OS_TYPES, "osType")
    _require_enum(properties.get("osState"), OS_STATES, "osState")
    _require_enum(properties.get("hyperVGeneration"), GENERATIONS, "hyperVGeneration", False)
    identifier = properties.get("identifier") or {}
    for part in ("publisher", "offer", "sku"):
        if not identifier.get(part):
            raise ArmFault(400, "InvalidParameter", f"Required parameter 'identifier.{part}' is "
                           "missing (null).")


def _validate_version_name(name: str) -> None:
    match = VERSION_RE.match(name)
    if not match or any(int(part) > INT32_MAX for part in match.groups()):
        raise ArmFault(400, "InvalidParameter", f"The gallery image version name '{name}' is "
                       "invalid. It must follow the Major(int32).Minor(int32).Patch(int32) format.")


def _validate_version(body: dict) -> None:
    properties = body.get("properties") or {}
    profile = properties.get("storageProfile") or {}
    os_image = profile.get("osDiskImage") or {}
    source = os_image.get("source") or {}
    if not profile.get("source") and not source.get("uri"):
        raise ArmFault(400, "InvalidParameter", "Required parameter 'osDiskImage.source.uri' is "
                       "missing (null).")
    if source.get("uri") and not source.get("storageAccountId"):
        raise ArmFault(400, "InvalidParameter", "'osDiskImage.source.storageAccountId' is required "
                       "when the source is a VHD uri.")
    data_images = profile.get("dataDiskImages") or []
    _check_luns(data_images, "dataDiskImages")
    for disk in data_images:
        disk_source = disk.get("source") or {}
        if not (disk_source.get("uri") and disk_source.get("storageAccountId")):
            raise ArmFault(400, "InvalidParameter", f"Data disk image at LUN {disk['lun']} needs "
                           "source.uri and source.storageAccountId.")
    regions = (properties.get("publishingProfile") or {}).get("targetRegions")
    if regions:
        for region in regions:
            count = region.get("regionalReplicaCount", 1)
            if not region.get("name") or not isinstance(count, int) or not 1 <= count <= 100:
                raise ArmFault(400, "InvalidParameter", f"Invalid target region {region!r}.")
        names = {region["name"].replace(" ", "").lower() for region in regions}
        if body["location"].replace(" ", "").lower() not in names:
            raise ArmFault(400, "InvalidParameter", "The source region "
                           f"'{body['location']}' must be one of the target regions.")


def _validate_disk(body: dict) -> None:
    properties = body.get("properties") or {}
    _require_enum((body.get("sku") or {}).get("name"), DISK_SKUS, "sku.name", False)
    _require_enum(properties.get("osType"), OS_TYPES, "osType", False)
    _require_enum(properties.get("hyperVGeneration"), GENERATIONS, "hyperVGeneration", False)
    creation = properties.get("creationData") or {}
    _require_enum(creation.get("createOption"), CREATE_OPTIONS, "creationData.createOption")
    if creation["createOption"] == "Upload":
        size = creation.get("uploadSizeBytes")
        if not isinstance(size, int):
            raise ArmFault(400, "InvalidParameter", "Required parameter 'uploadSizeBytes' is "
                           "missing (null).")
        if (size - 512) % MIB or not MIN_UPLOAD_BYTES <= size <= MAX_UPLOAD_BYTES:
            raise ArmFault(400, "InvalidParameter", f"The specified uploadSizeBytes {size} is "
                           "invalid: it must be a whole number of MiB plus 512 bytes, from "
                           f"{MIN_UPLOAD_BYTES} to {MAX_UPLOAD_BYTES}.")
    if creation["createOption"] == "Import":
        if not creation.get("sourceUri") or not creation.get("storageAccountId"):
            raise ArmFault(400, "InvalidParameter", "Import needs 'creationData.sourceUri' and "
                           "'creationData.storageAccountId'.")


class _Handler(BaseHTTPRequestHandler):
    server_version = "FakeARM/1.0"
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def _serve(self) -> None:
        fake: FakeArm = self.server.fake  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            status, headers, document = fake.handle(self.command, self.path, self.headers, body)
        except ArmFault as fault:
            status, headers = fault.status, fault.headers
            document = {"error": {"code": fault.code, "message": fault.message}}
        payload = b"" if document is None else json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-ms-request-id", str(uuid.uuid4()))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _serve


@pytest.fixture(scope="session")
def fake_arm_server() -> Iterator[tuple[str, str, Any]]:
    """The HTTPS server for the whole session: (base_url, ca_bundle, server)."""
    pytest.importorskip("cryptography")
    directory = Path(tempfile.mkdtemp(prefix="fake-arm-"))
    cert, key = self_signed(directory)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, name="fake-arm", daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", str(cert), server
    finally:
        server.shutdown()
        server.server_close()
        for path in directory.iterdir():
            path.unlink()
        directory.rmdir()


@pytest.fixture
def fake_arm(fake_arm_server: tuple[str, str, Any], monkeypatch: pytest.MonkeyPatch) -> FakeArm:
    """A fresh fake ARM state per test, with azlift's environment pointed at it."""
    base_url, ca_bundle, server = fake_arm_server
    fake = FakeArm(base_url=base_url, ca_bundle=ca_bundle)
    server.fake = fake
    for name, value in fake.env().items():
        monkeypatch.setenv(name, value)
    return fake


def upload_vhd_blob(azurite: Any, raw_path: str | Path, *, blob_type: str = "page",
                    truncate_by: int = 0) -> str:
    """Convert a raw disk to a fixed VHD with qemu-img and put it in Azurite.

    Returns the blob URL with a read SAS. ``blob_type`` "block" or ``truncate_by`` > 0
    make blobs the checks must refuse. Only non-zero 4 MiB pieces are sent.
    """
    import subprocess

    from azure.storage.blob import BlobSasPermissions, generate_blob_sas

    from .tools import require_executable

    qemu_img = require_executable("qemu-img")
    vhd_path = Path(raw_path).with_suffix(".vhd")
    subprocess.run([qemu_img, "convert", "-f", "raw", "-O", "vpc", "-o",
                    "subformat=fixed,force_size=on", str(raw_path), str(vhd_path)], check=True)
    data = vhd_path.read_bytes()[:len(vhd_path.read_bytes()) - truncate_by]
    container = azurite.new_container()
    blob_name = vhd_path.name
    client = azurite.service_client().get_blob_client(container, blob_name)
    if blob_type == "block":
        client.upload_blob(data)
    else:
        length = -(-len(data) // 512) * 512
        client.create_page_blob(length)
        step = 4 * MIB
        for offset in range(0, len(data), step):
            piece = data[offset:offset + step]
            if piece.strip(b"\0"):
                piece = piece.ljust(-(-len(piece) // 512) * 512, b"\0")
                client.upload_page(piece, offset=offset, length=len(piece))
    sas = generate_blob_sas(azurite.account_name, container, blob_name,
                            account_key=azurite.account_key,
                            permission=BlobSasPermissions(read=True),
                            expiry=datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1))
    return f"{azurite.blob_url(container, blob_name)}?{sas}"

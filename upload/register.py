"""Turn uploaded VHD blobs into a managed image, a gallery image version or a managed disk.

Request bodies are azure-mgmt-compute models, so they are exactly what the SDK sends;
everything ARM would refuse for a malformed request is checked here first. Execution runs
the SDK's long-running operations and reports their status through a callback.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from azure.mgmt.compute import models

from .arm import arm_errors, read_or_none
from .auth import url_without_query
from .errors import HintConflictError, UsageError

OS_TYPES = {"linux": "Linux", "windows": "Windows"}
GENERATIONS = ("V1", "V2")
DISK_SKUS = tuple(sku.value for sku in models.DiskStorageAccountTypes)
MAX_LUN = 63
VERSION_PATTERN = re.compile(r"^(0|[1-9]\d{0,9})\.(0|[1-9]\d{0,9})\.(0|[1-9]\d{0,9})$")
INT32_MAX = 2**31 - 1
MAX_REPLICAS = 100
POLL_SECONDS = 1.0

StatusCallback = Callable[[str, str], None]  # (what, provisioning state)


@dataclass(frozen=True)
class DataDiskSpec:
    """A data disk for an image: its LUN and the blob holding it."""

    lun: int
    url: str


@dataclass(frozen=True)
class TargetRegionSpec:
    """A gallery replication target: region name and replica count."""

    name: str
    replicas: int = 1


@dataclass(frozen=True)
class Outcome:
    """What ARM answered: the resource id and its provisioning state."""

    kind: str
    id: str
    name: str
    provisioning_state: str

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "name": self.name,
                "provisioningState": self.provisioning_state}


# ---- parsing and validation (pure) ---------------------------------------------------------

def parse_data_disk(text: str) -> DataDiskSpec:
    """``LUN=URL`` → DataDiskSpec (LUN 0..63)."""
    lun_text, sep, url = text.partition("=")
    if not sep or not lun_text.strip().isdigit() or not url.strip():
        raise UsageError(f"--data-disk expects LUN=URL (e.g. 0=https://…/data0.vhd), found {text!r}")
    lun = int(lun_text)
    if lun > MAX_LUN:
        raise UsageError(f"--data-disk LUN must be 0..{MAX_LUN}, found {lun}")
    return DataDiskSpec(lun=lun, url=url.strip())


def parse_target_region(text: str) -> TargetRegionSpec:
    """``REGION`` or ``REGION=REPLICAS`` → TargetRegionSpec."""
    name, sep, count = text.partition("=")
    name = name.strip()
    if not name or (sep and not count.strip().isdigit()):
        raise UsageError(f"--target-region expects REGION or REGION=REPLICAS, found {text!r}")
    replicas = int(count) if sep else 1
    if not 1 <= replicas <= MAX_REPLICAS:
        raise UsageError(f"--target-region replicas must be 1..{MAX_REPLICAS}, found {replicas}")
    return TargetRegionSpec(name=name, replicas=replicas)


def check_unique_luns(disks: Sequence[DataDiskSpec]) -> None:
    """Each LUN once: ARM refuses a repeated LUN, so say which one before asking."""
    seen: set[int] = set()
    for disk in disks:
        if disk.lun in seen:
            raise UsageError(f"--data-disk LUN {disk.lun} is given more than once; each LUN "
                             "must be unique")
        seen.add(disk.lun)


def check_version_name(version: str) -> None:
    """Gallery versions are MAJOR.MINOR.PATCH, each a 32-bit integer."""
    match = VERSION_PATTERN.match(version)
    if not match or any(int(part) > INT32_MAX for part in match.groups()):
        raise UsageError(f"--version expects MAJOR.MINOR.PATCH (e.g. 1.0.0), found {version!r}")


def normalize_os_type(value: str | None) -> str | None:
    """``linux``/``windows`` in any case → ARM's ``Linux``/``Windows``."""
    if value is None:
        return None
    try:
        return OS_TYPES[value.lower()]
    except KeyError:
        raise UsageError(f"--os-type expects linux or windows, found {value!r}") from None


def normalize_generation(value: str | None) -> str | None:
    """``v1``/``V2`` → ARM's ``V1``/``V2``."""
    if value is None:
        return None
    if value.upper() not in GENERATIONS:
        raise UsageError(f"--hyper-v-generation expects V1 or V2, found {value!r}")
    return value.upper()


def normalize_sku(value: str | None) -> str | None:
    """A disk SKU ARM knows, matched case-insensitively."""
    if value is None:
        return None
    for sku in DISK_SKUS:
        if sku.lower() == value.lower():
            return sku
    raise UsageError(f"--sku expects one of {', '.join(DISK_SKUS)}, found {value!r}")


@dataclass(frozen=True)
class Reconciled:
    """OS type and generation to use, with a note for each value taken from the disk."""

    os_type: str | None
    generation: str | None
    notes: tuple[str, ...] = ()
    overridden: tuple[str, ...] = ()


FORCE_ADVICE = "use --force to register anyway"


def reconcile_with_hints(os_type: str | None, generation: str | None, layout: Any,
                         *, force: bool = False, fill_defaults: bool = True,
                         advice: str = FORCE_ADVICE) -> Reconciled:
    """Check the user's OS type/generation against the disk's hints; default from them.

    ``layout`` is a ``vhd.partitions.DiskLayout`` (``os_type_hint``, ``generation_hint``,
    ``reasons``) or None when the disk could not be analysed. A contradiction raises
    HintConflictError (ending in ``advice``, the way out the caller offers) unless ``force``;
    then it is reported in ``overridden``. With ``fill_defaults`` False (a disk that may be a
    data disk) nothing is filled in.
    """
    os_hint = OS_TYPES.get((getattr(layout, "os_type_hint", None) or "").lower())
    generation_hint = normalize_generation(getattr(layout, "generation_hint", None))
    reasons = "; ".join(getattr(layout, "reasons", None) or ()) or "its partition table"
    notes: list[str] = []
    overridden: list[str] = []
    conflicts = []
    if os_type and os_hint and os_type != os_hint:
        conflicts.append(f"--os-type {os_type.lower()} given, but the disk looks like "
                         f"{os_hint} ({reasons})")
    if generation and generation_hint and generation != generation_hint:
        conflicts.append(f"--hyper-v-generation {generation} given, but the disk boots only as "
                         f"{generation_hint} ({reasons}); a VM from it would not start")
    if conflicts and not force:
        raise HintConflictError(" and ".join(conflicts) + f" ({advice})")
    overridden.extend(conflicts)
    if not fill_defaults:
        return Reconciled(os_type, generation, (), tuple(overridden))
    if os_type is None and os_hint:
        os_type = os_hint
        notes.append(f"OS type {os_hint} taken from the disk ({reasons})")
    if generation is None and generation_hint:
        generation = generation_hint
        notes.append(f"Hyper-V generation {generation_hint} taken from the disk ({reasons})")
    return Reconciled(os_type, generation, tuple(notes), tuple(overridden))


def _plain(value: Any) -> str | None:
    """An SDK enum member or a string, as ARM's string."""
    return None if value is None else str(getattr(value, "value", value))


def check_definition_matches(definition: Any, decided: Reconciled, *, force: bool = False,
                             specialized: bool | None = None,
                             on_override: Callable[[str], None] | None = None) -> None:
    """An existing image definition must agree with the disk's OS type, generation and state.

    ``specialized`` None leaves the OS state unchecked.
    """
    problems = []
    existing_state = _plain(getattr(definition, "os_state", None))
    wanted_state = None if specialized is None else ("Specialized" if specialized
                                                     else "Generalized")
    if wanted_state and existing_state and existing_state != wanted_state:
        problems.append(f"image definition holds {existing_state} images, the disk is "
                        f"{wanted_state} ({'--specialized given' if specialized else 'no --specialized'})")
    existing_os = _plain(getattr(definition, "os_type", None))
    existing_generation = _plain(getattr(definition, "hyper_v_generation", None)) or "V1"
    if decided.os_type and existing_os and existing_os != decided.os_type:
        problems.append(f"image definition is for {existing_os}, the disk is {decided.os_type}")
    if decided.generation and existing_generation != decided.generation:
        problems.append(f"image definition is Hyper-V generation {existing_generation}, the "
                        f"disk boots as {decided.generation}")
    if problems and not force:
        raise HintConflictError("; ".join(problems) + " (use --force to add the version anyway)")
    for problem in problems:
        (on_override or (lambda message: None))(f"{problem} — going ahead because of --force")


# ---- request bodies (SDK models) ------------------------------------------------------------

def is_disk_id(reference: str) -> bool:
    """A managed disk's resource id (not a blob URL)."""
    return reference.startswith("/subscriptions/") and "/disks/" in reference.lower()


def _image_source(reference: str) -> dict[str, Any]:
    """An image disk's source: a managed disk by resource id, else a VHD blob by URL."""
    if is_disk_id(reference):
        return {"managed_disk": models.SubResource(id=reference)}
    return {"blob_uri": url_without_query(reference)}


def image_model(*, location: str, os_blob: str, os_type: str, specialized: bool = False,
                generation: str | None = None, data_disks: Sequence[DataDiskSpec] = (),
                zone_resilient: bool = False) -> models.Image:
    """A managed image: one OS disk (an OS image) or with data disks (a VM image). Each
    disk is a VHD blob URL or a managed disk's resource id."""
    check_unique_luns(data_disks)
    profile = models.ImageStorageProfile(
        os_disk=models.ImageOSDisk(
            os_type=os_type, os_state="Specialized" if specialized else "Generalized",
            **_image_source(os_blob)),
        data_disks=[models.ImageDataDisk(lun=disk.lun, **_image_source(disk.url))
                    for disk in data_disks] or None,
        zone_resilient=True if zone_resilient else None,
    )
    return models.Image(location=location, storage_profile=profile, hyper_v_generation=generation)


def gallery_definition_model(*, location: str, os_type: str, specialized: bool,
                             generation: str | None, publisher: str, offer: str,
                             sku: str) -> models.GalleryImage:
    """An image definition (the gallery's description of what its versions hold)."""
    return models.GalleryImage(
        location=location, os_type=os_type,
        os_state="Specialized" if specialized else "Generalized",
        hyper_v_generation=generation,
        identifier=models.GalleryImageIdentifier(publisher=publisher, offer=offer, sku=sku),
    )


def with_source_region(location: str, regions: Sequence[TargetRegionSpec]) -> list[TargetRegionSpec]:
    """Target regions including the source region (ARM requires it when any are given)."""
    regions = list(regions)
    names = [region.name.replace(" ", "").lower() for region in regions]
    if len(set(names)) != len(names):
        raise UsageError("--target-region names a region more than once")
    if regions and location.replace(" ", "").lower() not in names:
        regions.insert(0, TargetRegionSpec(name=location, replicas=1))
    return regions


def gallery_version_model(*, location: str, os_blob: str, storage_account_id: str,
                          data_disks: Sequence[DataDiskSpec] = (),
                          target_regions: Sequence[TargetRegionSpec] = ()) -> models.GalleryImageVersion:
    """A gallery image version made from VHD blobs of one storage account."""
    check_unique_luns(data_disks)
    publishing = None
    if target_regions:
        publishing = models.GalleryImageVersionPublishingProfile(target_regions=[
            models.TargetRegion(name=region.name, regional_replica_count=region.replicas)
            for region in target_regions])
    profile = models.GalleryImageVersionStorageProfile(
        os_disk_image=models.GalleryOSDiskImage(source=models.GalleryDiskImageSource(
            uri=url_without_query(os_blob), storage_account_id=storage_account_id)),
        data_disk_images=[models.GalleryDataDiskImage(lun=disk.lun, source=models.GalleryDiskImageSource(
            uri=url_without_query(disk.url), storage_account_id=storage_account_id))
            for disk in data_disks] or None,
    )
    return models.GalleryImageVersion(location=location, publishing_profile=publishing,
                                      storage_profile=profile)


def disk_sku(sku: str | None) -> models.DiskSku | None:
    return models.DiskSku(name=sku) if sku else None


def import_disk_model(*, location: str, blob: str, storage_account_id: str, sku: str | None = None,
                      os_type: str | None = None, generation: str | None = None) -> models.Disk:
    """A managed disk imported from a VHD blob."""
    return models.Disk(
        location=location, sku=disk_sku(sku), os_type=os_type, hyper_v_generation=generation,
        creation_data=models.CreationData(create_option="Import",
                                          source_uri=url_without_query(blob),
                                          storage_account_id=storage_account_id),
    )


# ---- execution ------------------------------------------------------------------------------

def _state_of(resource: Any) -> str:
    state = getattr(resource, "provisioning_state", None)
    if state is None and isinstance(resource, dict):
        state = (resource.get("properties") or {}).get("provisioningState")
    return state or "Unknown"


class Registrar:
    """Runs create requests with the SDK, waiting (or not) for the long-running operation."""

    def __init__(self, client: Any, *, wait: bool = True, wait_for_parents: bool = True,
                 on_status: StatusCallback | None = None, poll_seconds: float = POLL_SECONDS) -> None:
        self.client = client
        self.wait = wait
        # A resource others are created in (an image definition) is waited for even with
        # wait=False: ARM refuses a child while its parent is still being created.
        self.wait_for_parents = wait_for_parents
        self.on_status = on_status or (lambda what, state: None)
        self.poll_seconds = poll_seconds

    def run(self, kind: str, what: str, begin: Callable[..., Any], *,
            parent: bool = False) -> Outcome:
        """Start ``begin(polling=...)`` and follow it to the end unless not waiting."""
        wait = self.wait or (parent and self.wait_for_parents)
        try:
            with arm_errors(f"creating {what}"):
                poller = begin(polling=wait)
                self.on_status(what, "Started")
                while wait and not poller.done():
                    self.on_status(what, poller.status())
                    poller.wait(self.poll_seconds)
                resource = poller.result()
        except BaseException:
            self.on_status(what, "Failed")  # ends a spinner line before the error is shown
            raise
        state = _state_of(resource)
        self.on_status(what, state)
        return Outcome(kind=kind, id=getattr(resource, "id", None) or "", name=what,
                       provisioning_state=state)

    def create_image(self, resource_group: str, name: str, image: models.Image) -> Outcome:
        return self.run("image", name, lambda polling: self.client.images.begin_create_or_update(
            resource_group, name, image, polling=polling))

    def get_definition(self, resource_group: str, gallery: str, definition: str) -> Any:
        """The image definition, or None when the gallery has none of that name."""
        return read_or_none(f"reading image definition {definition}",
                            lambda: self.client.gallery_images.get(resource_group, gallery,
                                                                   definition))

    def create_definition(self, resource_group: str, gallery: str, name: str,
                          definition: models.GalleryImage) -> Outcome:
        return self.run("gallery-image-definition", name,
                        lambda polling: self.client.gallery_images.begin_create_or_update(
                            resource_group, gallery, name, definition, polling=polling),
                        parent=True)

    def create_gallery_version(self, resource_group: str, gallery: str, definition: str,
                               version: str, model: models.GalleryImageVersion) -> Outcome:
        return self.run("gallery-image-version", f"{definition}/{version}",
                        lambda polling: self.client.gallery_image_versions.begin_create_or_update(
                            resource_group, gallery, definition, version, model, polling=polling))

    def create_disk(self, resource_group: str, name: str, disk: models.Disk) -> Outcome:
        return self.run("disk", name, lambda polling: self.client.disks.begin_create_or_update(
            resource_group, name, disk, polling=polling))

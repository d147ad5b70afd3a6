"""The validated manifest as the run sees it: settings, disks, VMs, sources, limits.

manifest.py builds these from TOML; the runner, tasks and report only read them.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

from .prep_spec import DEFAULT_PREP_GUESTS, PrepSpec

MANAGED_DISK = "managed-disk"  # destination: straight into managed disks, no storage account
# In-flight Put Page requests per storage account, cluster-wide. At ~100 ms per 4 MiB put
# 128 requests are ~1,300 req/s (under 10 % of a standard account's 20,000 req/s target)
# and ~5 GiB/s, above the 25-60 Gbps ingress targets: the cap guards the request rate
# without becoming the bottleneck.
DEFAULT_ACCOUNT_REQUESTS = 128
DEFAULT_ARM_WRITES = 8  # ARM refills 10 writes/s per principal; stay under it


@dataclass(frozen=True)
class Settings:
    """Per-VM settings: ``[defaults]`` overridden by the VM's own keys."""

    destination: str | None = None  # container URL, a container name with emulator, or
    #                                 "managed-disk"
    emulator: bool = False
    auth_mode: str = "key"  # key (from the worker's environment) | login
    threads: int = 8
    register: str = "none"
    overwrite: bool = False  # replace a blob that another source started
    verify: str = "pages"  # pages (type, length, footer, page ranges) | full (+ every byte)
    resource_group: str | None = None
    location: str | None = None
    subscription: str | None = None
    cloud: str = "AzureCloud"
    arm_endpoint: str | None = None
    os_type: str | None = None
    hyper_v_generation: str | None = None
    specialized: bool = False
    zone_resilient: bool = False
    image_name: str | None = None
    gallery: str | None = None
    gallery_image: str | None = None
    gallery_version: str | None = None
    storage_account_id: str | None = None
    publisher: str | None = None
    offer: str | None = None
    sku: str | None = None
    disk_sku: str | None = None
    target_regions: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()

    @property
    def managed_disk(self) -> bool:
        """Disks go straight into managed disks (create, grant, upload, revoke)."""
        return self.destination == MANAGED_DISK


SETTING_NAMES = tuple(f.name for f in fields(Settings))


@dataclass(frozen=True)
class DiskSpec:
    """One disk of a VM: where it is read and which blob it becomes."""

    path: str
    role: str  # "os" | "data"
    lun: int | None
    blob: str
    format: str | None = None
    disk_name: str | None = None  # the managed disk's name, with destination = "managed-disk"

    @property
    def label(self) -> str:
        """``os`` or ``lunN``: the disk's name inside its VM."""
        return "os" if self.role == "os" else f"lun{self.lun}"


@dataclass(frozen=True)
class VmSpec:
    """One VM: a stable id, the source its disks are read from, its disks and settings."""

    id: str
    source: str
    disks: tuple[DiskSpec, ...]
    settings: Settings
    prep: PrepSpec | None = None  # generalize the guest first ([vm.prep])
    reach: str | None = None  # the workers that reach the guest (None: the coordinator)

    def target_url(self, disk: DiskSpec) -> str:
        """The blob URL (no query) or, with the emulator, CONTAINER/BLOB; for a managed
        disk ``disk:RESOURCE_GROUP/NAME`` (its subscription is the workers')."""
        if self.settings.managed_disk:
            return f"disk:{self.settings.resource_group}/{self.disk_name(disk)}"
        destination = (self.settings.destination or "").rstrip("/")
        return f"{destination}/{disk.blob}"

    def target_key(self, disk: DiskSpec) -> str:
        """``target_url`` as Azure tells targets apart: a resource group or managed disk
        name, a scheme, host or container name whatever its case (only blob names are
        case-sensitive), and no slash at either end of a destination."""
        target = self.target_url(disk)
        if self.settings.managed_disk:
            return target.lower()
        scheme, separator, rest = target.partition("://")
        if not separator:
            scheme, rest = "", target
        parts = rest.strip("/").split("/")
        named = 2 if scheme else 1  # host and container, or the emulator's container
        parts[:named] = [part.lower() for part in parts[:named]]
        return f"{scheme.lower()}://" * bool(scheme) + "/".join(parts)

    def disk_name(self, disk: DiskSpec) -> str:
        """The managed disk's name: ``disk_name``, else ``<vm id>-<os|lunN>``."""
        return disk.disk_name or f"{self.id}-{disk.label}"


@dataclass(frozen=True)
class SourceSpec:
    """A place disks are read from; workers serve it with ``--source NAME``."""

    name: str
    max_disks: int = 2

    @property
    def resource(self) -> str:
        """The Dask worker resource that stands for this source."""
        return f"src-{self.name}"


@dataclass(frozen=True)
class Limits:
    """Run-wide caps that protect Azure's shared limits."""

    account_requests: int = DEFAULT_ACCOUNT_REQUESTS
    arm_writes: int = DEFAULT_ARM_WRITES
    prep_guests: int = DEFAULT_PREP_GUESTS


@dataclass(frozen=True)
class Manifest:
    """A validated manifest."""

    path: str
    digest: str
    sources: tuple[SourceSpec, ...]
    vms: tuple[VmSpec, ...]
    limits: Limits = field(default_factory=Limits)

    def source(self, name: str) -> SourceSpec:
        return next(source for source in self.sources if source.name == name)

    def vm(self, vm_id: str) -> VmSpec:
        return next(vm for vm in self.vms if vm.id == vm_id)

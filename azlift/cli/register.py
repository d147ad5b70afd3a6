"""`azlift register`: make a managed image, a gallery image version or a managed disk.

Commands only parse options, call ``upload.register`` / ``upload.blob_source`` and render.
"""
from __future__ import annotations

import itertools
import json
import sys
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer

from upload import register as reg
from upload.arm import ArmTarget, RecordingTransport, compute_client
from upload.blob_source import BlobFacts, inspect_blob
from upload.errors import UsageError

from .common import ForceOption, JsonOption, QuietOption, emit_json, say, warn

app = typer.Typer(help="Register uploaded VHDs as a managed image, gallery image version or "
                       "managed disk.", no_args_is_help=True)

ResourceGroupOption = Annotated[str, typer.Option("--resource-group", "-g", help="Resource group.")]
LocationOption = Annotated[str, typer.Option("--location", "-l", help="Azure region, e.g. westeurope.")]
SubscriptionOption = Annotated[str | None, typer.Option(
    "--subscription", help="Subscription id (default: AZURE_SUBSCRIPTION_ID).")]
CloudOption = Annotated[str, typer.Option(
    "--cloud", help="AzureCloud, AzureChinaCloud or AzureUSGovernment.")]
ArmEndpointOption = Annotated[str | None, typer.Option(
    "--arm-endpoint", help="ARM endpoint URL (Azure Stack Hub); overrides --cloud.")]
DryRunOption = Annotated[bool, typer.Option(
    "--dry-run", help="Check the blobs and print the ARM requests; send nothing to ARM.")]
NoWaitOption = Annotated[bool, typer.Option(
    "--no-wait", help="Return once ARM accepted the request; do not wait for the result.")]
OsTypeOption = Annotated[str | None, typer.Option(
    "--os-type", help="linux or windows (default: what the disk shows).")]
GenerationOption = Annotated[str | None, typer.Option(
    "--hyper-v-generation", help="V1 or V2 (default: what the disk's partition table shows).")]
DataDiskOption = Annotated[list[str] | None, typer.Option(
    "--data-disk", help="LUN=URL of a data disk blob; repeat for each disk.")]
StorageAccountOption = Annotated[str, typer.Option(
    "--storage-account-id", help="Resource id of the storage account holding the blobs.")]
SpecializedOption = Annotated[bool, typer.Option(
    "--specialized", help="The disk is one VM's copy (not generalized).")]

SPINNER = "|/-\\"


class StatusLine:
    """Shows a long-running operation's state on stderr: a spinner on a terminal, else lines."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self._frames = itertools.cycle(SPINNER)
        self._last: tuple[str, str] | None = None

    def __call__(self, what: str, state: str) -> None:
        if self.quiet:
            return
        if self.tty:
            sys.stderr.write(f"\r{next(self._frames)} {what}: {state}\033[K")
            if state in ("Succeeded", "Failed", "Canceled"):
                sys.stderr.write("\n")
            sys.stderr.flush()
        elif self._last != (what, state):
            say(f"{what}: {state}")
        self._last = (what, state)


@dataclass
class ArmSession:
    """The SDK client for one command, recording instead of sending on a dry run."""

    client: Any
    recorder: RecordingTransport | None
    registrar: reg.Registrar
    notes: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, *, subscription: str | None, cloud: str, arm_endpoint: str | None,
             dry_run: bool, no_wait: bool, quiet: bool) -> "ArmSession":
        target = ArmTarget.resolve(subscription, cloud, arm_endpoint)
        recorder = RecordingTransport() if dry_run else None
        client = compute_client(target, recorder=recorder)
        registrar = reg.Registrar(client, wait=not (no_wait or dry_run),
                                  on_status=StatusLine(quiet or dry_run))
        return cls(client=client, recorder=recorder, registrar=registrar)

    def note(self, message: str) -> None:
        self.notes.append(message)
        say(f"azlift: {message}")

    def finish(self, outcomes: list[reg.Outcome], json_output: bool) -> None:
        """Print the requests (dry run) or the created resources."""
        if self.recorder is not None:
            requests = [request.as_dict() for request in self.recorder.requests]
            if json_output:
                emit_json({"requests": requests})
            else:
                for request in requests:
                    say(f"{request['method']} {request['url']}", err=False)
                    if request["body"] is not None:
                        say(json.dumps(request["body"], indent=2), err=False)
                say("dry run: nothing was sent to ARM")
            return
        if json_output:
            emit_json({"ok": True, "resources": [o.as_dict() for o in outcomes],
                       "notes": self.notes})
            return
        for outcome in outcomes:
            say(f"{outcome.kind} {outcome.id or outcome.name}: {outcome.provisioning_state}",
                err=False)


def check_blobs(os_blob: str, data_disks: list[reg.DataDiskSpec]) -> BlobFacts:
    """Check every blob is an Azure-ready fixed VHD page blob; return the OS disk's facts."""
    facts = inspect_blob(os_blob)
    for disk in data_disks:
        inspect_blob(disk.url)
    return facts


def reconcile(session: ArmSession, facts: BlobFacts, os_type: str | None,
              generation: str | None, force: bool, *, fill_defaults: bool = True) -> reg.Reconciled:
    """User's OS type/generation against the disk's hints, with notes on what was decided."""
    decided = reg.reconcile_with_hints(reg.normalize_os_type(os_type),
                                       reg.normalize_generation(generation), facts.layout,
                                       force=force, fill_defaults=fill_defaults)
    for conflict in decided.overridden:
        warn(f"{conflict} — going ahead because of --force")
    for note in decided.notes:
        session.note(note)
    return decided


def require(value: str | None, what: str) -> str:
    if not value:
        raise UsageError(f"cannot tell the {what} from the disk; pass it explicitly")
    return value


@app.command("image")
def image(
    name: Annotated[str, typer.Argument(help="Name of the managed image.")],
    resource_group: ResourceGroupOption,
    location: LocationOption,
    os_blob: Annotated[str, typer.Option("--os-blob", help="URL of the OS disk's VHD page blob.")],
    os_type: OsTypeOption = None,
    specialized: SpecializedOption = False,
    hyper_v_generation: GenerationOption = None,
    data_disk: DataDiskOption = None,
    zone_resilient: Annotated[bool, typer.Option("--zone-resilient",
                                                 help="Zone-redundant image storage.")] = False,
    subscription: SubscriptionOption = None,
    cloud: CloudOption = "AzureCloud",
    arm_endpoint: ArmEndpointOption = None,
    dry_run: DryRunOption = False,
    no_wait: NoWaitOption = False,
    force: ForceOption = False,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Create a managed image: an OS image, or with --data-disk a VM image.

    Example: azlift register image web -g rg -l westeurope --os-blob https://…/os.vhd
    """
    disks = [reg.parse_data_disk(text) for text in data_disk or []]
    reg.check_unique_luns(disks)
    session = ArmSession.open(subscription=subscription, cloud=cloud, arm_endpoint=arm_endpoint,
                              dry_run=dry_run, no_wait=no_wait, quiet=quiet)
    facts = check_blobs(os_blob, disks)
    decided = reconcile(session, facts, os_type, hyper_v_generation, force)
    model = reg.image_model(location=location, os_blob=os_blob,
                            os_type=require(decided.os_type, "OS type (--os-type)"),
                            specialized=specialized, generation=decided.generation,
                            data_disks=disks, zone_resilient=zone_resilient)
    outcome = session.registrar.create_image(resource_group, name, model)
    session.finish([outcome], json_output)


@app.command("gallery-version")
def gallery_version(
    resource_group: ResourceGroupOption,
    location: LocationOption,
    gallery: Annotated[str, typer.Option("--gallery", help="Azure Compute Gallery name.")],
    definition: Annotated[str, typer.Option("--definition", help="Image definition name.")],
    version: Annotated[str, typer.Option("--version", help="Version, MAJOR.MINOR.PATCH.")],
    os_blob: Annotated[str, typer.Option("--os-blob", help="URL of the OS disk's VHD page blob.")],
    storage_account_id: StorageAccountOption,
    data_disk: DataDiskOption = None,
    target_region: Annotated[list[str] | None, typer.Option(
        "--target-region", help="REGION[=REPLICAS] to replicate to; repeat.")] = None,
    create_definition: Annotated[bool, typer.Option(
        "--create-definition", help="Create the image definition when it is missing.")] = False,
    publisher: Annotated[str | None, typer.Option("--publisher")] = None,
    offer: Annotated[str | None, typer.Option("--offer")] = None,
    sku: Annotated[str | None, typer.Option("--sku")] = None,
    os_type: OsTypeOption = None,
    specialized: SpecializedOption = False,
    hyper_v_generation: GenerationOption = None,
    subscription: SubscriptionOption = None,
    cloud: CloudOption = "AzureCloud",
    arm_endpoint: ArmEndpointOption = None,
    dry_run: DryRunOption = False,
    no_wait: NoWaitOption = False,
    force: ForceOption = False,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Create a gallery image version from VHD blobs (and its definition if asked).

    Example: azlift register gallery-version --gallery g --definition web --version 1.0.0
    -g rg -l westeurope --os-blob https://…/os.vhd --storage-account-id /subscriptions/…
    """
    reg.check_version_name(version)
    disks = [reg.parse_data_disk(text) for text in data_disk or []]
    reg.check_unique_luns(disks)
    regions = reg.with_source_region(location, [reg.parse_target_region(t)
                                                for t in target_region or []])
    if create_definition and not (publisher and offer and sku):
        raise UsageError("--create-definition needs --publisher, --offer and --sku")
    session = ArmSession.open(subscription=subscription, cloud=cloud, arm_endpoint=arm_endpoint,
                              dry_run=dry_run, no_wait=no_wait, quiet=quiet)
    if target_region and len(regions) > len(target_region):
        session.note(f"source region {location} added to the target regions (ARM requires it)")
    facts = check_blobs(os_blob, disks)
    decided = reconcile(session, facts, os_type, hyper_v_generation, force)
    outcomes = []
    existing = session.registrar.get_definition(resource_group, gallery, definition)
    if existing is None:
        if not create_definition:
            raise UsageError(f"image definition {definition} not found in gallery {gallery}; "
                             "add --create-definition --publisher P --offer O --sku S")
        outcomes.append(session.registrar.create_definition(
            resource_group, gallery, definition, reg.gallery_definition_model(
                location=location, os_type=require(decided.os_type, "OS type (--os-type)"),
                specialized=specialized, generation=decided.generation,
                publisher=publisher or "", offer=offer or "", sku=sku or "")))
    else:
        reg.check_definition_matches(existing, decided, force=force, on_override=warn)
    model = reg.gallery_version_model(location=location, os_blob=os_blob,
                                      storage_account_id=storage_account_id, data_disks=disks,
                                      target_regions=regions)
    outcomes.append(session.registrar.create_gallery_version(resource_group, gallery, definition,
                                                             version, model))
    session.finish(outcomes, json_output)


@app.command("disk")
def disk(
    name: Annotated[str, typer.Argument(help="Name of the managed disk.")],
    resource_group: ResourceGroupOption,
    location: LocationOption,
    blob: Annotated[str, typer.Option("--blob", help="URL of the VHD page blob to import.")],
    storage_account_id: StorageAccountOption,
    sku: Annotated[str | None, typer.Option("--sku", help="Disk SKU, e.g. Premium_LRS.")] = None,
    os_type: OsTypeOption = None,
    hyper_v_generation: GenerationOption = None,
    subscription: SubscriptionOption = None,
    cloud: CloudOption = "AzureCloud",
    arm_endpoint: ArmEndpointOption = None,
    dry_run: DryRunOption = False,
    no_wait: NoWaitOption = False,
    force: ForceOption = False,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Create a managed disk imported from a VHD blob.

    Example: azlift register disk web-os -g rg -l westeurope --blob https://…/os.vhd
    --storage-account-id /subscriptions/…/storageAccounts/acct
    """
    sku_name = reg.normalize_sku(sku)
    session = ArmSession.open(subscription=subscription, cloud=cloud, arm_endpoint=arm_endpoint,
                              dry_run=dry_run, no_wait=no_wait, quiet=quiet)
    facts = check_blobs(blob, [])
    # A disk without a boot hint may be a data disk: only refuse contradictions then.
    decided = reconcile(session, facts, os_type, hyper_v_generation, force,
                        fill_defaults=facts.layout.generation_hint is not None)
    model = reg.import_disk_model(location=location, blob=blob,
                                  storage_account_id=storage_account_id, sku=sku_name,
                                  os_type=decided.os_type, generation=decided.generation)
    outcome = session.registrar.create_disk(resource_group, name, model)
    session.finish([outcome], json_output)


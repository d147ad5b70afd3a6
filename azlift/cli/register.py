"""`azlift register`: make a managed image, a gallery image version or a managed disk.

Commands only parse options, call ``upload.register`` / ``upload.blob_source`` and render.
"""
from __future__ import annotations

import functools
import inspect
import itertools
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer

from azlift.upload import register as reg
from azlift.upload.arm import ArmTarget, RecordingTransport, compute_client
from azlift.upload.blob_source import BlobFacts, inspect_blob
from azlift.upload.errors import UsageError
from azlift.upload.uploader import check_rules

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



@dataclass(frozen=True)
class ArmOptions:
    """The options every ARM command shares: where ARM is, and how to run and report."""

    subscription: str | None = None
    cloud: str = "AzureCloud"
    arm_endpoint: str | None = None
    dry_run: bool = False
    no_wait: bool = False
    force: bool = False
    json_output: bool = False
    quiet: bool = False


def _shared(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=annotation)


SHARED_PARAMETERS = (
    _shared("subscription", SubscriptionOption, None),
    _shared("cloud", CloudOption, "AzureCloud"),
    _shared("arm_endpoint", ArmEndpointOption, None),
    _shared("dry_run", DryRunOption, False),
    _shared("no_wait", NoWaitOption, False),
    _shared("force", ForceOption, False),
    _shared("json_output", JsonOption, False),
    _shared("quiet", QuietOption, False),
)


def with_arm_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give ``command`` the shared options after its own, handed over as ``arm``.

    The options stay on the sub-command (``azlift register image … --dry-run``); only their
    declaration is shared.
    """
    signature = inspect.signature(command, eval_str=True)
    own = [parameter for name, parameter in signature.parameters.items() if name != "arm"]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> None:
        shared = {parameter.name: kwargs.pop(parameter.name) for parameter in SHARED_PARAMETERS}
        command(arm=ArmOptions(**shared), **kwargs)

    wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*own, *SHARED_PARAMETERS])
    return wrapper


SPINNER = "|/-\\"
# After these an operation shows nothing more: the spinner line ends.
FINAL_STATES = frozenset({"Succeeded", "Failed", "Canceled", "Granted", "Revoked"})


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
            if state in FINAL_STATES:
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
    def open(cls, arm: ArmOptions) -> "ArmSession":
        target = ArmTarget.resolve(arm.subscription, arm.cloud, arm.arm_endpoint)
        recorder = RecordingTransport() if arm.dry_run else None
        client = compute_client(target, recorder=recorder)
        registrar = reg.Registrar(client, wait=not (arm.no_wait or arm.dry_run),
                                  wait_for_parents=not arm.dry_run,
                                  on_status=StatusLine(arm.quiet or arm.dry_run))
        return cls(client=client, recorder=recorder, registrar=registrar)

    @property
    def dry_run(self) -> bool:
        return self.recorder is not None

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


def check_blobs(os_blob: str, data_disks: list[reg.DataDiskSpec],
                option: str = "--os-blob") -> BlobFacts:
    """Check every blob is an Azure-ready fixed VHD page blob within Azure's size limits.

    Returns the OS disk's facts; its OS-disk limit is checked by ``check_os_disk_size``
    (a blob given to ``register disk`` may be a data disk).
    """
    facts = inspect_blob(os_blob, option=option)
    check_rules(facts.virtual_size, None)
    for disk in data_disks:
        check_rules(inspect_blob(disk.url, option=f"--data-disk {disk.lun}").virtual_size, "data")
    return facts


def check_os_disk_size(facts: BlobFacts) -> None:
    """An OS disk holds at most 4095 GiB: refuse a larger one before ARM does."""
    check_rules(facts.virtual_size, "os")


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


def checked_hints(os_type: str | None, generation: str | None) -> tuple[str | None, str | None]:
    """--os-type and --hyper-v-generation in ARM's spelling, refused before any request."""
    return reg.normalize_os_type(os_type), reg.normalize_generation(generation)


def require(value: str | None, what: str) -> str:
    if not value:
        raise UsageError(f"cannot tell the {what} from the disk; pass it explicitly")
    return value


@app.command("image")
@with_arm_options
def image(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Name of the managed image.")],
    resource_group: ResourceGroupOption,
    location: LocationOption,
    os_blob: Annotated[str, typer.Option("--os-blob", help="URL of the OS disk's VHD page blob.")],
    arm: ArmOptions,
    os_type: OsTypeOption = None,
    specialized: SpecializedOption = False,
    hyper_v_generation: GenerationOption = None,
    data_disk: DataDiskOption = None,
    zone_resilient: Annotated[bool, typer.Option("--zone-resilient",
                                                 help="Zone-redundant image storage.")] = False,
) -> None:
    """Create a managed image: an OS image, or with --data-disk a VM image.

    Example: azlift register image web -g rg -l westeurope --os-blob https://…/os.vhd
    """
    os_type, hyper_v_generation = checked_hints(os_type, hyper_v_generation)
    disks = [reg.parse_data_disk(text) for text in data_disk or []]
    reg.check_unique_luns(disks)
    session = ArmSession.open(arm)
    facts = check_blobs(os_blob, disks)
    check_os_disk_size(facts)
    decided = reconcile(session, facts, os_type, hyper_v_generation, arm.force)
    model = reg.image_model(location=location, os_blob=os_blob,
                            os_type=require(decided.os_type, "OS type (--os-type)"),
                            specialized=specialized, generation=decided.generation,
                            data_disks=disks, zone_resilient=zone_resilient)
    outcome = session.registrar.create_image(resource_group, name, model)
    session.finish([outcome], arm.json_output)


@app.command("gallery-version")
@with_arm_options
def gallery_version(
    resource_group: ResourceGroupOption,
    location: LocationOption,
    gallery: Annotated[str, typer.Option("--gallery", help="Azure Compute Gallery name.")],
    definition: Annotated[str, typer.Option("--definition", help="Image definition name.")],
    version: Annotated[str, typer.Option("--version", help="Version, MAJOR.MINOR.PATCH.")],
    os_blob: Annotated[str, typer.Option("--os-blob", help="URL of the OS disk's VHD page blob.")],
    storage_account_id: StorageAccountOption,
    arm: ArmOptions,
    data_disk: DataDiskOption = None,
    target_region: Annotated[list[str] | None, typer.Option(
        "--target-region", help="REGION[=REPLICAS] to replicate to; repeat.")] = None,
    create_definition: Annotated[bool, typer.Option(
        "--create-definition", help="Create the image definition when it is missing.")] = False,
    publisher: Annotated[str | None, typer.Option(
        "--publisher", help="Publisher of a definition created by --create-definition.")] = None,
    offer: Annotated[str | None, typer.Option(
        "--offer", help="Offer of a definition created by --create-definition.")] = None,
    sku: Annotated[str | None, typer.Option(
        "--sku", help="SKU of a definition created by --create-definition.")] = None,
    os_type: OsTypeOption = None,
    specialized: SpecializedOption = False,
    hyper_v_generation: GenerationOption = None,
) -> None:
    """Create a gallery image version from VHD blobs (and its definition if asked).

    Example: azlift register gallery-version --gallery g --definition web --version 1.0.0
    -g rg -l westeurope --os-blob https://…/os.vhd --storage-account-id /subscriptions/…
    """
    os_type, hyper_v_generation = checked_hints(os_type, hyper_v_generation)
    reg.check_version_name(version)
    disks = [reg.parse_data_disk(text) for text in data_disk or []]
    reg.check_unique_luns(disks)
    regions = reg.with_source_region(location, [reg.parse_target_region(t)
                                                for t in target_region or []])
    if create_definition and not (publisher and offer and sku):
        raise UsageError("--create-definition needs --publisher, --offer and --sku")
    session = ArmSession.open(arm)
    if target_region and len(regions) > len(target_region):
        session.note(f"source region {location} added to the target regions (ARM requires it)")
    facts = check_blobs(os_blob, disks)
    check_os_disk_size(facts)
    decided = reconcile(session, facts, os_type, hyper_v_generation, arm.force)
    outcomes = []
    existing = session.registrar.get_definition(resource_group, gallery, definition)
    if existing is None and session.dry_run and not create_definition:
        session.note(f"dry run: image definition {definition} is not read; the version "
                     "request assumes it exists")
    elif existing is None:
        if not create_definition:
            raise UsageError(f"image definition {definition} not found in gallery {gallery}; "
                             "add --create-definition --publisher P --offer O --sku S")
        if session.dry_run:
            session.note(f"dry run: image definition {definition} is not read; its create "
                         "request is shown as if it were missing")
        outcomes.append(session.registrar.create_definition(
            resource_group, gallery, definition, reg.gallery_definition_model(
                location=location, os_type=require(decided.os_type, "OS type (--os-type)"),
                specialized=specialized, generation=decided.generation,
                publisher=publisher or "", offer=offer or "", sku=sku or "")))
    else:
        reg.check_definition_matches(existing, decided, force=arm.force,
                                     specialized=specialized, on_override=warn)
    model = reg.gallery_version_model(location=location, os_blob=os_blob,
                                      storage_account_id=storage_account_id, data_disks=disks,
                                      target_regions=regions)
    outcomes.append(session.registrar.create_gallery_version(resource_group, gallery, definition,
                                                             version, model))
    session.finish(outcomes, arm.json_output)


@app.command("disk")
@with_arm_options
def disk(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Name of the managed disk.")],
    resource_group: ResourceGroupOption,
    location: LocationOption,
    blob: Annotated[str, typer.Option("--blob", help="URL of the VHD page blob to import.")],
    storage_account_id: StorageAccountOption,
    arm: ArmOptions,
    sku: Annotated[str | None, typer.Option("--sku", help="Disk SKU, e.g. Premium_LRS.")] = None,
    os_type: OsTypeOption = None,
    hyper_v_generation: GenerationOption = None,
) -> None:
    """Create a managed disk imported from a VHD blob.

    Example: azlift register disk web-os -g rg -l westeurope --blob https://…/os.vhd
    --storage-account-id /subscriptions/…/storageAccounts/acct
    """
    os_type, hyper_v_generation = checked_hints(os_type, hyper_v_generation)
    sku_name = reg.normalize_sku(sku)
    session = ArmSession.open(arm)
    facts = check_blobs(blob, [], option="--blob")
    # A disk without a boot hint may be a data disk: only refuse contradictions then.
    decided = reconcile(session, facts, os_type, hyper_v_generation, arm.force,
                        fill_defaults=facts.layout.generation_hint is not None)
    if decided.os_type:
        check_os_disk_size(facts)
    model = reg.import_disk_model(location=location, blob=blob,
                                  storage_account_id=storage_account_id, sku=sku_name,
                                  os_type=decided.os_type, generation=decided.generation)
    outcome = session.registrar.create_disk(resource_group, name, model)
    session.finish([outcome], arm.json_output)

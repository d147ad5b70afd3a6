"""The `azlift` app: wires the sub-apps and runs every command inside the error boundary
(boundary.py). Loaded by ``main.main`` once a command needs typer's parsing."""
from __future__ import annotations

import importlib
import sys
from typing import Annotated, Any

import typer
import typer.main
from typer.core import TyperGroup

from .. import __version__, exit_codes
from . import fast_params
from .boundary import failure_exit_code, terminate_as_interrupt
from .output import STATE

fast_params.install()  # plainly valid values skip typer's pydantic converter

# Sub-apps load only when their command runs, so `azlift vhd check` never pays for the
# Azure SDK or paramiko: (module, one-line help shown by `azlift --help`).
SUB_APPS: dict[str, tuple[str, str]] = {
    "vhd": ("azlift.cli.vhd", "Read, check, convert and fix disk images (raw, VHD, VHDX, qcow2)."),
    "upload": ("azlift.cli.upload", "Upload an image to a page blob or managed disk; verify it."),
    "register": ("azlift.cli.register",
                 "Turn an uploaded VHD into a managed image, gallery version or disk."),
    "prep": ("azlift.cli.prep", "Generalize a guest remotely (Linux over SSH, Windows over WinRM)."),
    "bulk": ("azlift.cli.bulk", "Run many VMs' disks from a manifest (Dask), resumable, with a "
                                "report."),
    "lift": ("azlift.cli.lift", "One VM all the way: generalize the guest, settle, check, "
                                "upload, verify, register."),
}


class AzliftGroup(TyperGroup):
    """Root group: loads sub-apps on demand; every command runs inside the error boundary."""

    def list_commands(self, ctx: typer.Context) -> list[str]:
        return [*super().list_commands(ctx), *SUB_APPS]

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Any:
        if cmd_name not in SUB_APPS or cmd_name in self.commands:
            return super().get_command(ctx, cmd_name)
        module = importlib.import_module(SUB_APPS[cmd_name][0])
        command = typer.main.get_command(module.app)
        command.name = cmd_name
        self.commands[cmd_name] = command
        return command

    def format_commands(self, ctx: typer.Context, formatter: Any) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_text) for name, (_, help_text) in SUB_APPS.items()])

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except (KeyboardInterrupt, Exception) as error:  # noqa: BLE001 - the boundary
            raise typer.Exit(failure_exit_code(error)) from None


app = typer.Typer(
    name="azlift",
    cls=AzliftGroup,
    help=(
        "Take an on-premises VM disk all the way to an Azure image.\n\n"
        "Examples:\n\n"
        "  azlift vhd inspect disk.vhdx\n\n"
        "  azlift vhd check disk.vhd --os-disk --json\n\n"
        "  azlift vhd convert disk.vhdx disk-azure.vhd\n\n"
        "  azlift upload disk.vhdx https://ACCOUNT.blob.core.windows.net/vhds/disk.vhd "
        "--auth-mode login\n\n"
        "  azlift prep linux 10.0.0.5 --user admin --check-only"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"azlift {__version__}")
        raise typer.Exit(0)


@app.callback()
def root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Take an on-premises VM disk all the way to an Azure image."""
    STATE.debug = debug
    if not debug:
        quiet_library_logs()


def quiet_library_logs() -> None:
    """Libraries that log a failure as it happens say nothing without --debug: the error
    reaches the user once, as one line. paramiko's transport thread logs a traceback for
    a port that does not speak SSH; azure-identity a warning per credential it tried."""
    import logging

    for name in ("paramiko", "azure.identity"):
        logging.getLogger(name).addHandler(logging.NullHandler())


def run(args: list[str], exit_process: bool) -> int:
    """Run the app on ``args``; exit the process with its code if ``exit_process``."""
    STATE.debug = STATE.json = STATE.quiet = False
    if "--debug" in args:
        STATE.debug = True
    try:
        with terminate_as_interrupt():
            app(args=args, prog_name="azlift")
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    else:
        code = exit_codes.OK
    if exit_process:
        sys.exit(code)
    return code

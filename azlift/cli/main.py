"""The `azlift` app: wires the sub-apps and holds the one error boundary.

Library errors become one line on stderr (and, with --json, an error document on
stdout) plus the exit code their class declares; tracebacks only with --debug.
"""
from __future__ import annotations

import sys
import traceback
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from prep.errors import PrepError
from upload.errors import UploadError
from vhd.errors import VhdError

from .. import __version__, exit_codes
from ..redact import redact_text
from . import prep as prep_cli
from . import register as register_cli
from . import upload as upload_cli
from . import vhd as vhd_cli
from .common import STATE, emit_json

LIBRARY_ERRORS = (VhdError, UploadError, PrepError)


def _fail(code: str, message: str, exit_code: int) -> typer.Exit:
    message = redact_text(message.strip().splitlines()[0] if message.strip() else code)
    if STATE.json:
        emit_json({"ok": False, "error": {"code": code, "message": message,
                                          "exit_code": exit_code}})
    sys.stderr.write(f"azlift: error: {message}\n")
    sys.stderr.flush()
    return typer.Exit(exit_code)


class AzliftGroup(TyperGroup):
    """Root group: every command runs inside this error boundary."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except LIBRARY_ERRORS as error:
            if STATE.debug:
                traceback.print_exc()
            raise _fail(error.code, str(error), error.exit_code) from None
        except KeyboardInterrupt:
            sys.stderr.write("azlift: interrupted\n")
            raise typer.Exit(exit_codes.INTERRUPTED) from None
        except BrokenPipeError:
            raise typer.Exit(exit_codes.OK) from None
        except Exception as error:  # noqa: BLE001 - the boundary: a bug, reported in one line
            if STATE.debug:
                traceback.print_exc()
            raise _fail("internal_error",
                        f"internal error: {type(error).__name__}: {error} "
                        "(rerun with --debug for the traceback)",
                        exit_codes.INTERNAL) from None


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


app.add_typer(vhd_cli.app, name="vhd")
app.add_typer(upload_cli.app, name="upload")
app.add_typer(register_cli.app, name="register")
app.add_typer(prep_cli.app, name="prep")


def main(argv: list[str] | None = None) -> int:
    """Console entry point. With ``argv`` (tests), return the exit code instead of exiting."""
    STATE.debug = STATE.json = STATE.quiet = False
    args = sys.argv[1:] if argv is None else list(argv)
    if "--debug" in args:
        STATE.debug = True
    try:
        app(args=args, prog_name="azlift")
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    else:
        code = exit_codes.OK
    if argv is None:
        sys.exit(code)
    return code


if __name__ == "__main__":
    main()

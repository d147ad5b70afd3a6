"""What every command prints with, and the run's flags: no typer here, so the commands
answered before typer loads (quick.py) print exactly as the typer app does."""
from __future__ import annotations

import sys
from typing import Any

from .. import exit_codes
from ..redact import redact_text


class RunState:
    """Process-wide flags the error boundary needs (set by option callbacks)."""

    __slots__ = ("debug", "json", "quiet")

    def __init__(self) -> None:
        self.debug = False
        self.json = False
        self.quiet = False


STATE = RunState()


def emit_json(document: Any) -> None:
    """Print ``document`` as the one JSON document on stdout (secrets masked)."""
    import json  # here: a command without --json never needs it

    text = json.dumps(document, indent=2, sort_keys=False, default=str)
    write_out(sys.stdout, redact_text(text) + "\n")


def say(message: str = "", *, err: bool = True) -> None:
    """Human text: stderr when --json owns stdout, else stdout unless ``err``."""
    stream = sys.stderr if (err or STATE.json) else sys.stdout
    write_out(stream, redact_text(message) + "\n")


class UnwritableOutput(Exception):
    """stdout or stderr refused a write: a full disk it was redirected to, a terminal
    that went away. Not a bug of azlift's, and not the image's fault."""

    code = "output_failed"
    exit_code = exit_codes.BAD_INPUT


def write_out(stream: Any, text: str) -> None:
    """Write and flush ``text``; a stream that refuses it raises UnwritableOutput (a reader
    that went away stays a BrokenPipeError, which the boundary takes as no failure)."""
    try:
        stream.write(text)
        stream.flush()
    except BrokenPipeError:
        raise
    except OSError as error:
        raise UnwritableOutput(f"could not write the output: {error.strerror}") from None


def warn(message: str) -> None:
    """A warning line on stderr."""
    say(f"azlift: warning: {message}", err=True)


def progress_on_terminal(quiet: bool) -> bool:
    """Progress bars only on a terminal's stderr, and not with --quiet."""
    if quiet or STATE.quiet:
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False

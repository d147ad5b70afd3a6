"""What every command prints with, and the run's flags: no typer here, so the commands
answered before typer loads (quick.py) print exactly as the typer app does."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from ..redact import redact_text


@dataclass
class RunState:
    """Process-wide flags the error boundary needs (set by option callbacks)."""

    debug: bool = False
    json: bool = False
    quiet: bool = False


STATE = RunState()


def emit_json(document: Any) -> None:
    """Print ``document`` as the one JSON document on stdout (secrets masked)."""
    import json  # here: a command without --json never needs it

    text = json.dumps(document, indent=2, sort_keys=False, default=str)
    sys.stdout.write(redact_text(text) + "\n")
    sys.stdout.flush()


def say(message: str = "", *, err: bool = True) -> None:
    """Human text: stderr when --json owns stdout, else stdout unless ``err``."""
    stream = sys.stderr if (err or STATE.json) else sys.stdout
    stream.write(redact_text(message) + "\n")
    stream.flush()


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

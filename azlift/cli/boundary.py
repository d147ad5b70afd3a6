"""The one error boundary, without typer: the typer app (root.py) and the commands answered
before typer loads (quick.py) end every failure here.

A library error becomes one line on stderr (and, with --json, an error document on
stdout) plus the exit code its class declares; tracebacks only with --debug.
"""
from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from .. import exit_codes
from ..redact import redact_text
from .output import STATE, UnwritableOutput, emit_json

# The library packages whose errors carry ``code`` and ``exit_code`` (checked by module,
# so the boundary does not import every package up front).
LIBRARY_PACKAGES = frozenset({"azlift.vhd", "azlift.upload", "azlift.prep", "azlift.bulk"})


def is_library_error(error: BaseException) -> bool:
    """An error of azlift's own library packages, carrying its code and exit code."""
    package = ".".join(type(error).__module__.split(".")[:2])
    return (package in LIBRARY_PACKAGES and isinstance(getattr(error, "exit_code", None), int)
            and isinstance(getattr(error, "code", None), str))


def report_failure(code: str, message: str, exit_code: int) -> int:
    """Print the failure's one line (and its JSON document with --json); its exit code."""
    message = redact_text(message.strip().splitlines()[0] if message.strip() else code)
    if STATE.json:
        try:
            emit_json({"ok": False, "error": {"code": code, "message": message,
                                              "exit_code": exit_code}})
        except (BrokenPipeError, UnwritableOutput):  # stdout is gone; stderr still says it
            pass
    _to_stderr(f"azlift: error: {message}\n")
    return exit_code


def _to_stderr(line: str) -> None:
    """Write ``line`` to stderr, if stderr still takes writes (nothing else could say it)."""
    try:
        sys.stderr.write(line)
        sys.stderr.flush()
    except OSError:
        pass


def failure_exit_code(error: BaseException) -> int:
    """Report what a command raised, as the boundary does; the exit code it ends with."""
    if isinstance(error, KeyboardInterrupt):
        _to_stderr("azlift: interrupted\n")
        return exit_codes.INTERRUPTED
    if isinstance(error, BrokenPipeError):
        return exit_codes.OK
    if isinstance(error, UnwritableOutput):  # report_failure gets past a refusing stdout
        return report_failure(error.code, str(error), error.exit_code)
    if STATE.debug:
        import traceback

        traceback.print_exc()
    if is_library_error(error):
        return report_failure(error.code, str(error), error.exit_code)  # type: ignore[attr-defined]
    return report_failure("internal_error",
                          f"internal error: {type(error).__name__}: {error} "
                          "(rerun with --debug for the traceback)", exit_codes.INTERNAL)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM (kill, a CI job's time-out, a service manager stopping it) like
    Ctrl-C in every command: the same clean-up runs (temporary output removed, upload
    state kept, managed disk access revoked) and the exit code is 130."""
    try:
        previous, installed = signal.signal(signal.SIGTERM, _interrupt), True
    except ValueError:  # not the main thread: signals are the main thread's
        previous, installed = None, False
    try:
        yield
    finally:
        if installed:
            signal.signal(signal.SIGTERM, previous)

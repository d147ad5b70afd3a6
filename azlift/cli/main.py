"""Console entry point. ``azlift --version``, and the `vhd` command lines quick.py takes
whole, are answered before typer and the app load (they are most of a quick command's
start-up); everything else goes to ``root.run``."""
from __future__ import annotations

import os
import sys
from typing import Any, NoReturn

from .. import __version__, exit_codes


def main(argv: list[str] | None = None) -> int:
    """Console entry point. With ``argv`` (tests), return the exit code instead of exiting."""
    # azlift's numpy work is element-wise (zero scans, block maps), never BLAS: one BLAS
    # thread spares numpy's import starting a pool of them (about 0.1 s of CPU per
    # command that reads a VHD, VHDX or qcow2). A value the user set is kept.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    args = sys.argv[1:] if argv is None else list(argv)
    if args == ["--version"]:
        sys.stdout.write(f"azlift {__version__}\n")
        sys.stdout.flush()
        if argv is None:
            sys.exit(0)
        return 0
    from .quick import run_quick

    code = run_quick(args)
    if code is None:
        from .root import run

        return run(args, exit_process=argv is None)
    if argv is None:
        exit_now(code)
    return code


def exit_now(code: int) -> NoReturn:
    """End the process once stdout and stderr are flushed, without the interpreter's
    teardown (freeing every module and object: about a tenth of a small conversion's
    wall). A quick command leaves nothing for it: its files are closed or renamed, its
    thread pool shut down and waited for, and it sets up no logging handlers, so the exit
    handlers that concurrent.futures and logging register have nothing left to do."""
    from .boundary import failure_exit_code  # loaded already by the quick command
    from .output import UnwritableOutput, write_out

    try:
        write_out(sys.stdout, "")  # what is still buffered
    except (BrokenPipeError, UnwritableOutput) as error:
        if code == exit_codes.OK:  # else the command failed already, and said why
            code = failure_exit_code(error)
    try:
        sys.stderr.flush()
    except OSError:
        pass
    os._exit(code)


def __getattr__(name: str) -> Any:
    """``app`` and the rest of the app's names, for callers that import them from here."""
    if name.startswith("__"):  # the import system probes __path__ and the like
        raise AttributeError(name)
    from . import root

    return getattr(root, name)


if __name__ == "__main__":
    main()

"""Console entry point. ``azlift --version``, and the `vhd` command lines quick.py takes
whole, are answered before typer and the app load (they are most of a quick command's
start-up); everything else goes to ``root.run``."""
from __future__ import annotations

import os
import sys
from typing import Any

from .. import __version__


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
        sys.exit(code)
    return code


def __getattr__(name: str) -> Any:
    """``app`` and the rest of the app's names, for callers that import them from here."""
    if name.startswith("__"):  # the import system probes __path__ and the like
        raise AttributeError(name)
    from . import root

    return getattr(root, name)


if __name__ == "__main__":
    main()

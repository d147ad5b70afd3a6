"""`azlift prep`: the sub-app; commands live in prep_linux.py and prep_windows.py."""
from __future__ import annotations

import typer

app = typer.Typer(help="Generalize a guest remotely before capture (Linux over SSH, "
                  "Windows over WinRM).", no_args_is_help=True)

# The commands register themselves on ``app``.
from . import prep_linux, prep_windows  # noqa: E402,F401

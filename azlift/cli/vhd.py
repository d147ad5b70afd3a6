"""`azlift vhd` commands."""
from __future__ import annotations

import typer

app = typer.Typer(help="vhd commands.", no_args_is_help=True)

"""`azlift upload` commands."""
from __future__ import annotations

import typer

from .common import DefaultCommandGroup

app = typer.Typer(cls=DefaultCommandGroup, help="Upload an image to a page blob or managed disk.")

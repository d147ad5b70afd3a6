"""`azlift prep windows`."""
from __future__ import annotations

from .prep import app  # noqa: F401

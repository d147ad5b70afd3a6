"""`azlift prep linux`."""
from __future__ import annotations

from .prep import app  # noqa: F401

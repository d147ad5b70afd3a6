"""azlift: take an on-premises VM disk all the way to an Azure image."""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]

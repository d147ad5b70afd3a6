"""Azure's rules as findings (placeholder until written)."""
from __future__ import annotations

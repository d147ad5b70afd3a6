"""Write an Azure-ready fixed VHD (placeholder until written)."""
from __future__ import annotations

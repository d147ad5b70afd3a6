"""The exit codes every azlift command uses (documented in README.md)."""
from __future__ import annotations

OK = 0
NOT_READY = 1  # a check found the image or guest not ready
USAGE = 2  # bad flags or arguments
BAD_INPUT = 3  # unreadable or malformed file, bad manifest
REMOTE = 4  # Azure, SSH or WinRM error after retries
REFUSED = 5  # refused for safety: would overwrite, not confirmed
INTERNAL = 70  # a bug in azlift: rerun with --debug and report it
INTERRUPTED = 130

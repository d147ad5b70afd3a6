"""Parse /etc/os-release (freedesktop.org format: KEY=value, shell-style quoting)."""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field


@dataclass(frozen=True)
class OsRelease:
    """The fields family detection and reports use, plus everything else in ``fields``."""

    id: str = ""
    id_like: tuple[str, ...] = ()
    version_id: str = ""
    pretty_name: str = ""
    fields: dict[str, str] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "id_like": list(self.id_like), "version_id": self.version_id,
                "pretty_name": self.pretty_name}


def parse_os_release(text: str) -> OsRelease:
    """Read os-release text; malformed lines are skipped, as systemd does."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        try:
            words = shlex.split(raw, posix=True)
        except ValueError:
            continue
        values[key.strip()] = " ".join(words)
    return OsRelease(
        id=values.get("ID", "").lower(),
        id_like=tuple(values.get("ID_LIKE", "").lower().split()),
        version_id=values.get("VERSION_ID", ""),
        pretty_name=values.get("PRETTY_NAME", values.get("NAME", "")),
        fields=values,
    )

"""A VM's ``[vm.prep]`` table: which guest to generalize before its disks are read.

The table says how to reach the guest (host, port, user, key file, CA file, transport) and
names environment variables for the secrets (``password_env``, ``sudo_password_env``): the
worker that runs the prep reads them from its own environment. A value that looks like a
secret instead of a variable name (a password, a private key) is refused, as everywhere in
a manifest. ``settle_seconds`` and ``settle_timeout`` bound the settle phase that follows.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..redact import ENV_NAME

OS_NAMES = ("linux", "windows")
WINRM_TRANSPORTS = ("ntlm", "kerberos", "credssp", "basic")
PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----|PuTTY-User-Key-File")
DEFAULT_SETTLE_SECONDS = 30.0
DEFAULT_SETTLE_TIMEOUT = 600.0
DEFAULT_PREP_GUESTS = 4  # guests generalized at once, cluster-wide ([limits] prep_guests)
COORDINATOR = "coordinator"  # the reach of a VM that names none: the coordinator itself
LINUX_KEYS = ("identity", "sudo_password_env", "known_hosts", "delete_user")
WINDOWS_KEYS = ("ca_cert", "transport", "http", "mode_vm", "poll_interval")
PREP_KEYS = ("os", "host", "port", "user", "password_env", "timeout", "settle_seconds",
             "settle_timeout", *LINUX_KEYS, *WINDOWS_KEYS)


@dataclass(frozen=True)
class PrepSpec:
    """How to reach and generalize one guest (no secret: variable names only)."""

    os: str  # linux | windows
    host: str
    port: int | None = None
    user: str | None = None  # default: root (linux), Administrator (windows)
    password_env: str | None = None
    timeout: float | None = None  # linux: per command and power-off (60); windows: Sysprep (1800)
    settle_seconds: float = DEFAULT_SETTLE_SECONDS
    settle_timeout: float = DEFAULT_SETTLE_TIMEOUT
    identity: str | None = None
    sudo_password_env: str | None = None
    known_hosts: str | None = None
    delete_user: str | None = None
    ca_cert: str | None = None
    transport: str = "ntlm"
    http: bool = False
    mode_vm: bool = False
    poll_interval: float = 10.0  # windows: seconds between image-state polls

    @property
    def login(self) -> str:
        return self.user or ("root" if self.os == "linux" else "Administrator")

    def identity_key(self) -> str:
        """What names the guest: a prep that finished for it is never run again."""
        return f"{self.os}:{self.host}:{self.port or ''}"

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()


def parse_prep(table: Any, where: str, base_dir: Path | None, problems: Any) -> PrepSpec | None:
    """Validate ``[vm.prep]`` into a PrepSpec; every problem is added to ``problems``."""
    from .manifest import _boolean, _found, _integer, _text, _unknown_keys

    if not isinstance(table, dict):
        problems.add(where, f"expected a table ([vm.prep]), found {_found(table)}")
        return None
    before = len(problems.lines)
    _unknown_keys(table, PREP_KEYS, where, problems)
    os_name = _text(table.get("os"), f"{where}.os", problems, choices=OS_NAMES)
    host = _text(table.get("host"), f"{where}.host", problems, what="a host name or address")
    values: dict[str, Any] = {}
    if "port" in table:
        values["port"] = _integer(table["port"], f"{where}.port", problems, 1, 65535)
    if "user" in table:
        values["user"] = _text(table["user"], f"{where}.user", problems, what="a user name")
    for key in ("password_env", "sudo_password_env"):
        if key in table:
            values[key] = _env_name(table[key], f"{where}.{key}", problems)
    for key, low, high in (("timeout", 0.1, 86400.0), ("settle_seconds", 0.0, 3600.0),
                           ("settle_timeout", 1.0, 86400.0), ("poll_interval", 0.05, 600.0)):
        if key in table:
            values[key] = _seconds(table[key], f"{where}.{key}", problems, low, high)
    for key in ("identity", "known_hosts", "ca_cert"):
        if key in table:
            values[key] = _file(table[key], f"{where}.{key}", base_dir, problems)
    if "delete_user" in table:
        values["delete_user"] = _text(table["delete_user"], f"{where}.delete_user", problems,
                                      pattern=re.compile(r"^[^-\s][^\s]*$"),
                                      what="a user name (not root, not starting with '-')")
        if values["delete_user"] == "root":
            problems.add(f"{where}.delete_user", "expected the login account to remove, found "
                         "root, whose account the image needs")
    if "transport" in table:
        values["transport"] = _text(table["transport"], f"{where}.transport", problems,
                                    choices=WINRM_TRANSPORTS)
    for key in ("http", "mode_vm"):
        if key in table:
            values[key] = _boolean(table[key], f"{where}.{key}", problems)
    if os_name is not None:
        other = WINDOWS_KEYS if os_name == "linux" else LINUX_KEYS
        for key in other:
            if key in table:
                problems.add(f"{where}.{key}", f"only for os = \"{'windows' if os_name == 'linux' else 'linux'}\"; "
                             f"this guest is os = \"{os_name}\"")
    if values.get("http") and values.get("transport") == "basic":
        problems.add(f"{where}.transport", "basic auth over plain HTTP would send the password "
                     "in clear text; use ntlm, or HTTPS (http = false)")
    settle, timeout = (values.get("settle_seconds", DEFAULT_SETTLE_SECONDS),
                       values.get("settle_timeout", DEFAULT_SETTLE_TIMEOUT))
    if settle is not None and timeout is not None and timeout <= settle:
        problems.add(f"{where}.settle_timeout", f"expected more than settle_seconds ({settle:g}), "
                     f"found {timeout:g}")
    if len(problems.lines) > before or os_name is None or host is None:
        return None
    return PrepSpec(os=os_name, host=host, **{k: v for k, v in values.items() if v is not None})


def _env_name(value: Any, path: str, problems: Any) -> str | None:
    """An environment variable's name; anything else may be the secret itself: refused."""
    from .manifest import _found

    if isinstance(value, str) and ENV_NAME.match(value):
        return value
    if isinstance(value, str):
        problems.add(path, "refused: expected the NAME of an environment variable that holds "
                     "the password (letters, digits, '_'), found something else (the password "
                     "itself?); a manifest names no secrets")
        problems.secret = True
        return None
    problems.add(path, f"expected an environment variable name, found {_found(value)}")
    return None


def _seconds(value: Any, path: str, problems: Any, low: float, high: float) -> float | None:
    from .manifest import _found

    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        problems.add(path, f"expected seconds {low:g}..{high:g}, found {_found(value)}")
        return None
    return float(value)


def _file(value: Any, path: str, base_dir: Path | None, problems: Any) -> str | None:
    """A file path for the worker to read; a key pasted in place of its path is refused."""
    from .manifest import _text

    if isinstance(value, str) and PRIVATE_KEY.search(value):
        problems.add(path, "refused: the value is a private key, not the path of its file; "
                     "a manifest names no secrets")
        problems.secret = True
        return None
    text = _text(value, path, problems, what="a file path")
    if text is None:
        return None
    if base_dir is not None and not text.startswith("~") and not Path(text).is_absolute():
        text = str(base_dir / text)
    return text


def parse_reach(value: Any, path: str, problems: Any) -> str | None:
    """The ``reach`` a VM's prep runs from (a worker's ``--reach NAME``)."""
    from .manifest import NAME_PATTERN, _text

    return _text(value, path, problems, pattern=NAME_PATTERN,
                 what="a name of letters, digits, '.', '_', '-' (no ',' or '=')")


def reach_resource(reach: str) -> str:
    """The Dask worker resource of workers started with ``--reach NAME``."""
    return f"reach-{reach}"


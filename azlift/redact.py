"""Keep secrets out of anything azlift prints."""
from __future__ import annotations

import os
import re

# What a secret option names: an environment variable. Anything else may be the secret
# itself, typed in its place: refused without being repeated.
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
SECRET_ENV_VARS = ("AZURE_STORAGE_KEY", "AZURE_STORAGE_CONNECTION_STRING",
                   "AZURE_STORAGE_SAS_TOKEN", "AZURE_CLIENT_SECRET", "AZLIFT_ARM_TOKEN")

_PATTERNS = [
    (re.compile(r"(?i)(AccountKey=)[^;\s'\"]+"), r"\1***"),
    (re.compile(r"(?i)(SharedAccessSignature=)[^;\s'\"]+"), r"\1***"),
    (re.compile(r"(?i)([?&](?:sig|se|sp|sv|sr|st|spr|skoid|sktid|skt|ske|sks|skv|ss|srt)=)[^&\s'\"]+"),
     r"\1***"),
    (re.compile(r"(?i)(Authorization:\s*\S+\s+)\S+"), r"\1***"),
]


def redact_url(url: str) -> str:
    """The URL without its query string (where SAS tokens live)."""
    from urllib.parse import urlsplit, urlunsplit  # here: only commands with URLs need it

    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    if not parts.query:
        return url
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "<redacted>", ""))


def redact_text(text: str, extra_secrets: tuple[str, ...] = ()) -> str:
    """``text`` with account keys, SAS signatures and known secret values masked."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    secrets = [os.environ.get(name, "") for name in SECRET_ENV_VARS] + list(extra_secrets)
    for secret in secrets:
        if secret and len(secret) >= 6:
            text = text.replace(secret, "***")
    return text

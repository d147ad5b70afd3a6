"""Turn the az-CLI-style auth options into a blob URL and a credential.

Order, as the az CLI: explicit options (--connection-string, --account-key, --sas-token,
--auth-mode login, --emulator), then a SAS already in the URL, then the environment
(AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_KEY, AZURE_STORAGE_SAS_TOKEN). Secrets
stay inside the returned credential; nothing here prints or logs them.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

from .errors import AuthError, UsageError

EMULATOR_ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key (public, documented by Microsoft).
EMULATOR_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
                "K1SZFPTOtr/KBHBeksoGMGw==")
EMULATOR_DEFAULT_ENDPOINT = f"http://127.0.0.1:10000/{EMULATOR_ACCOUNT}"
EMULATOR_ENDPOINT_ENV = "AZLIFT_EMULATOR_ENDPOINT"
STORAGE_SCOPE = "https://storage.azure.com/.default"


@dataclass(frozen=True)
class AuthOptions:
    """What the user asked for; every field optional (secrets by value, never printed)."""

    connection_string: str | None = None
    account_key: str | None = None
    sas_token: str | None = None
    login: bool = False
    emulator: bool = False
    emulator_endpoint: str | None = None

    def __repr__(self) -> str:  # never show secrets, even in a traceback
        chosen = [name for name in ("connection_string", "account_key", "sas_token")
                  if getattr(self, name)]
        return f"AuthOptions(given={chosen}, login={self.login}, emulator={self.emulator})"


@dataclass(frozen=True)
class ResolvedBlob:
    """Where the blob is and how to sign requests to it."""

    url: str  # may carry a SAS query: print it only through azlift.redact.redact_url
    credential: Any
    method: str  # "connection-string", "account-key", "sas", "login", "emulator"

    def __repr__(self) -> str:
        return f"ResolvedBlob(method={self.method!r})"


def parse_connection_string(text: str) -> tuple[str, Any]:
    """(blob endpoint, credential) from an Azure Storage connection string."""
    fields: dict[str, str] = {}
    for part in text.strip().split(";"):
        if "=" in part:
            key, value = part.split("=", 1)
            fields[key.strip().lower()] = value.strip()
    if fields.get("usedevelopmentstorage", "").lower() == "true":
        return emulator_endpoint(), {"account_name": EMULATOR_ACCOUNT, "account_key": EMULATOR_KEY}
    account = fields.get("accountname")
    endpoint = fields.get("blobendpoint")
    if not endpoint:
        if not account:
            raise UsageError("the connection string names neither AccountName nor "
                             "BlobEndpoint (expected 'AccountName=...;AccountKey=...')")
        protocol = fields.get("defaultendpointsprotocol", "https")
        suffix = fields.get("endpointsuffix", "core.windows.net")
        endpoint = f"{protocol}://{account}.blob.{suffix}"
    if fields.get("accountkey"):
        if not account:
            raise UsageError("the connection string has AccountKey but no AccountName")
        return endpoint, {"account_name": account, "account_key": fields["accountkey"]}
    if fields.get("sharedaccesssignature"):
        from azure.core.credentials import AzureSasCredential
        return endpoint, AzureSasCredential(fields["sharedaccesssignature"])
    raise UsageError("the connection string has neither AccountKey nor SharedAccessSignature")


def emulator_endpoint(explicit: str | None = None,
                      env: Mapping[str, str] | None = None) -> str:
    """Azurite's blob endpoint: the option, else $AZLIFT_EMULATOR_ENDPOINT, else port 10000."""
    env = os.environ if env is None else env
    endpoint = explicit or env.get(EMULATOR_ENDPOINT_ENV) or EMULATOR_DEFAULT_ENDPOINT
    endpoint = endpoint.rstrip("/")
    if split_url(endpoint).path in ("", "/"):
        endpoint += f"/{EMULATOR_ACCOUNT}"
    return endpoint


def account_from_url(url: str) -> str:
    """The storage account a blob URL names (host-style or emulator path-style)."""
    parts = split_url(url)
    host = parts.hostname or ""
    if ".blob." in host:
        return host.split(".", 1)[0]
    segments = [segment for segment in parts.path.split("/") if segment]
    if segments:
        return segments[0]
    raise UsageError(f"cannot tell the storage account from {url_without_query(url)!r}")


def split_url(url: str) -> SplitResult:
    """``urlsplit``, or one-line UsageError for text that is no URL (a bracket left open,
    a port that is no number), shown without its query (a SAS lives there)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is no number
    except ValueError as error:
        shown = url.split("?", 1)[0]
        raise UsageError(f"{shown!r} is not a URL ({error}); expected "
                         "https://HOST/CONTAINER/BLOB") from None
    return parts


def url_without_query(url: str) -> str:
    """``url`` without its query string (a SAS lives there)."""
    parts = split_url(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def blob_path(url: str) -> list[str] | None:
    """The path segments of a blob URL from the container on, or None when ``url`` is not
    an http(s) URL naming a container and a blob."""
    parts = split_url(url)
    host = parts.hostname or ""
    segments = [segment for segment in parts.path.split("/") if segment]
    if ".blob." not in host:
        segments = segments[1:]  # emulator URLs carry the account in the path
    if parts.scheme not in ("http", "https") or not host or len(segments) < 2:
        return None
    return segments


def check_blob_url(url: str) -> None:
    """Refuse what is not an http(s) URL naming a container and a blob."""
    path = blob_path(url)
    if path is None:
        raise UsageError(
            f"DEST_URL {url_without_query(url)!r} is not a blob URL; expected "
            "https://ACCOUNT.blob.core.windows.net/CONTAINER/NAME.vhd (or, with --emulator, "
            "CONTAINER/NAME.vhd)")
    container = path[0]
    if not 3 <= len(container) <= 63:
        raise UsageError(f"container name {container!r} in DEST_URL must be 3 to 63 "
                         f"characters long, found {len(container)}")


def signed_in_credential(url: str, advice: str) -> Any:
    """DefaultAzureCredential, asked once for a storage token, so a missing sign-in fails
    at once with one line instead of inside every retried request."""
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import DefaultAzureCredential

    shown = url_without_query(url)
    if split_url(url).scheme != "https":
        raise UsageError(f"{shown}: no storage credential for an http:// URL (signing in "
                         f"with an Azure account needs https): {advice}")
    credential = DefaultAzureCredential()
    try:
        credential.get_token(STORAGE_SCOPE)
    except ClientAuthenticationError as error:
        raise AuthError(f"{shown}: no Azure sign-in was found (tried the environment, "
                        f"workload and managed identity, the az CLI, Azure PowerShell and "
                        f"azd): sign in with `az login`, {advice}") from error
    return credential


def _with_sas(url: str, token: str) -> str:
    parts = split_url(url)
    token = token.lstrip("?")
    return urlunsplit((parts.scheme, parts.netloc, parts.path, token, ""))


def resolve_blob(dest: str, options: AuthOptions,
                 env: Mapping[str, str] | None = None) -> ResolvedBlob:
    """The blob URL and credential for ``dest`` under ``options`` (see module docstring)."""
    env = os.environ if env is None else env
    if options.emulator:
        base = emulator_endpoint(options.emulator_endpoint, env)
        url = dest if dest.startswith(("http://", "https://")) else f"{base}/{dest.lstrip('/')}"
        check_blob_url(url)
        return ResolvedBlob(url, {"account_name": EMULATOR_ACCOUNT,
                                  "account_key": EMULATOR_KEY}, "emulator")
    connection_string = options.connection_string
    if not dest.startswith(("http://", "https://")):
        connection_string = connection_string or env.get("AZURE_STORAGE_CONNECTION_STRING")
        if not connection_string:
            check_blob_url(dest)
        endpoint, credential = parse_connection_string(connection_string)
        url = f"{endpoint.rstrip('/')}/{dest.lstrip('/')}"
        check_blob_url(url)
        return ResolvedBlob(url, credential, "connection-string")
    check_blob_url(dest)
    if options.connection_string:
        _, credential = parse_connection_string(options.connection_string)
        return ResolvedBlob(dest, credential, "connection-string")
    if options.account_key:
        return ResolvedBlob(dest, {"account_name": account_from_url(dest),
                                   "account_key": options.account_key}, "account-key")
    if options.sas_token:
        return ResolvedBlob(_with_sas(dest, options.sas_token), None, "sas")
    if options.login:
        return ResolvedBlob(dest, signed_in_credential(
            dest, "or pass --account-key, --sas-token or --connection-string instead"), "login")
    if split_url(dest).query:
        return ResolvedBlob(dest, None, "sas")
    if env.get("AZURE_STORAGE_CONNECTION_STRING"):
        _, credential = parse_connection_string(env["AZURE_STORAGE_CONNECTION_STRING"])
        return ResolvedBlob(dest, credential, "connection-string")
    if env.get("AZURE_STORAGE_KEY"):
        return ResolvedBlob(dest, {"account_name": account_from_url(dest),
                                   "account_key": env["AZURE_STORAGE_KEY"]}, "account-key")
    if env.get("AZURE_STORAGE_SAS_TOKEN"):
        return ResolvedBlob(_with_sas(dest, env["AZURE_STORAGE_SAS_TOKEN"]), None, "sas")
    raise UsageError(
        "no storage credential: pass --connection-string, --account-key, --sas-token, "
        "--auth-mode login or --emulator, put a SAS in DEST_URL, or set "
        "AZURE_STORAGE_CONNECTION_STRING / AZURE_STORAGE_KEY")

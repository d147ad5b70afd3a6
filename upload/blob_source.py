"""A VHD page blob read through ranged GETs: is it Azure-ready, and what does it hold?

Registration hands ARM a blob URL; before that, azlift reads the blob's properties, its
last 512 bytes (the footer) and its first sectors (the partition table), so a wrong
generation or a half-uploaded blob is caught before anything is created.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azlift.vhd import MIB, Footer
from azlift.vhd._vhd_structs import DISK_TYPE_FIXED, FIXED_DATA_OFFSET, FOOTER_COOKIE, FOOTER_SIZE

from .auth import AuthOptions, blob_path, resolve_blob, signed_in_credential, url_without_query
from .errors import AuthError, BlobCheckError, ServiceError, UnreachableError, UsageError
from .retry import RetrySettings

READ_BLOCK = 64 * 1024  # partition probing reads a few sectors at a time: fetch 64 KiB


CREDENTIAL_ENV = ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_KEY", "AZURE_STORAGE_SAS_TOKEN")


def check_blob_url(url: str, option: str = "blob URL") -> None:
    """Refuse what is not an http(s) URL naming a container and a blob, before any request."""
    if blob_path(url) is None:
        raise UsageError(f"{option} expects a blob URL like https://ACCOUNT.blob.core.windows.net"
                         f"/CONTAINER/NAME.vhd, found {url_without_query(url)!r}")


def open_blob(url: str, credential: Any = None, option: str = "blob URL") -> Any:
    """A BlobClient for ``url``: a SAS in the URL, else the az CLI's storage variables.

    Order: ``credential`` given, SAS in the URL, AZURE_STORAGE_CONNECTION_STRING,
    AZURE_STORAGE_KEY, AZURE_STORAGE_SAS_TOKEN, then a signed-in DefaultAzureCredential.
    Requests always go to the host in ``url``; a credential for another account fails
    there instead of silently reading a blob of the same name elsewhere.
    """
    from azure.storage.blob import BlobClient

    check_blob_url(url, option)
    if credential is None and not urlsplit(url).query:
        if any(os.environ.get(name) for name in CREDENTIAL_ENV):
            resolved = resolve_blob(url, AuthOptions())
            url, credential = resolved.url, resolved.credential
        else:
            credential = _signed_in_credential(url)
    # azlift's retry policy (backoff from 1 s), as on the upload's SDK path: the SDK's
    # default waits 15 s before its first retry
    return BlobClient.from_blob_url(url, credential=credential,
                                    retry_policy=RetrySettings().policy())


def _signed_in_credential(url: str) -> Any:
    advice = "put a SAS in the URL or set AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_KEY"
    return signed_in_credential(url, advice)


@dataclass(frozen=True)
class BlobFacts:
    """What the checks found: the blob's length, its footer and its partition layout."""

    url: str
    length: int
    footer: Footer
    layout: Any  # vhd.partitions.DiskLayout

    @property
    def virtual_size(self) -> int:
        return self.length - FOOTER_SIZE

    def as_dict(self) -> dict[str, Any]:
        return {"length": self.length, "virtual_size": self.virtual_size,
                "layout": self.layout.to_dict() if hasattr(self.layout, "to_dict") else None}


def footer_problems(footer: Footer, length: int) -> list[str]:
    """Every way ``footer`` falls short of an Azure fixed-VHD footer for a blob of ``length``."""
    problems = []
    if footer.cookie != FOOTER_COOKIE:
        return [f"no VHD footer in the last 512 bytes (cookie {footer.cookie!r}, expected "
                f"{FOOTER_COOKIE!r})"]
    if footer.disk_type != DISK_TYPE_FIXED:
        problems.append(f"disk type is {footer.disk_type_name}, expected fixed")
    if footer.data_offset != FIXED_DATA_OFFSET:
        problems.append(f"data offset is {footer.data_offset:#x}, expected {FIXED_DATA_OFFSET:#x}")
    if not footer.checksum_ok:
        problems.append("footer checksum does not match its contents")
    if footer.current_size != length - FOOTER_SIZE:
        problems.append(f"footer says {footer.current_size} bytes, the blob holds "
                        f"{length - FOOTER_SIZE} before the footer")
    return problems


class BlobDiskImage:
    """The guest-visible disk inside a fixed-VHD page blob, as a read-only DiskImage."""

    format = "vhd-fixed"

    def __init__(self, client: Any, length: int) -> None:
        self.client = client
        self.path = f"{client.url.split('?', 1)[0]}"
        self._size = length - FOOTER_SIZE
        self._blocks: dict[int, bytes] = {}

    @property
    def virtual_size(self) -> int:
        return self._size

    def _block(self, index: int) -> bytes:
        if index not in self._blocks:
            start = index * READ_BLOCK
            length = min(READ_BLOCK, self._size - start)
            self._blocks[index] = self.client.download_blob(offset=start, length=length).readall()
        return self._blocks[index]

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset`` (clipped to the disk), fetched in 64 KiB blocks."""
        end = min(offset + length, self._size)
        out = bytearray()
        position = offset
        while position < end:
            index, inner = divmod(position, READ_BLOCK)
            piece = self._block(index)[inner:inner + end - position]
            if not piece:
                break
            out += piece
            position += len(piece)
        return bytes(out)

    def extents(self) -> Iterator[tuple[int, int]]:
        yield (0, self._size)

    def describe(self) -> dict[str, Any]:
        return {"path": self.path, "format": self.format, "virtual_size": self._size}

    def close(self) -> None:
        self._blocks.clear()

    def __enter__(self) -> "BlobDiskImage":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def inspect_blob(url: str, *, client: Any = None, option: str = "blob URL") -> BlobFacts:
    """Check the blob is an Azure-ready fixed VHD page blob and read its partition layout.

    Raises BlobCheckError (exit 1) naming what was expected and what was found.
    """
    from azlift.vhd.partitions import analyze

    client = client or open_blob(url, option=option)
    shown = url.split("?", 1)[0]
    try:  # the first request: an endpoint that is down fails in seconds, not minutes
        properties = client.get_blob_properties(**RetrySettings().first_contact())
        length = properties.size
        if properties.blob_type != "PageBlob":
            raise BlobCheckError(f"{shown}: expected a page blob, found a "
                                 f"{getattr(properties.blob_type, 'value', properties.blob_type)}")
        if length < MIB + FOOTER_SIZE or (length - FOOTER_SIZE) % MIB:
            raise BlobCheckError(f"{shown}: length {length} is not a whole number of MiB + 512 "
                                 "(a fixed VHD Azure accepts)")
        raw = client.download_blob(offset=length - FOOTER_SIZE, length=FOOTER_SIZE).readall()
        footer = Footer.unpack(raw)
        problems = footer_problems(footer, length)
        if problems:
            raise BlobCheckError(f"{shown}: not a valid fixed VHD footer: {'; '.join(problems)}")
        with BlobDiskImage(client, length) as image:
            layout = analyze(image)
    except ResourceNotFoundError as error:
        raise BlobCheckError(f"{shown}: blob not found (expected the uploaded VHD there)") from error
    except ClientAuthenticationError as error:
        raise AuthError(f"{shown}: storage refused the credential "
                        f"({error.reason or error.message})",
                        status=error.status_code) from error
    except HttpResponseError as error:
        raise ServiceError(f"{shown}: storage error {error.status_code}: {error.reason}",
                           service_code=getattr(error, "error_code", None),
                           status=error.status_code) from error
    except (ServiceRequestError, ServiceResponseError) as error:
        raise UnreachableError(f"{shown}: storage could not be reached: {error}") from error
    return BlobFacts(url=shown, length=length, footer=footer, layout=layout)


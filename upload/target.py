"""Where pages go: the small ``PageTarget`` protocol and its page-blob implementation.

The uploader only speaks ``PageTarget``; `BlobPageTarget` maps it onto a blob URL with any
credential, or a managed disk's write SAS. The requests an upload repeats (exists,
properties, create, Put Page, metadata) go through rest.py's lean signed client; the rest,
and every request when a proxy is configured or the credential is of another kind, goes
through azure-storage-blob, loaded on first use. Either way errors become this package's
typed errors, secrets removed.
"""
from __future__ import annotations

import base64
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .errors import (
    AuthError,
    ContainerNotFoundError,
    ServiceError,
    TargetExistsError,
    UploadError,
)
from .auth import parse_connection_string, url_without_query
from .ranges import Range
from .rest import BlobRest, Response, signer_for
from .retry import RetrySettings


@dataclass(frozen=True)
class BlobState:
    """What the service says about an existing blob."""

    length: int
    blob_type: str  # "PageBlob", "BlockBlob", ...
    metadata: dict[str, str] = field(default_factory=dict)
    content_md5: bytes | None = None


@runtime_checkable
class PageTarget(Protocol):
    """A page-addressable destination: a page blob, or a managed disk's write SAS."""

    @property
    def identity(self) -> str:
        """Stable name of the target for resume records (URL without query)."""
        ...

    @property
    def supports_metadata(self) -> bool: ...

    def exists(self) -> bool: ...

    def properties(self) -> BlobState: ...

    def create(self, size: int, overwrite: bool,
               metadata: dict[str, str] | None = None) -> None:
        """Create the target with ``metadata`` in the same request (no window without it)."""
        ...

    def put_pages(self, offset: int, data: bytes | memoryview, md5: bytes | None, *,
                  crc64: bytes | None = None) -> int:
        """Write ``data`` at ``offset`` with the checksum given (Content-MD5 or
        x-ms-content-crc64, none if both are None); return the HTTP attempts it took."""
        ...

    def list_page_ranges(self) -> list[Range]: ...
    # Optional: ``delete()`` removes the blob (a partial one the source could not finish).

    def read(self, offset: int, length: int) -> bytes: ...

    def set_metadata(self, metadata: dict[str, str]) -> None: ...

    def set_content_md5(self, md5: bytes) -> None: ...

    def close(self) -> None: ...


DEFAULT_POOL_SIZE = 10  # requests' connections kept per host (the SDK path)


# Proxy variables requests looks for in the environment on every request.
PROXY_ENVIRONMENT = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
CA_BUNDLE_ENVIRONMENT = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")  # requests' order


def transport_settings(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Client options that spare the per-request environment scan, where that is safe.

    Trusting the environment, requests looks for proxies (scanning every variable) on each
    Put Page, a measurable share of the client's CPU per request. Without proxy variables
    nothing is lost by not looking (azure-core ``use_env_settings=False``), provided a CA
    bundle named by REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE is passed on explicitly.
    """
    env = os.environ if env is None else env
    if any(name.lower() in PROXY_ENVIRONMENT and value for name, value in env.items()):
        return {}
    settings: dict[str, Any] = {"use_env_settings": False}
    bundle = next((env[name] for name in CA_BUNDLE_ENVIRONMENT if env.get(name)), None)
    if bundle:
        settings["connection_verify"] = bundle
    return settings


# The HTTP library under azure-core logs each request's full URL at DEBUG level, SAS
# signature included (azure-core's own logging policy masks it; urllib3 does not).
TRANSPORT_LOGGER = "urllib3.connectionpool"
SAS_SIGNATURE = re.compile(r"(?i)([?&]sig=)[^&\s\"']+")


class SasSignatureFilter(logging.Filter):
    """Masks SAS signatures in the records of the logger it is attached to."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = SAS_SIGNATURE.sub(r"\1REDACTED", message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def hide_sas_in_transport_logs() -> None:
    """Attach SasSignatureFilter to the transport's logger, once per process."""
    logger = logging.getLogger(TRANSPORT_LOGGER)
    if not any(isinstance(f, SasSignatureFilter) for f in logger.filters):
        logger.addFilter(SasSignatureFilter())


class BlobPageTarget:
    """A page blob addressed by URL, signed by any credential azure-storage-blob takes.

    ``credential`` may be None (SAS in the URL), an account-key mapping, an
    ``AzureSasCredential``, or a token credential. ``supports_metadata`` is False for a
    managed disk's write SAS: that "blob" already exists and accepts only pages.
    ``request_hook`` sees every attempt of every request (the SDK's raw_request_hook shape).
    """

    def __init__(self, blob_url: str, credential: Any = None, *,
                 retry: RetrySettings | None = None, create_container: bool = True,
                 supports_metadata: bool = True,
                 request_hook: Callable[[Any], None] | None = None,
                 connections: int = DEFAULT_POOL_SIZE,
                 **client_kwargs: Any) -> None:
        hide_sas_in_transport_logs()
        self._retry = retry or RetrySettings()
        self._local = threading.local()
        self._request_hook = request_hook
        self._create_container = create_container
        self._supports_metadata = supports_metadata
        self._identity = url_without_query(blob_url)
        self._url = blob_url
        self._credential = credential
        self._connections = connections
        self._client_kwargs = {**transport_settings(), **client_kwargs}
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._rest = self._lean_client()

    def _lean_client(self) -> BlobRest | None:
        """rest.py's client when it can do what the SDK would: no proxy to honour (the
        settings say so), no transport or option given, a credential kind it signs."""
        options = dict(self._client_kwargs)
        if options.pop("use_env_settings", True) is not False:
            return None
        ca_bundle = options.pop("connection_verify", None)
        if options or not (ca_bundle is None or isinstance(ca_bundle, str)):
            return None
        if signer_for(self._credential) is None:
            return None
        try:
            return BlobRest(self._url, self._credential, retry=self._retry,
                            ca_bundle=ca_bundle, request_hook=self._request_hook)
        except ValueError:
            return None

    @classmethod
    def from_sas_url(cls, url: str, *, retry: RetrySettings | None = None,
                     **kwargs: Any) -> "BlobPageTarget":
        """A managed disk's write SAS: exists with its size; pages only, no metadata."""
        return cls(url, None, retry=retry, create_container=False, supports_metadata=False,
                   **kwargs)

    @classmethod
    def from_connection_string(cls, connection_string: str, container: str, blob: str,
                               **kwargs: Any) -> "BlobPageTarget":
        """Blob ``container/blob`` of the account a connection string names."""
        endpoint, credential = parse_connection_string(connection_string)
        return cls(f"{endpoint.rstrip('/')}/{container}/{blob}", credential, **kwargs)

    # -- bookkeeping -----------------------------------------------------------------
    def _count_attempt(self, request: Any) -> None:
        self._local.attempts = getattr(self._local, "attempts", 0) + 1
        if self._request_hook is not None:
            self._request_hook(request)

    @property
    def identity(self) -> str:
        return self._identity

    @property
    def supports_metadata(self) -> bool:
        return self._supports_metadata

    @property
    def lean(self) -> bool:
        """True when the upload's own requests bypass the SDK (see rest.py)."""
        return self._rest is not None

    @property
    def client(self) -> Any:
        """The SDK's BlobClient for this blob, built (and the SDK imported) on first use."""
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    from .sdk_client import make_blob_client
                    self._client = make_blob_client(
                        self._url, self._credential, retry=self._retry,
                        connections=self._connections, hook=self._count_attempt,
                        client_kwargs=self._client_kwargs)
        return self._client

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except UploadError:
            raise
        except Exception as error:  # noqa: BLE001 - every SDK failure becomes a typed one
            from .sdk_client import translate_error
            raise translate_error(error, self._identity) from error

    def _send(self, method: str, query: dict[str, str], headers: dict[str, str],
              body: Any = None, *, first_contact: bool = False,
              ok: tuple[int, ...] = (200, 201)) -> tuple[Response, int]:
        assert self._rest is not None
        policy = self._retry.first_contact_settings() if first_contact else None
        return self._rest.request(method, query, headers, body, ok=ok, where=self._identity,
                                  policy=policy)

    # -- PageTarget ------------------------------------------------------------------
    def exists(self) -> bool:
        if self._rest is not None:
            response, _ = self._send("HEAD", {}, {}, first_contact=True, ok=(200, 404))
            return response.status == 200
        with self._errors():
            return bool(self.client.exists(**self._retry.first_contact()))

    def properties(self) -> BlobState:
        if self._rest is not None:
            response, _ = self._send("HEAD", {}, {}, first_contact=True, ok=(200,))
            return _blob_state(response)
        with self._errors():
            props = self.client.get_blob_properties(**self._retry.first_contact())
        settings = props.content_settings
        md5 = bytes(settings.content_md5) if settings and settings.content_md5 else None
        blob_type = getattr(props.blob_type, "value", props.blob_type)  # enum or str
        return BlobState(length=props.size, blob_type=str(blob_type),
                         metadata=dict(props.metadata or {}), content_md5=md5)

    def create(self, size: int, overwrite: bool,
               metadata: dict[str, str] | None = None) -> None:
        """Create an empty page blob of ``size`` bytes carrying ``metadata`` (and its
        container if allowed): one request, so a kill never leaves a blob without it."""
        for attempt in (1, 2):
            try:
                self._create_once(size, overwrite, metadata)
                return
            except ServiceError as error:
                if (attempt == 1 and self._create_container and error.status == 404
                        and error.service_code == "ContainerNotFound"):
                    self._make_container()
                    continue
                raise

    def _create_once(self, size: int, overwrite: bool,
                     metadata: dict[str, str] | None) -> None:
        exists = TargetExistsError(
            f"{self._identity} already exists; pass --overwrite to replace it or --resume "
            "to continue an interrupted upload")
        metadata = metadata if metadata and self._supports_metadata else None
        if self._rest is not None:
            headers = {"x-ms-blob-type": "PageBlob", "x-ms-blob-content-length": str(size),
                       **_metadata_headers(metadata)}
            if not overwrite:
                headers["If-None-Match"] = "*"
            try:
                self._send("PUT", {}, headers, first_contact=True, ok=(201,))
            except ServiceError as error:
                if error.status == 409 and error.service_code in (None, "BlobAlreadyExists"):
                    raise exists from error
                raise
            return
        from azure.core.exceptions import ResourceExistsError

        conditions: dict[str, Any] = {} if overwrite else {"if_none_match": "*"}
        conditions.update(self._retry.first_contact())
        if metadata:
            conditions["metadata"] = metadata
        with self._errors():
            try:
                self.client.create_page_blob(size=size, **conditions)
            except ResourceExistsError as error:
                raise exists from error

    def _make_container(self) -> None:
        from azure.core.exceptions import ResourceExistsError

        container = self.client._get_container_client()  # same pipeline and credential
        try:
            with self._errors():
                try:
                    container.create_container()
                except ResourceExistsError:
                    pass
        except AuthError as error:
            raise ContainerNotFoundError(
                f"container '{self.client.container_name}' does not exist and this "
                f"credential may not create it (HTTP {error.status} "
                f"{error.service_code or ''}".rstrip() + "); create the container, or use an "
                "account key, connection string or account SAS that may create containers",
                service_code=error.service_code, status=error.status) from error

    def put_pages(self, offset: int, data: bytes | memoryview, md5: bytes | None, *,
                  crc64: bytes | None = None) -> int:
        """Put ``data`` (a memoryview is sent without a copy) with the checksum given:
        ``md5`` as Content-MD5, ``crc64`` (8 bytes, little-endian) as x-ms-content-crc64."""
        if self._rest is not None:
            headers = {"x-ms-page-write": "update",
                       "x-ms-range": f"bytes={offset}-{offset + len(data) - 1}"}
            if md5 is not None:
                headers["Content-MD5"] = base64.b64encode(md5).decode()
            if crc64 is not None:
                headers["x-ms-content-crc64"] = base64.b64encode(crc64).decode()
            _, attempts = self._send("PUT", PAGE_QUERY, headers, data, ok=(201,))
            return attempts
        self._local.attempts = 0
        options: dict[str, Any] = {}
        if md5 is not None:
            options["transactional_content_md5"] = md5
        if crc64 is not None:
            options["transactional_content_crc64"] = crc64
        try:
            with self._errors():
                self.client.upload_page(data, offset=offset, length=len(data), **options)
        except UploadError as error:
            error.attempts = max(self._local.attempts, 1)  # type: ignore[attr-defined]
            raise
        return max(self._local.attempts, 1)

    def list_page_ranges(self) -> list[Range]:
        with self._errors():
            return [(page.start, page.end - page.start + 1)
                    for page in self.client.list_page_ranges() if not page.cleared]

    def read(self, offset: int, length: int) -> bytes:
        if self._rest is not None:
            response, _ = self._send("GET", {}, {"x-ms-range":
                                                 f"bytes={offset}-{offset + length - 1}"},
                                     ok=(200, 206))
            if len(response.body) != length:
                raise ServiceError(f"{self._identity}: asked for {length} bytes at offset "
                                   f"{offset}, the service sent {len(response.body)}")
            return response.body
        with self._errors():
            return self.client.download_blob(offset=offset, length=length).readall()

    def delete(self) -> None:
        """Delete the blob (a partial upload whose source turned out unreadable)."""
        if self._rest is not None:
            self._send("DELETE", {}, {}, ok=(202,))
            return
        with self._errors():
            self.client.delete_blob()

    def set_metadata(self, metadata: dict[str, str]) -> None:
        if not self._supports_metadata:
            return
        if self._rest is not None:
            self._send("PUT", {"comp": "metadata"}, _metadata_headers(metadata))
            return
        with self._errors():
            self.client.set_blob_metadata(metadata)

    def set_content_md5(self, md5: bytes) -> None:
        from azure.storage.blob import ContentSettings

        with self._errors():
            props = self.client.get_blob_properties()
            settings = props.content_settings or ContentSettings()
            settings.content_md5 = bytearray(md5)
            self.client.set_http_headers(content_settings=settings)

    def close(self) -> None:
        if self._rest is not None:
            self._rest.close()
        if self._client is not None:
            self._client.close()


class DiskPageTarget:
    """A disk's write-SAS page target that names itself by the disk's resource id.

    The id (not the SAS URL, which changes with each grant) keys the resume journal.
    """

    def __init__(self, inner: Any, resource_id: str) -> None:
        self._inner = inner
        self._identity = resource_id

    @property
    def identity(self) -> str:
        return self._identity

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


PAGE_QUERY = {"comp": "page"}


def _metadata_headers(metadata: dict[str, str] | None) -> dict[str, str]:
    return {f"x-ms-meta-{name}": value for name, value in (metadata or {}).items()}


def _blob_state(response: Response) -> BlobState:
    """A HEAD answer's blob properties (metadata names as the service spells them)."""
    headers = response.headers
    md5 = headers.get("content-md5")
    metadata = {name[len("x-ms-meta-"):]: value for name, value in response.raw_headers
                if name.lower().startswith("x-ms-meta-")}
    return BlobState(length=int(headers.get("content-length", 0)),
                     blob_type=headers.get("x-ms-blob-type", ""), metadata=metadata,
                     content_md5=base64.b64decode(md5) if md5 else None)

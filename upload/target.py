"""Where pages go: the small ``PageTarget`` protocol and its page-blob implementation.

The uploader only speaks ``PageTarget``; `BlobPageTarget` maps it onto
azure-storage-blob (a blob URL with any credential, or a managed disk's write SAS) and
turns the SDK's exceptions into this package's typed errors, secrets removed.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import BlobClient, ContentSettings, ExponentialRetry

from .errors import (
    AuthError,
    ContainerNotFoundError,
    ServiceError,
    TargetExistsError,
    TransientServiceError,
    UnreachableError,
    UploadError,
)
from .auth import parse_connection_string, url_without_query
from .ranges import Range


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

    def read(self, offset: int, length: int) -> bytes: ...

    def set_metadata(self, metadata: dict[str, str]) -> None: ...

    def set_content_md5(self, md5: bytes) -> None: ...

    def close(self) -> None: ...


# The first requests to an endpoint: one retry, connect within 4 s, answer within 10 s,
# so an unreachable endpoint fails in well under 20 s (two attempts and one backoff).
FIRST_CONTACT_RETRIES = 1
FIRST_CONTACT_CONNECT_S = 4.0
FIRST_CONTACT_READ_S = 10.0


@dataclass(frozen=True)
class RetrySettings:
    """azure-core retry policy knobs (exponential backoff with jitter) plus timeouts."""

    total: int = 6
    initial_backoff: float = 1.0
    increment_base: float = 2.0
    jitter: float = 0.5
    connection_timeout: float = 20.0
    read_timeout: float = 120.0

    def first_contact(self) -> dict[str, Any]:
        """Per-call options for the requests that first reach the service (exists,
        properties, create): an endpoint that is down, refuses or black-holes connections
        fails in seconds (one retry, short timeouts) instead of after minutes of backoff.
        Put Page keeps the full policy: a service that answered once is worth waiting for."""
        return {"retry_connect": FIRST_CONTACT_RETRIES, "retry_read": FIRST_CONTACT_RETRIES,
                "connection_timeout": min(self.connection_timeout, FIRST_CONTACT_CONNECT_S),
                "read_timeout": min(self.read_timeout, FIRST_CONTACT_READ_S)}

    def policy(self) -> ExponentialRetry:
        return ExponentialRetry(initial_backoff=self.initial_backoff,  # type: ignore[arg-type]
                                increment_base=self.increment_base,  # type: ignore[arg-type]
                                retry_total=self.total,
                                random_jitter_range=self.jitter)  # type: ignore[arg-type]


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else ""


def translate_error(error: Exception, where: str) -> UploadError:
    """An SDK exception as this package's error; ``where`` is a redacted URL."""
    if isinstance(error, UploadError):
        return error
    if isinstance(error, (ServiceRequestError, ServiceResponseError)) and not isinstance(
            error, HttpResponseError):
        reason = _first_line(str(getattr(error, "message", "") or error))
        if isinstance(error, ServiceRequestError):
            return UnreachableError(f"cannot reach {where}: {reason}")
        return TransientServiceError(f"connection to {where} failed: {reason}")
    if isinstance(error, HttpResponseError):
        status = error.status_code
        service_code = getattr(error, "error_code", None)
        service_code = str(getattr(service_code, "value", service_code)) if service_code else None
        reason = _first_line(getattr(error, "reason", "") or "")
        detail = _first_line(getattr(error, "message", "") or str(error))
        detail = detail.removeprefix("Operation returned an invalid status ").strip("'")
        if status is None and isinstance(error, ClientAuthenticationError):
            # raised before any request left (a malformed key, no token to be had)
            return AuthError(f"cannot sign requests to {where} with this credential: "
                             f"{detail or reason}")
        text = f"{where}: HTTP {status}" + (f" {service_code}" if service_code else "")
        text += f": {detail or reason}"
        if isinstance(error, ClientAuthenticationError) or status in (401, 403):
            return AuthError(f"storage refused the credential for {text}",
                             service_code=service_code, status=status)
        if status is not None and (status >= 500 or status in (408, 429)):
            return TransientServiceError(text, service_code=service_code, status=status)
        return ServiceError(text, service_code=service_code, status=status)
    return ServiceError(f"{where}: {type(error).__name__}: {_first_line(str(error))}")


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


DEFAULT_POOL_SIZE = 10  # requests' connections kept per host


class PooledRequestsTransport(RequestsTransport):
    """azure-core's requests transport keeping ``connections`` connections per host.

    requests keeps 10 per host; with more upload threads than that, every extra request
    would open (and for HTTPS, handshake) a new connection and throw it away.
    """

    def __init__(self, *, connections: int, **kwargs: Any) -> None:
        self._connections = connections
        super().__init__(**kwargs)

    def _init_session(self, session: Any) -> None:
        super()._init_session(session)
        for adapter in session.adapters.values():
            adapter.init_poolmanager(self._connections, self._connections)


class BlobPageTarget:
    """A page blob addressed by URL, signed by any credential azure-storage-blob takes.

    ``credential`` may be None (SAS in the URL), an account-key mapping, an
    ``AzureSasCredential``, or a token credential. ``supports_metadata`` is False for a
    managed disk's write SAS: that "blob" already exists and accepts only pages.
    """

    def __init__(self, blob_url: str, credential: Any = None, *,
                 retry: RetrySettings | None = None, create_container: bool = True,
                 supports_metadata: bool = True,
                 request_hook: Callable[[Any], None] | None = None,
                 connections: int = DEFAULT_POOL_SIZE,
                 **client_kwargs: Any) -> None:
        self._retry = retry or RetrySettings()
        self._local = threading.local()
        self._request_hook = request_hook
        self._create_container = create_container
        self._supports_metadata = supports_metadata
        self._identity = url_without_query(blob_url)
        client_kwargs = {**transport_settings(), **client_kwargs}
        if connections > DEFAULT_POOL_SIZE and "transport" not in client_kwargs:
            client_kwargs["transport"] = PooledRequestsTransport(
                connections=connections, connection_timeout=self._retry.connection_timeout,
                read_timeout=self._retry.read_timeout, **client_kwargs)
        self._client = BlobClient.from_blob_url(
            blob_url, credential=credential, retry_policy=self._retry.policy(),
            connection_timeout=self._retry.connection_timeout,
            read_timeout=self._retry.read_timeout,
            raw_request_hook=self._count_attempt, max_page_size=4 * 1024 * 1024,
            **client_kwargs)

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
    def client(self) -> BlobClient:
        return self._client

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except UploadError:
            raise
        except Exception as error:  # noqa: BLE001 - every SDK failure becomes a typed one
            raise translate_error(error, self._identity) from error

    # -- PageTarget ------------------------------------------------------------------
    def exists(self) -> bool:
        with self._errors():
            return bool(self._client.exists(**self._retry.first_contact()))

    def properties(self) -> BlobState:
        with self._errors():
            props = self._client.get_blob_properties(**self._retry.first_contact())
        settings = props.content_settings
        md5 = bytes(settings.content_md5) if settings and settings.content_md5 else None
        blob_type = getattr(props.blob_type, "value", props.blob_type)  # enum or str
        return BlobState(length=props.size, blob_type=str(blob_type),
                         metadata=dict(props.metadata or {}), content_md5=md5)

    def create(self, size: int, overwrite: bool,
               metadata: dict[str, str] | None = None) -> None:
        """Create an empty page blob of ``size`` bytes carrying ``metadata`` (and its
        container if allowed): one request, so a kill never leaves a blob without it."""
        conditions: dict[str, Any] = {} if overwrite else {"if_none_match": "*"}
        conditions.update(self._retry.first_contact())
        if metadata and self._supports_metadata:
            conditions["metadata"] = metadata
        for attempt in (1, 2):
            try:
                with self._errors():
                    try:
                        self._client.create_page_blob(size=size, **conditions)
                        return
                    except ResourceExistsError as error:
                        raise TargetExistsError(
                            f"{self._identity} already exists; pass --overwrite to replace "
                            "it or --resume to continue an interrupted upload") from error
            except ServiceError as error:
                if (attempt == 1 and self._create_container and error.status == 404
                        and error.service_code == "ContainerNotFound"):
                    self._make_container()
                    continue
                raise

    def _make_container(self) -> None:
        container = self._client._get_container_client()  # same pipeline and credential
        try:
            with self._errors():
                try:
                    container.create_container()
                except ResourceExistsError:
                    pass
        except AuthError as error:
            raise ContainerNotFoundError(
                f"container '{self._client.container_name}' does not exist and this "
                f"credential may not create it (HTTP {error.status} "
                f"{error.service_code or ''}".rstrip() + "); create the container, or use an "
                "account key, connection string or account SAS that may create containers",
                service_code=error.service_code, status=error.status) from error

    def put_pages(self, offset: int, data: bytes | memoryview, md5: bytes | None, *,
                  crc64: bytes | None = None) -> int:
        """Put ``data`` (a memoryview is sent without a copy) with the checksum given:
        ``md5`` as Content-MD5, ``crc64`` (8 bytes, little-endian) as x-ms-content-crc64."""
        self._local.attempts = 0
        options: dict[str, Any] = {}
        if md5 is not None:
            options["transactional_content_md5"] = md5
        if crc64 is not None:
            options["transactional_content_crc64"] = crc64
        try:
            with self._errors():
                self._client.upload_page(data, offset=offset, length=len(data), **options)
        except UploadError as error:
            error.attempts = max(self._local.attempts, 1)  # type: ignore[attr-defined]
            raise
        return max(self._local.attempts, 1)

    def list_page_ranges(self) -> list[Range]:
        with self._errors():
            return [(page.start, page.end - page.start + 1)
                    for page in self._client.list_page_ranges() if not page.cleared]

    def read(self, offset: int, length: int) -> bytes:
        with self._errors():
            return self._client.download_blob(offset=offset, length=length).readall()

    def set_metadata(self, metadata: dict[str, str]) -> None:
        if not self._supports_metadata:
            return
        with self._errors():
            self._client.set_blob_metadata(metadata)

    def set_content_md5(self, md5: bytes) -> None:
        with self._errors():
            props = self._client.get_blob_properties()
            settings = props.content_settings or ContentSettings()
            settings.content_md5 = bytearray(md5)
            self._client.set_http_headers(content_settings=settings)

    def close(self) -> None:
        self._client.close()

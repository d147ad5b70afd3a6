"""The azure-storage-blob side of a page target: the client, its transport, its errors.

Loaded only when a request needs the SDK (container creation, page-range listing, reads,
Content-MD5, or every request behind a proxy or with a credential rest.py does not sign):
importing the SDK costs about half a second that a quick upload should not pay up front.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import BlobClient

from .errors import AuthError, ServiceError, TransientServiceError, UnreachableError, UploadError

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


def make_blob_client(blob_url: str, credential: Any, *, retry: Any, connections: int,
                     hook: Callable[[Any], None], client_kwargs: dict[str, Any]) -> BlobClient:
    """The SDK client for ``blob_url`` with azlift's retry policy, timeouts and pool."""
    client_kwargs = dict(client_kwargs)
    if connections > DEFAULT_POOL_SIZE and "transport" not in client_kwargs:
        client_kwargs["transport"] = PooledRequestsTransport(
            connections=connections, connection_timeout=retry.connection_timeout,
            read_timeout=retry.read_timeout, **client_kwargs)
    return BlobClient.from_blob_url(
        blob_url, credential=credential, retry_policy=retry.policy(),
        connection_timeout=retry.connection_timeout, read_timeout=retry.read_timeout,
        raw_request_hook=hook, max_page_size=4 * 1024 * 1024, **client_kwargs)


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



"""Azure Resource Manager access: which cloud, which subscription, which credential.

Every ARM request goes through the real ``ComputeManagementClient``. A dry run swaps in a
transport that records each request (method, URL with api-version, the SDK's own JSON
body) and answers it locally, so what is printed is exactly what would have been sent.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from azure.core import AzureClouds
from azure.core.credentials import AccessToken
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest._http_response_impl import HttpResponseImpl

from .errors import ArmError, AuthError, UnreachableError, UsageError

CLOUDS: dict[str, AzureClouds] = {
    "AzureCloud": AzureClouds.AZURE_PUBLIC_CLOUD,
    "AzureChinaCloud": AzureClouds.AZURE_CHINA_CLOUD,
    "AzureUSGovernment": AzureClouds.AZURE_US_GOVERNMENT,
}
SUBSCRIPTION_ENV = "AZURE_SUBSCRIPTION_ID"
# A bearer token to use instead of DefaultAzureCredential (automation, local ARM stand-ins).
TOKEN_ENV = "AZLIFT_ARM_TOKEN"
# A PEM bundle that verifies the ARM endpoint's TLS certificate (private Azure Stack Hub CAs).
CA_BUNDLE_ENV = "AZLIFT_ARM_CA_BUNDLE"
TOKEN_LIFETIME_S = 3600
ARM_CONNECT_RETRIES = 1
ARM_CONNECT_TIMEOUT_S = 5.0
# Seconds between polls of a long-running operation when ARM sends no Retry-After.
POLL_SECONDS_ENV = "AZLIFT_ARM_POLL_SECONDS"
DEFAULT_POLL_SECONDS = 5.0
T = TypeVar("T")


@dataclass(frozen=True)
class ArmTarget:
    """Where ARM requests go: a cloud (or an explicit endpoint) and a subscription."""

    subscription: str
    cloud: str = "AzureCloud"
    arm_endpoint: str | None = None

    @classmethod
    def resolve(cls, subscription: str | None, cloud: str = "AzureCloud",
                arm_endpoint: str | None = None) -> "ArmTarget":
        """Fill the subscription from AZURE_SUBSCRIPTION_ID and check the cloud name."""
        subscription = subscription or os.environ.get(SUBSCRIPTION_ENV, "").strip()
        if not subscription:
            raise UsageError(f"no subscription: expected --subscription or {SUBSCRIPTION_ENV}, "
                             "found neither")
        if cloud not in CLOUDS:
            raise UsageError(f"unknown cloud {cloud!r}: expected one of {', '.join(CLOUDS)}")
        if arm_endpoint and not arm_endpoint.startswith("https://"):
            raise UsageError(f"--arm-endpoint must be an https:// URL, found {arm_endpoint!r}")
        if arm_endpoint:
            from .auth import split_url
            split_url(arm_endpoint)  # a bracket left open, a port that is no number
        return cls(subscription=subscription, cloud=cloud,
                   arm_endpoint=arm_endpoint.rstrip("/") if arm_endpoint else None)


class StaticTokenCredential:
    """A credential that hands out one bearer token taken from the environment."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        import time
        return AccessToken(self._token, int(time.time()) + TOKEN_LIFETIME_S)

    def __repr__(self) -> str:  # never show the token
        return "StaticTokenCredential(***)"


def credential_from_environment(*, dry_run: bool = False) -> Any:
    """AZLIFT_ARM_TOKEN when set, else DefaultAzureCredential (the az CLI's chain).

    A dry run never talks to ARM, so it needs no real sign-in.
    """
    token = os.environ.get(TOKEN_ENV, "")
    if token:
        return StaticTokenCredential(token)
    if dry_run:
        return StaticTokenCredential("dry-run")
    from azure.identity import DefaultAzureCredential
    return DefaultAzureCredential()


@dataclass
class RecordedRequest:
    """One ARM request as the SDK built it."""

    method: str
    url: str
    body: Any

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "url": self.url, "body": self.body}


class _LocalBody:
    """Stands in for a socket-backed response: there is nothing to close."""

    def close(self) -> None:
        pass


class RecordingTransport(HttpTransport):
    """A transport that records requests and answers them without any network.

    PUT/POST get ``200`` echoing the request body, so the SDK deserializes its own model;
    GET gets ``404`` (a dry run knows of no existing resources).
    """

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []

    def send(self, request: Any, **kwargs: Any) -> Any:
        content = request.content
        if isinstance(content, (bytes, bytearray)):
            content = content.decode()
        body = json.loads(content) if content else None
        self.requests.append(RecordedRequest(request.method, request.url, body))
        if request.method == "GET":
            status, payload = 404, {"error": {"code": "ResourceNotFound",
                                              "message": "dry run: nothing is read"}}
        else:
            status, payload = 200, body if body is not None else {}
        raw = json.dumps(payload).encode()
        response = HttpResponseImpl(
            request=request, internal_response=_LocalBody(), status_code=status, reason="OK",
            content_type="application/json", headers={"Content-Type": "application/json"},
            stream_download_generator=lambda *a, **k: iter([raw]),
        )
        response._content = raw  # noqa: SLF001 - the body is already complete
        return response

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> "RecordingTransport":
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def poll_seconds() -> float:
    """AZLIFT_ARM_POLL_SECONDS, else 5 s (ARM's Retry-After wins when it sends one)."""
    text = os.environ.get(POLL_SECONDS_ENV, "")
    try:
        value = float(text) if text else DEFAULT_POLL_SECONDS
    except ValueError:
        raise UsageError(f"{POLL_SECONDS_ENV} must be a number of seconds, found {text!r}") from None
    return max(value, 0.0)


def compute_client(target: ArmTarget, *, recorder: RecordingTransport | None = None,
                   credential: Any = None, on_status: Callable[[int], None] | None = None) -> Any:
    """A ComputeManagementClient for ``target``; requests go to ``recorder`` when given;
    ``on_status`` hears the status of every answer, retried attempts included."""
    from azure.mgmt.compute import ComputeManagementClient

    kwargs: dict[str, Any] = {"cloud_setting": CLOUDS[target.cloud]}
    if target.arm_endpoint:
        kwargs["base_url"] = target.arm_endpoint
        kwargs["credential_scopes"] = [f"{target.arm_endpoint}/.default"]
    kwargs["polling_interval"] = poll_seconds()
    # An ARM endpoint that refuses or black-holes connections fails in seconds, not after
    # azure-core's default three connect retries of up to 300 s each.
    kwargs["retry_connect"] = ARM_CONNECT_RETRIES
    kwargs["connection_timeout"] = ARM_CONNECT_TIMEOUT_S
    ca_bundle = os.environ.get(CA_BUNDLE_ENV)
    if ca_bundle:
        kwargs["connection_verify"] = ca_bundle
    if recorder is not None:
        kwargs["transport"] = recorder
        kwargs["retry_total"] = 0
    if on_status is not None:  # azure-core's hook runs after its retry policy: every attempt
        kwargs["raw_response_hook"] = lambda response: on_status(
            response.http_response.status_code)
    if credential is None:
        credential = credential_from_environment(dry_run=recorder is not None)
    return ComputeManagementClient(credential, target.subscription, **kwargs)


def arm_error_text(error: HttpResponseError) -> tuple[str, str]:
    """ARM's own error code and message from an SDK exception."""
    detail = getattr(error, "error", None)
    code = getattr(detail, "code", None) or getattr(error, "status_code", None) or "Unknown"
    message = getattr(detail, "message", None) or error.message or str(error)
    return str(code), " ".join(str(message).split())


@contextmanager
def arm_errors(action: str) -> Iterator[None]:
    """Turn azure-core exceptions raised while doing ``action`` into the package's errors."""
    no_credential = (f"no Azure credential while {action}: sign in with `az login`, "
                     f"or set {TOKEN_ENV}")
    try:
        yield
    except ClientAuthenticationError as error:
        if error.response is None:  # raised by the credential itself: nobody is signed in
            raise AuthError(no_credential) from error
        code, message = arm_error_text(error)
        raise AuthError(f"ARM refused the credential while {action}: {code}: {message}",
                        service_code=code, status=error.status_code) from error
    except HttpResponseError as error:
        code, message = arm_error_text(error)
        raise ArmError(f"ARM error {code}: {message}", service_code=code,
                       status=error.status_code) from error
    except (ServiceRequestError, ServiceResponseError) as error:
        raise UnreachableError(f"ARM could not be reached while {action}: {error}") from error
    except Exception as error:  # azure-identity raises its own when no sign-in is found
        if type(error).__name__ == "CredentialUnavailableError":
            raise AuthError(no_credential) from error
        raise


def read_or_none(action: str, read: Callable[[], T]) -> T | None:
    """``read()`` (an SDK get), or None when ARM answers that the resource does not exist."""
    with arm_errors(action):
        try:
            return read()
        except ResourceNotFoundError:
            return None


@dataclass(frozen=True)
class ResourceId:
    """A managed disk's resource id, split into the parts the SDK calls take."""

    subscription: str
    resource_group: str
    name: str

    @classmethod
    def parse_disk(cls, resource_id: str) -> "ResourceId":
        """Split /subscriptions/S/resourceGroups/RG/providers/Microsoft.Compute/disks/NAME."""
        parts = resource_id.strip("/").split("/")
        lowered = [part.lower() for part in parts]
        if (len(parts) != 8 or lowered[0] != "subscriptions" or lowered[2] != "resourcegroups"
                or lowered[4] != "providers" or lowered[5] != "microsoft.compute"
                or lowered[6] != "disks" or not all(parts)):
            raise UsageError("expected a disk resource id like /subscriptions/SUB/resourceGroups/"
                             f"RG/providers/Microsoft.Compute/disks/NAME, found {resource_id!r}")
        return cls(subscription=parts[1], resource_group=parts[3], name=parts[7])

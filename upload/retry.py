"""How hard a request tries: retry limits, backoff and timeouts, shared by both paths."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

# The first requests to an endpoint: one retry, connect within 4 s, answer within 10 s,
# so an unreachable endpoint fails in well under 20 s (two attempts and one backoff).
FIRST_CONTACT_RETRIES = 1
FIRST_CONTACT_CONNECT_S = 4.0
FIRST_CONTACT_READ_S = 10.0


@dataclass(frozen=True)
class RetrySettings:
    """The storage SDK's ExponentialRetry knobs (backoff with jitter, per-kind limits) plus
    timeouts; both request paths (rest.py and the SDK) honour them the same way."""

    total: int = 6
    initial_backoff: float = 1.0
    increment_base: float = 2.0
    jitter: float = 0.5
    connection_timeout: float = 20.0
    read_timeout: float = 120.0
    # the SDK's per-kind limits (its defaults): refused connects, lost answers, 5xx/408
    connect: int = 3
    read: int = 3
    status: int = 3

    def first_contact(self) -> dict[str, Any]:
        """Per-call options for the requests that first reach the service (exists,
        properties, create): an endpoint that is down, refuses or black-holes connections
        fails in seconds (one retry, short timeouts) instead of after minutes of backoff.
        Put Page keeps the full policy: a service that answered once is worth waiting for."""
        return {"retry_connect": FIRST_CONTACT_RETRIES, "retry_read": FIRST_CONTACT_RETRIES,
                "connection_timeout": min(self.connection_timeout, FIRST_CONTACT_CONNECT_S),
                "read_timeout": min(self.read_timeout, FIRST_CONTACT_READ_S)}

    def first_contact_settings(self) -> "RetrySettings":
        """The same limits as settings, for rest.py's client."""
        return replace(self, connect=FIRST_CONTACT_RETRIES, read=FIRST_CONTACT_RETRIES,
                       connection_timeout=min(self.connection_timeout, FIRST_CONTACT_CONNECT_S),
                       read_timeout=min(self.read_timeout, FIRST_CONTACT_READ_S))

    def policy(self) -> Any:
        """The SDK's ExponentialRetry with these knobs (for the SDK path)."""
        from azure.storage.blob import ExponentialRetry

        return ExponentialRetry(initial_backoff=self.initial_backoff,  # type: ignore[arg-type]
                                increment_base=self.increment_base,  # type: ignore[arg-type]
                                retry_total=self.total, retry_connect=self.connect,
                                retry_read=self.read, retry_status=self.status,
                                random_jitter_range=self.jitter)  # type: ignore[arg-type]

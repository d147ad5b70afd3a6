"""Signed Blob REST requests on kept-alive connections: the few requests an upload repeats.

The storage SDK sends each Put Page through a pipeline of a dozen policies and
requests/urllib3, about 2.5 ms of one core per request before a byte of the body moves,
and its import costs about half a second. Here a request is one exchange (http11.py) on a
connection each thread keeps, signed the way the SDK signs (Shared Key, a SAS in the
query, or a bearer token from the credential), retried with the SDK's exponential policy
(same counters, same backoff formula, same retryable answers) and mapped to this package's
errors with the service's error code. Only what an upload repeats lives here; everything
else (container creation, page-range listing) stays with the SDK.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlencode, urlsplit

from .errors import (
    AuthError,
    ServiceError,
    TransientServiceError,
    UnreachableError,
    UploadError,
)
from .http11 import BodyWithdrawn, Connection, ProtocolError, Response
from .retry import RetrySettings

if TYPE_CHECKING:
    import ssl

# The REST version every request names: one the SDK supports (a test checks), recent
# enough for x-ms-content-crc64 on Put Page (2019-02-02 on).
API_VERSION = "2024-08-04"
STORAGE_SCOPE = "https://storage.azure.com/.default"
TOKEN_REFRESH_MARGIN_S = 300  # fetch a new token this long before the old one expires
# Headers whose values Shared Key signs by position (the SDK's list and order).
SIGNED_STANDARD_HEADERS = ("content-encoding", "content-language", "content-length",
                           "content-md5", "content-type", "date", "if-modified-since",
                           "if-match", "if-none-match", "if-unmodified-since", "range")


@dataclass(frozen=True)
class SentRequest:
    """What one attempt put on the wire, for a request hook (the SDK's raw_request_hook
    shape: ``hook(request)`` reads ``request.http_request.method/url/headers/body``). A
    body read from a mapped source is an http11.GuardedBody: ``bytes(body)`` copies it."""

    method: str
    url: str
    headers: dict[str, str]
    body: Any = None

    @property
    def http_request(self) -> "SentRequest":
        # a property, not a field pointing at itself: a cycle would keep every body (up
        # to 4 MiB) alive until the garbage collector ran
        return self


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(seconds: float | None = None) -> str:
    """RFC 7231's IMF-fixdate of ``seconds`` (now by default), as x-ms-date wants it:
    email.utils.formatdate(usegmt=True) without loading the email package."""
    t = time.gmtime(seconds)
    return (f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")


class SigningError(Exception):
    """The credential cannot sign a request (a malformed key, no token to be had)."""


class TransportError(Exception):
    """A request that got no answer: ``connect`` True when it never reached the server."""

    def __init__(self, message: str, *, connect: bool) -> None:
        super().__init__(message)
        self.connect = connect


# -- signing --------------------------------------------------------------------------
class SharedKey:
    """Shared Key authorization, as the SDK's SharedKeyCredentialPolicy computes it."""

    def __init__(self, account: str, key: str) -> None:
        self.account = account
        try:
            self._key: bytes | None = base64.b64decode(key, validate=True)
            self._problem = ""
        except (ValueError, TypeError) as error:
            self._key, self._problem = None, f"the account key is not valid base64: {error}"

    def sign(self, method: str, path: str, query: Mapping[str, str],
             headers: dict[str, str]) -> None:
        if self._key is None:
            raise SigningError(self._problem)
        lower = {name.lower(): value for name, value in headers.items() if value}
        if lower.get("content-length") == "0":
            del lower["content-length"]
        standard = "\n".join(lower.get(name, "") for name in SIGNED_STANDARD_HEADERS)
        canonical = "".join(f"{name}:{lower[name]}\n" for name in sorted(lower)
                            if name.startswith("x-ms-"))
        resource = f"/{self.account}{path}" + "".join(
            f"\n{name.lower()}:{unquote(query[name])}" for name in sorted(query))
        text = f"{method}\n{standard}\n{canonical}{resource}"
        digest = hmac.new(self._key, text.encode("utf-8"), hashlib.sha256).digest()
        headers["Authorization"] = f"SharedKey {self.account}:{base64.b64encode(digest).decode()}"


class BearerToken:
    """A token credential's storage token, fetched once and renewed before it expires."""

    def __init__(self, credential: Any) -> None:
        self._credential = credential
        self._lock = threading.Lock()
        self._token = ""
        self._expires = 0.0

    def sign(self, method: str, path: str, query: Mapping[str, str],
             headers: dict[str, str]) -> None:
        if time.time() > self._expires - TOKEN_REFRESH_MARGIN_S:
            with self._lock:
                if time.time() > self._expires - TOKEN_REFRESH_MARGIN_S:
                    try:
                        token = self._credential.get_token(STORAGE_SCOPE)
                    except Exception as error:  # noqa: BLE001 - any credential failure
                        raise SigningError(_first_line(str(error))
                                           or type(error).__name__) from error
                    self._token, self._expires = token.token, float(token.expires_on)
        headers["Authorization"] = f"Bearer {self._token}"

    def renew(self) -> None:
        """Forget the token (the service refused it): the next request fetches a new one."""
        with self._lock:
            self._expires = 0.0


class Unsigned:
    """A SAS in the URL's query authorizes the request; nothing to add."""

    def sign(self, method: str, path: str, query: Mapping[str, str],
             headers: dict[str, str]) -> None:
        return None


def signer_for(credential: Any) -> tuple[Any, str] | None:
    """(signer, extra SAS query) for the credentials azlift hands out, None for others
    (they keep the SDK path)."""
    if credential is None:
        return Unsigned(), ""
    if isinstance(credential, Mapping) and {"account_name", "account_key"} <= set(credential):
        return SharedKey(credential["account_name"], credential["account_key"]), ""
    if isinstance(getattr(credential, "signature", None), str):  # AzureSasCredential
        return Unsigned(), credential.signature.lstrip("?")
    if callable(getattr(credential, "get_token", None)):
        return BearerToken(credential), ""
    return None


# -- the client -----------------------------------------------------------------------
def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else ""


def _service_message(body: bytes) -> str:
    start, end = body.find(b"<Message>"), body.find(b"</Message>")
    if 0 <= start < end:
        return _first_line(body[start + 9:end].decode("utf-8", "replace"))
    return ""


def is_retryable(status: int) -> bool:
    """The SDK's rule: 408 and 5xx other than 501/505 are worth another attempt."""
    return status == 408 or (status >= 500 and status not in (501, 505))


class BlobRest:
    """Requests to one blob URL; each thread keeps its own connection to the host."""

    def __init__(self, blob_url: str, credential: Any, *, retry: RetrySettings,
                 ca_bundle: str | None = None,
                 request_hook: Callable[[Any], None] | None = None) -> None:
        chosen = signer_for(credential)
        if chosen is None:
            raise ValueError("credential kind not handled here")
        self._signer, extra_sas = chosen
        parts = urlsplit(blob_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("not an http(s) URL")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._netloc = parts.netloc.rsplit("@", 1)[-1]
        self.path = quote(unquote(parts.path), safe="/~")
        sas = "&".join(piece for piece in (parts.query, extra_sas) if piece)
        self._sas = sas
        self.retry = retry
        self._ca_bundle = ca_bundle
        self._ssl: ssl.SSLContext | None = None
        self._hook = request_hook
        self._local = threading.local()
        # every connection any thread opened, so that close() ends them all: a thread's
        # local connection would otherwise stay open until the garbage collector found it,
        # and a run of a thousand blobs would pile up idle sockets on the service
        self._open: set[Connection] = set()
        self._open_lock = threading.Lock()
        self._random = random.Random()

    # -- connections ---------------------------------------------------------------
    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            cafile = self._ca_bundle
            if cafile is None:
                try:
                    import certifi  # requests' bundle: the same roots the SDK trusts
                    cafile = certifi.where()
                except ImportError:
                    cafile = None
            import ssl  # here: a plain-HTTP endpoint (the emulator) never needs it

            self._ssl = ssl.create_default_context(cafile=cafile)
        return self._ssl

    def _connection(self, connect_s: float) -> Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and conn.sock is not None and not conn.dropped():
            return conn
        if conn is not None:
            self._forget(conn)
        conn = Connection(self._host, self._port, connect_timeout=connect_s,
                          context=self._context() if self._https else None)
        self._local.conn = conn
        with self._open_lock:
            self._open.add(conn)
        return conn

    def _forget(self, conn: Connection) -> None:
        conn.close()
        with self._open_lock:
            self._open.discard(conn)

    def _discard(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._forget(conn)
            self._local.conn = None

    def close(self) -> None:
        """Close every connection of every thread (call once no request is in flight)."""
        with self._open_lock:
            opened, self._open = self._open, set()
        for conn in opened:
            conn.close()
        self._local = threading.local()

    # -- one request, retried --------------------------------------------------------
    def request(self, method: str, query: Mapping[str, str], headers: dict[str, str],
                body: Any = None, *, policy: RetrySettings | None = None,
                ok: tuple[int, ...] = (200, 201, 202), where: str = "") -> tuple[Response, int]:
        """Send with retries under ``policy`` (default: this client's); return (the
        accepted answer, attempts made). An answer whose status is in ``ok`` is returned;
        any other raises this package's error once the retry policy gave up on it."""
        policy = policy or self.retry
        counters = {"total": policy.total, "connect": policy.connect, "read": policy.read,
                    "status": policy.status}
        connect_s, read_s = policy.connection_timeout, policy.read_timeout
        query_text = urlencode(query)
        target = self.path + "?" + "&".join(p for p in (query_text, self._sas) if p) \
            if query_text or self._sas else self.path
        count = 0
        renewed = False
        while True:
            count += 1
            sent = dict(headers)
            sent["x-ms-version"] = API_VERSION
            sent["x-ms-date"] = http_date()
            sent["Content-Length"] = str(len(body) if body is not None else 0)
            try:
                self._signer.sign(method, self.path, query, sent)
            except SigningError as error:
                raise AuthError(f"cannot sign requests to {where} with this credential: "
                                f"{error}") from error
            if self._hook is not None:
                self._hook(SentRequest(method, f"{'https' if self._https else 'http'}://"
                                       f"{self._netloc}{target}", sent, body))
            try:
                response = self._exchange(method, target, sent, body, connect_s, read_s)
            except TransportError as error:
                kind = "connect" if error.connect else "read"
                counters["total"] -= 1
                counters[kind] -= 1
                if _exhausted(counters):
                    if error.connect:
                        raise _attempts(UnreachableError(f"cannot reach {where}: {error}"),
                                        count) from error
                    raise _attempts(TransientServiceError(
                        f"connection to {where} failed: {error}"), count) from error
                self._backoff(policy, count)
                continue
            if response.status in ok:
                return response, count
            if (response.status == 401 and isinstance(self._signer, BearerToken)
                    and not renewed):
                renewed = True  # an expired or revoked token: one more try with a new one
                self._signer.renew()
                continue
            if is_retryable(response.status):
                counters["total"] -= 1
                counters["status"] -= 1
                if not _exhausted(counters):
                    self._backoff(policy, count)
                    continue
            raise _attempts(status_error(response, where), count)

    def _backoff(self, policy: RetrySettings, retries: int) -> None:
        """Sleep as the SDK's ExponentialRetry does before retry number ``retries``."""
        backoff = policy.initial_backoff + (0 if retries == 0
                                            else policy.increment_base ** retries)
        low = backoff - policy.jitter if backoff > policy.jitter else 0
        delay = self._random.uniform(low, backoff + policy.jitter)
        if delay > 0:
            time.sleep(delay)

    def _exchange(self, method: str, target: str, headers: dict[str, str], body: Any,
                  connect_s: float, read_s: float) -> Response:
        conn = self._connection(connect_s)
        if conn.sock is None:
            try:
                conn.connect()
            except OSError as error:  # ssl.SSLError included
                self._discard()
                raise TransportError(_reason(error), connect=True) from error
        try:
            answer = conn.exchange(method, target, [("Host", self._netloc), *headers.items()],
                                   body, read_s)
        except BodyWithdrawn:
            self._discard()  # abandoned part way: the caller sends it again, from elsewhere
            raise
        except (OSError, ProtocolError) as error:
            self._discard()
            raise TransportError(_reason(error), connect=False) from error
        if answer.will_close:
            self._discard()
        return answer


def _exhausted(counters: dict[str, int]) -> bool:
    """The SDK's is_exhausted: counters at zero are ignored, any below zero ends it."""
    live = [value for value in counters.values() if value]
    return bool(live) and min(live) < 0


def _reason(error: BaseException) -> str:
    text = _first_line(str(error)) or type(error).__name__
    return f"{type(error).__name__}: {text}" if type(error).__name__ not in text else text


def _attempts(error: UploadError, count: int) -> UploadError:
    error.attempts = count  # type: ignore[attr-defined]
    return error


def status_error(response: Response, where: str) -> UploadError:
    """An error answer as this package's error, worded as translate_error words the SDK's."""
    status = response.status
    code = response.headers.get("x-ms-error-code")
    detail = _service_message(response.body) or _first_line(response.reason)
    text = f"{where}: HTTP {status}" + (f" {code}" if code else "") + f": {detail}"
    if status in (401, 403):
        return AuthError(f"storage refused the credential for {text}", service_code=code,
                         status=status)
    if status >= 500 or status in (408, 429):
        return TransientServiceError(text, service_code=code, status=status)
    return ServiceError(text, service_code=code, status=status)

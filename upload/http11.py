"""One kept-alive HTTP/1.1 connection, lean: a request in one system call, the answer
parsed without the email package.

http.client parses every answer's headers with the email package and sends a request's
headers and a memoryview body in two system calls; on a Put Page of a few hundred KiB
that was about half of the client's CPU per request. This does only what the Blob
requests need: a request with a body of known length, an answer read by Content-Length,
chunked or to the end of the connection, a HEAD answer without a body. Limits on what it
accepts are http.client's (line length, header count), so a broken or hostile server
cannot make it hold unbounded memory.
"""
from __future__ import annotations

import errno
import select
import socket
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import ssl  # loaded by rest.py for https endpoints only

MAX_LINE = 65536  # http.client's _MAXLINE
MAX_HEADERS = 100  # http.client's _MAXHEADERS
JOIN_LIMIT = 64 * 1024  # a TLS body up to this size travels in the headers' write
# The longest answer accepted: a Blob answer is an error document or a ranged read of at
# most 4 MiB; a length past this is refused before anything is allocated for it.
MAX_BODY = 64 * 1024 * 1024
# A guarded body goes through TLS in pieces of this size, each copied under the guard into
# a private buffer that stays in the cache while it is encrypted: a guard lasts one copy,
# however slow the link (see GuardedBody).
GUARDED_PIECE = 256 * 1024


class ProtocolError(Exception):
    """The server's answer is not HTTP/1.x this client can read."""


class BodyWithdrawn(Exception):
    """A guarded body's memory may no longer be read: the request was abandoned part way
    (its connection is unusable) and the body has to come from somewhere else."""


class GuardedBody:
    """A request body in memory that may be withdrawn (a mapped file), readable in user
    space only inside ``guard()``, which raises BodyWithdrawn once it is not.

    A plain socket sends it with sendmsg: the kernel reads the memory, and memory gone
    meanwhile fails that call (EFAULT) instead of the process. TLS encrypts in user space:
    each piece is copied out under a guard first. ``bytes()`` of it is a guarded copy too.
    """

    __slots__ = ("view", "guard")

    def __init__(self, view: memoryview,
                 guard: Callable[[], AbstractContextManager[Any]]) -> None:
        self.view = view
        self.guard = guard

    def __len__(self) -> int:
        return len(self.view)

    def __bytes__(self) -> bytes:
        with self.guard():
            return bytes(self.view)


@dataclass
class Response:
    """One answer: headers by lower-cased name (repeats joined with ", ") and as sent."""

    status: int
    reason: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    raw_headers: list[tuple[str, str]] = field(default_factory=list)  # as sent
    will_close: bool = False  # the server ends the connection after this answer


class Connection:
    """A socket to one host:port (TLS when ``context`` is given), opened on first use."""

    def __init__(self, host: str, port: int, *, context: ssl.SSLContext | None = None,
                 connect_timeout: float | None = None) -> None:
        self.host, self.port = host, port
        self._context = context
        self._connect_timeout = connect_timeout
        self.sock: socket.socket | None = None
        self._reader: Any = None

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self._connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._context is not None:
                sock = self._context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self._reader = sock.makefile("rb")

    def close(self) -> None:
        sock, reader, self.sock, self._reader = self.sock, self._reader, None, None
        if reader is not None:
            reader.close()
        if sock is not None:
            sock.close()

    def dropped(self) -> bool:
        """True when an idle connection was closed by the server (or has stray bytes):
        urllib3's test, made before a kept-alive connection is used again. poll where the
        system has it: select refuses descriptors past 1023, which a process running many
        uploads at once reaches, and every request would then open a new connection."""
        if self.sock is None:
            return True
        try:
            if hasattr(select, "poll"):
                poller = select.poll()
                poller.register(self.sock, select.POLLIN)
                return bool(poller.poll(0))
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def exchange(self, method: str, target: str, headers: list[tuple[str, str]],
                 body: bytes | memoryview | GuardedBody | None,
                 timeout: float | None) -> Response:
        """Send one request and read its answer; the caller discards the connection on
        any exception (its state is then unknown)."""
        if self.sock is None:
            self.connect()
        assert self.sock is not None
        self.sock.settimeout(timeout)
        head = "".join([f"{method} {target} HTTP/1.1\r\n",
                        *(f"{name}: {value}\r\n" for name, value in headers), "\r\n"])
        self._send(head.encode("latin-1"), body)
        return self._answer(method)

    def _send(self, head: bytes, body: bytes | memoryview | GuardedBody | None) -> None:
        sock = self.sock
        assert sock is not None
        if isinstance(body, GuardedBody):
            _send_guarded(sock, head, body, gather=self._context is None
                          and hasattr(sock, "sendmsg"))
        elif not body:
            sock.sendall(head)
        elif self._context is not None or not hasattr(sock, "sendmsg"):
            # no sendmsg over TLS, nor on Windows
            if len(body) <= JOIN_LIMIT:
                sock.sendall(head + bytes(body))
            else:
                sock.sendall(head)
                sock.sendall(body)
        else:
            _send_gathered(sock, [memoryview(head), memoryview(body).cast("B")])

    def _answer(self, method: str) -> Response:
        while True:
            version, status, reason = self._status_line()
            headers = self._headers()
            if status == 101:
                raise ProtocolError("the server switched protocols, which no Blob request "
                                    "asks for")
            if 100 <= status < 200:
                continue  # an interim answer (100 Continue): the real one follows
            break
        lowered: dict[str, str] = {}
        for name, value in headers:
            key = name.lower()
            lowered[key] = f"{lowered[key]}, {value}" if key in lowered else value
        tokens = {token.strip().lower()
                  for token in lowered.get("connection", "").split(",")}
        will_close = "close" in tokens or (version == "HTTP/1.0" and "keep-alive" not in tokens)
        if method == "HEAD" or status in (204, 304):
            body = b""
        elif "chunked" in lowered.get("transfer-encoding", "").lower():
            body = self._chunked()
        elif "content-length" in lowered:
            body = self._exactly(_length(lowered["content-length"]))
        else:  # no length: the body runs to the end of the connection
            body = self._reader.read(MAX_BODY + 1)
            if len(body) > MAX_BODY:
                raise ProtocolError(f"the server sent a body of more than the {MAX_BODY} "
                                    "bytes any Blob answer holds")
            will_close = True
        return Response(status, reason, lowered, body, headers, will_close)

    def _line(self) -> bytes:
        line = self._reader.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise ProtocolError("the server sent a line longer than 64 KiB")
        return line

    def _status_line(self) -> tuple[str, int, str]:
        line = self._line()
        if not line:
            raise ProtocolError("the server closed the connection without answering")
        parts = line.decode("latin-1").rstrip("\r\n").split(None, 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not _is_number(parts[1]) \
                or len(parts[1]) != 3:
            raise ProtocolError(f"not an HTTP/1.x status line: {line[:80]!r}")
        return parts[0], int(parts[1]), parts[2] if len(parts) > 2 else ""

    def _headers(self) -> list[tuple[str, str]]:
        headers: list[tuple[str, str]] = []
        while True:
            line = self._line()
            if line in (b"\r\n", b"\n"):
                return headers
            if not line:
                raise ProtocolError("the connection closed inside the answer's headers")
            if len(headers) >= MAX_HEADERS:
                raise ProtocolError(f"the server sent more than {MAX_HEADERS} headers")
            text = line.decode("latin-1").rstrip("\r\n")
            if text[:1] in (" ", "\t") and headers:  # an obsolete folded continuation
                name, value = headers[-1]
                headers[-1] = (name, f"{value} {text.strip()}")
                continue
            name, colon, value = text.partition(":")
            if not colon or not name or name != name.strip():
                raise ProtocolError(f"not a header line: {line[:80]!r}")
            headers.append((name, value.strip()))

    def _exactly(self, length: int, received: int = 0) -> bytes:
        if received + length > MAX_BODY:
            raise ProtocolError(f"the server announced a body of {received + length} bytes, "
                                f"more than the {MAX_BODY} any Blob answer holds")
        data = self._reader.read(length) if length else b""
        if len(data) != length:
            raise ProtocolError(f"the connection closed after {len(data)} of the "
                                f"{length} body bytes announced")
        return data

    def _chunked(self) -> bytes:
        pieces: list[bytes] = []
        received = 0
        while True:
            line = self._line()
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ProtocolError(f"not a chunk size: {line[:80]!r}") from None
            if size < 0:
                raise ProtocolError(f"not a chunk size: {line[:80]!r}")
            if size == 0:
                self._headers()  # trailers, ended by an empty line
                return b"".join(pieces)
            pieces.append(self._exactly(size, received))
            received += size
            if self._line() not in (b"\r\n", b"\n"):
                raise ProtocolError("a chunk is not followed by its line end")


def _length(text: str) -> int:
    values = {value.strip() for value in text.split(",")}
    if len(values) != 1 or not _is_number(next(iter(values))):
        raise ProtocolError(f"not a Content-Length: {text[:40]!r}")
    return int(values.pop())


def _is_number(text: str) -> bool:
    """ASCII digits only: str.isdigit also takes "²", which int() refuses."""
    return text.isascii() and text.isdigit()


def _send_guarded(sock: socket.socket, head: bytes, body: GuardedBody, *,
                  gather: bool) -> None:
    """Send ``head`` and a guarded body: read by the kernel where it can (gather), else
    piece by piece, each copied under the body's guard. Memory withdrawn on the way is
    BodyWithdrawn."""
    if gather:
        try:
            _send_gathered(sock, [memoryview(head), body.view])
        except OSError as error:
            if error.errno == errno.EFAULT:
                raise BodyWithdrawn("the body's memory went away while it was sent") \
                    from error
            raise
        return
    sock.sendall(head)
    view = body.view
    piece = bytearray(min(GUARDED_PIECE, len(view)))
    for start in range(0, len(view), GUARDED_PIECE):
        end = min(start + GUARDED_PIECE, len(view))
        with body.guard():
            piece[:end - start] = view[start:end]
        sock.sendall(memoryview(piece)[:end - start])


def _send_gathered(sock: socket.socket, buffers: list[memoryview]) -> None:
    """sendall over several buffers in as few system calls as the kernel allows, none
    copied in user space."""
    while buffers:
        sent = sock.sendmsg(buffers)
        if sent <= 0:
            raise OSError("the connection took no bytes")
        while buffers and sent >= len(buffers[0]):
            sent -= len(buffers[0])
            buffers.pop(0)
        if buffers and sent:
            buffers[0] = buffers[0][sent:]

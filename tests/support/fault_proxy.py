"""An HTTP proxy in front of Azurite that misbehaves like a congested storage front end.

On a share of Put Page requests it either answers ``503 ServerBusy`` (after reading the
body, as Azure does) or resets the connection half-way through the request body (RST, no
response). Both are bounded by totals so an upload always finishes. Every request is
forwarded on a fresh upstream connection and answered with ``Connection: close``, which
keeps the proxy small: no response framing to parse.

It counts what it saw: Put Page requests and the body bytes of those forwarded. With
``put_page_delay_s`` it also slows every forwarded Put Page, so a test can interrupt an
upload half-way. With ``on_request`` a test sees each request twice, when it has been
received whole ("received", not yet forwarded) and when the upstream has answered it
("answered", the answer not yet passed on): the two instants a client can die at. When
the hook returns False the request is dropped there (not forwarded, or not answered); when
it returns bytes at "received", those bytes are the answer (a whole HTTP response: e.g. the
403 of a SAS that expired mid-upload) and the request is not forwarded.
With ``max_concurrent_put_pages`` N it behaves like an account over its request limit: a
Put Page arriving while N are already in flight gets ``503 ServerBusy``;
``stats.peak_put_pages_in_flight`` is the most it ever had at once (rejected ones included).
"""
from __future__ import annotations

import random
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .tools import free_port

SERVER_BUSY_BODY = (b'<?xml version="1.0" encoding="utf-8"?><Error><Code>ServerBusy</Code>'
                    b"<Message>The server is busy (injected by the test proxy).</Message>"
                    b"</Error>")


@dataclass
class FaultStats:
    put_pages_seen: int = 0
    put_pages_forwarded: int = 0
    put_page_bytes_forwarded: int = 0
    busy_injected: int = 0
    resets_injected: int = 0
    requests: int = 0
    put_pages_in_flight: int = 0
    peak_put_pages_in_flight: int = 0
    busy_over_limit: int = 0


@dataclass
class FaultProxy:
    """Listen on 127.0.0.1:``port`` and forward to ``upstream`` (host, port)."""

    upstream: tuple[str, int]
    busy_share: float = 0.0
    reset_share: float = 0.0
    max_busy: int = 0
    max_resets: int = 0
    seed: int = 1
    put_page_delay_s: float = 0.0  # slow every forwarded Put Page (to interrupt mid-way)
    # on_request(moment, index, method, target) -> False to drop the request there, or
    # (at "received") the bytes of an answer to send instead of forwarding it;
    # moment "received" or "answered"; index counts requests from 1 in arrival order.
    on_request: Callable[[str, int, str, str], bool | bytes | None] | None = None
    max_concurrent_put_pages: int | None = None  # 503 ServerBusy above this many at once
    port: int = field(default_factory=free_port)
    stats: FaultStats = field(default_factory=FaultStats)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> "FaultProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        try:
            self._server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        self._server.close()
        self._thread.join(timeout=5)

    def url_for(self, upstream_url: str) -> str:
        """``upstream_url`` with the upstream's host:port replaced by the proxy's."""
        host, port = self.upstream
        return upstream_url.replace(f"{host}:{port}", f"127.0.0.1:{self.port}", 1)

    # -- serving ---------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client:
            try:
                head, rest = _read_head(client)
            except (OSError, ValueError):
                return
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            method, target = request_line.split(" ")[:2]
            length = _content_length(head)
            is_put_page = (method == "PUT" and "comp=page" in target
                           and b"x-ms-page-write: update" in head.lower())
            fault, index = self._choose_fault(is_put_page)
            try:
                self._serve_request(client, head, rest, length, method, target, is_put_page,
                                    fault, index)
            finally:
                if is_put_page:
                    with self._lock:
                        self.stats.put_pages_in_flight -= 1

    def _serve_request(self, client: socket.socket, head: bytes, rest: bytes, length: int,
                       method: str, target: str, is_put_page: bool, fault: str | None,
                       index: int) -> None:
        if fault == "reset":
            _read_exactly(client, rest, max(0, length // 2 - len(rest)))
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        body = _read_exactly(client, rest, length - len(rest))
        if fault == "busy":
            client.sendall(b"HTTP/1.1 503 The server is busy.\r\n"
                           b"x-ms-error-code: ServerBusy\r\nContent-Type: application/xml\r\n"
                           + f"Content-Length: {len(SERVER_BUSY_BODY)}\r\n".encode()
                           + b"Connection: close\r\n\r\n" + SERVER_BUSY_BODY)
            return
        if is_put_page:
            if self.put_page_delay_s:
                time.sleep(self.put_page_delay_s)
            with self._lock:
                self.stats.put_pages_forwarded += 1
                self.stats.put_page_bytes_forwarded += length
        hook = self.on_request
        verdict = None if hook is None else hook("received", index, method, target)
        if verdict is False:
            return
        if isinstance(verdict, bytes):
            client.sendall(verdict)
            return
        answered = None if hook is None else (
            lambda: hook("answered", index, method, target) is not False)
        self._forward(client, _with_connection_close(head), body, answered)

    def _choose_fault(self, is_put_page: bool) -> tuple[str | None, int]:
        """The fault to inject (None: forward it) and the request's arrival number."""
        with self._lock:
            self.stats.requests += 1
            index = self.stats.requests
            if not is_put_page:
                return None, index
            self.stats.put_pages_seen += 1
            self.stats.put_pages_in_flight += 1
            self.stats.peak_put_pages_in_flight = max(self.stats.peak_put_pages_in_flight,
                                                      self.stats.put_pages_in_flight)
            if (self.max_concurrent_put_pages is not None
                    and self.stats.put_pages_in_flight > self.max_concurrent_put_pages):
                self.stats.busy_over_limit += 1
                return "busy", index
            draw = self._random.random()
            if draw < self.reset_share and self.stats.resets_injected < self.max_resets:
                self.stats.resets_injected += 1
                return "reset", index
            if draw < self.reset_share + self.busy_share and \
                    self.stats.busy_injected < self.max_busy:
                self.stats.busy_injected += 1
                return "busy", index
            return None, index

    def _forward(self, client: socket.socket, head: bytes, body: bytes,
                 answered: Callable[[], bool] | None = None) -> None:
        try:
            with socket.create_connection(self.upstream, timeout=30) as upstream:
                upstream.sendall(head + body)
                response = bytearray()
                while chunk := upstream.recv(1 << 16):
                    response += chunk
        except OSError:
            return
        if answered is not None and not answered():
            return
        end = response.find(b"\r\n\r\n")
        if end >= 0:
            response[:end + 4] = _with_connection_close(bytes(response[:end + 4]))
        try:
            client.sendall(response)
        except OSError:
            pass


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(1 << 16)
        if not chunk:
            raise ValueError("connection closed before a full request head")
        data += chunk
    end = data.index(b"\r\n\r\n") + 4
    return data[:end], data[end:]


def _read_exactly(sock: socket.socket, already: bytes, remaining: int) -> bytes:
    parts = [already]
    while remaining > 0:
        chunk = sock.recv(min(remaining, 1 << 16))
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


def _with_connection_close(head: bytes) -> bytes:
    lines = [line for line in head.rstrip(b"\r\n").split(b"\r\n")
             if not line.lower().startswith(b"connection:")]
    return b"\r\n".join(lines + [b"Connection: close"]) + b"\r\n\r\n"

"""http11.Connection against a real socket server that answers with scripted bytes: what
it sends, how it reads each kind of answer, and a clear ProtocolError for broken ones."""
from __future__ import annotations

import mmap
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from azlift.upload.http11 import (
    GUARDED_PIECE,
    MAX_HEADERS,
    BodyWithdrawn,
    Connection,
    GuardedBody,
    ProtocolError,
)
from azlift.upload.rest import BlobRest
from azlift.upload.retry import RetrySettings
from azlift.upload.errors import TransientServiceError
from tests.support.fault_proxy import _content_length, _read_exactly, _read_head

OK = b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"


class ScriptedServer:
    """Accepts connections; for each request read (headers + Content-Length body) sends
    the next scripted answer. Records every request and counts the connections."""

    def __init__(self, answers: list[bytes], *, delay_read_s: float = 0.0,
                 close_after: bool = False, wrap: Callable[[socket.socket], socket.socket] | None = None) -> None:
        self.answers = list(answers)
        self.requests: list[tuple[bytes, bytes]] = []  # (head, body)
        self.connections = 0
        self._delay = delay_read_s
        self._close_after = close_after
        self._wrap = wrap
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while self.answers:
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            try:
                sock = self._wrap(raw) if self._wrap else raw
            except (OSError, ssl.SSLError):
                raw.close()
                continue
            with sock:
                self._converse(sock)

    def _converse(self, sock: socket.socket) -> None:
        while self.answers:
            try:
                head, start = _read_head(sock)
            except (OSError, ValueError):  # the client closed the connection
                return
            if self._delay:
                time.sleep(self._delay)
            length = _content_length(head)
            body = _read_exactly(sock, start, length - len(start))
            if len(body) < length:  # the client gave up part way: no request, no answer
                return
            self.requests.append((head, body))
            answer = self.answers.pop(0)
            sock.sendall(answer)
            if self._close_after or b"connection: close" in answer.lower() or (
                    b"HTTP/1.0" in answer[:8] and b"keep-alive" not in answer):
                return

    def close(self) -> None:
        self._listener.close()


@contextmanager
def serving(*answers: bytes, **options) -> Iterator[ScriptedServer]:
    server = ScriptedServer(list(answers), **options)
    try:
        yield server
    finally:
        server.close()


def _put(conn: Connection, body: bytes | memoryview = b"x" * 10, method: str = "PUT"):
    return conn.exchange(method, "/acct/c/b?comp=page", [("Host", "h"),
                         ("Content-Length", str(len(body)))], body, 5)


def test_a_body_of_a_memoryview_arrives_whole_after_the_headers() -> None:
    body = memoryview(bytes(range(256)) * 4096)[100:]  # a slice: no copy to send it
    with serving(OK) as server:
        conn = Connection("127.0.0.1", server.port)
        answer = _put(conn, body)
    head, received = server.requests[0]
    assert head.startswith(b"PUT /acct/c/b?comp=page HTTP/1.1\r\nHost: h\r\n")
    assert received == bytes(body)
    assert (answer.status, answer.reason, answer.body, answer.will_close) == (
        201, "Created", b"", False)


def test_a_large_body_to_a_slow_reader_is_sent_in_pieces_and_arrives_whole() -> None:
    body = bytes(range(251)) * (24 * 1024 * 1024 // 251)  # more than the socket buffers
    with serving(OK, delay_read_s=0.3) as server:
        answer = _put(Connection("127.0.0.1", server.port), memoryview(body))
    assert answer.status == 201 and server.requests[0][1] == body


def test_kept_alive_answers_by_length_head_and_204_share_one_connection() -> None:
    with serving(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Ms-Meta-A: 1\r\n\r\nhello",
                 b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
                 b"HTTP/1.1 204 No Content\r\n\r\n", OK) as server:
        conn = Connection("127.0.0.1", server.port)
        first = _put(conn)
        head = _put(conn, b"", method="HEAD")  # no body follows, whatever its length says
        empty = _put(conn)
        last = _put(conn)
    assert first.body == b"hello" and first.headers["x-ms-meta-a"] == "1"
    assert first.raw_headers[1] == ("X-Ms-Meta-A", "1")  # names as received
    assert (head.status, head.body, head.headers["content-length"]) == (200, b"", "1000")
    assert (empty.status, empty.body, last.status) == (204, b"", 201)
    assert server.connections == 1


def test_a_chunked_answer_with_extensions_and_trailers_is_joined() -> None:
    answer = (b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"5;name=value\r\n<Erro\r\n3\r\nr/>\r\n0\r\nX-Trailer: t\r\n\r\n")
    with serving(answer, OK) as server:
        conn = Connection("127.0.0.1", server.port)
        got = _put(conn)
        after = _put(conn)
    assert (got.status, got.body) == (403, b"<Error/>")
    assert after.status == 201 and server.connections == 1


def test_an_interim_100_continue_is_skipped() -> None:
    with serving(b"HTTP/1.1 100 Continue\r\n\r\n" + OK) as server:
        assert _put(Connection("127.0.0.1", server.port)).status == 201


@pytest.mark.parametrize("answer, body", [
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", b"ok"),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", b"ok"),
    (b"HTTP/1.1 500 Oops\r\nConnection: close\r\n\r\nto the end", b"to the end"),
])
def test_answers_that_end_the_connection_say_so(answer: bytes, body: bytes) -> None:
    with serving(answer) as server:
        got = _put(Connection("127.0.0.1", server.port))
    assert got.body == body and got.will_close


def test_http_1_0_keep_alive_stays_open() -> None:
    with serving(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n") \
            as server:
        assert not _put(Connection("127.0.0.1", server.port)).will_close


@pytest.mark.parametrize("answer, message", [
    (b"", "closed the connection without answering"),
    (b"SSH-2.0-OpenSSH_9.6\r\n", "not an HTTP/1.x status line"),
    (b"HTTP/1.1 2000 OK\r\n\r\n", "not an HTTP/1.x status line"),
    (b"HTTP/1.1 2\xb20 OK\r\n\r\n", "not an HTTP/1.x status line"),  # "2²0"
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n", "inside the answer's headers"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "not a header line"),
    (b"HTTP/1.1 200 OK\r\n" + b"X-A: 1\r\n" * (MAX_HEADERS + 1) + b"\r\n", "more than 100"),
    (b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70000 + b"\r\n\r\n", "longer than 64 KiB"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "after 5 of the 10 body bytes"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello", "not a Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "not a Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n", "not a Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\n", "more than the"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"4000001\r\n",
     "more than the"),
    (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", "switched protocols"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "not a chunk size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
     "not followed by its line end"),
])
def test_a_broken_answer_is_a_protocol_error_naming_what_was_wrong(answer: bytes,
                                                                     message: str) -> None:
    with serving(answer, close_after=True) as server:
        with pytest.raises(ProtocolError, match=message):
            _put(Connection("127.0.0.1", server.port))


def test_a_protocol_error_is_retried_like_a_dropped_connection() -> None:
    retry = RetrySettings(total=2, connect=2, read=2, status=2, initial_backoff=0,
                          increment_base=0, jitter=0)
    with serving(b"garbage\r\n", OK) as server:
        rest = BlobRest(f"http://127.0.0.1:{server.port}/acct/c/b.vhd", None, retry=retry)
        response, attempts = rest.request("PUT", {"comp": "page"}, {}, b"data", ok=(201,))
        rest.close()
    assert (response.status, attempts, server.connections) == (201, 2, 2)


def test_a_server_that_keeps_answering_garbage_ends_in_one_line() -> None:
    retry = RetrySettings(total=1, connect=1, read=1, status=1, initial_backoff=0,
                          increment_base=0, jitter=0)
    with serving(b"garbage\r\n", b"garbage\r\n") as server:
        rest = BlobRest(f"http://127.0.0.1:{server.port}/acct/c/b.vhd", None, retry=retry)
        with pytest.raises(TransientServiceError) as caught:
            rest.request("PUT", {"comp": "page"}, {}, b"data", ok=(201,), where="b.vhd")
        rest.close()
    assert "\n" not in str(caught.value)
    assert "connection to b.vhd failed" in str(caught.value)
    assert "not an HTTP/1.x status line" in str(caught.value)


def _tls_wrapper(tmp_path) -> tuple[Callable[[socket.socket], socket.socket], str]:
    from tests.support.tls_ca import self_signed

    cert, key = self_signed(tmp_path)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    return (lambda sock: server_context.wrap_socket(sock, server_side=True)), str(cert)


@pytest.mark.parametrize("size", [100, 1024 * 1024])  # joined to the headers, and not
def test_tls_carries_small_and_large_bodies(tmp_path, size: int) -> None:
    wrap, ca_file = _tls_wrapper(tmp_path)
    body = bytes(range(256)) * (size // 256)
    with serving(OK, wrap=wrap) as server:
        context = ssl.create_default_context(cafile=ca_file)
        conn = Connection("127.0.0.1", server.port, context=context)
        answer = _put(conn, memoryview(body))
        conn.close()
    assert answer.status == 201 and server.requests[0][1] == body


def test_tls_refuses_a_certificate_it_cannot_verify(tmp_path) -> None:
    wrap, _ = _tls_wrapper(tmp_path)
    with serving(OK, wrap=wrap) as server:
        conn = Connection("127.0.0.1", server.port, context=ssl.create_default_context())
        with pytest.raises(ssl.SSLCertVerificationError):
            conn.connect()
    assert conn.sock is None


def test_a_body_running_to_the_close_is_bounded(monkeypatch) -> None:
    monkeypatch.setattr("azlift.upload.http11.MAX_BODY", 1000)
    with serving(b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 1001, close_after=True) as server:
        with pytest.raises(ProtocolError, match="more than the 1000 bytes"):
            _put(Connection("127.0.0.1", server.port))
    with serving(b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 1000, close_after=True) as server:
        assert _put(Connection("127.0.0.1", server.port)).body == b"x" * 1000


class SocketWithoutSendmsg(socket.socket):
    """A socket as Windows has them: no sendmsg."""

    @property
    def sendmsg(self):  # noqa: ANN201
        raise AttributeError("sendmsg")


@pytest.mark.parametrize("size", [100, 1024 * 1024])
def test_without_sendmsg_headers_and_body_go_by_sendall(size: int) -> None:
    body = bytes(range(256)) * (size // 256)
    with serving(OK) as server:
        conn = Connection("127.0.0.1", server.port)
        plain = socket.create_connection(("127.0.0.1", server.port))
        conn.sock = SocketWithoutSendmsg(fileno=plain.detach())
        conn._reader = conn.sock.makefile("rb")
        assert not hasattr(conn.sock, "sendmsg")
        answer = _put(conn, memoryview(body))
        conn.close()
    assert answer.status == 201 and server.requests[0][1] == body


def test_a_connection_on_a_descriptor_past_1023_is_kept_alive() -> None:
    """select() refuses such descriptors; a process running many uploads has them."""
    import os
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2048:
        resource.setrlimit(resource.RLIMIT_NOFILE, (2048, max(hard, 2048)))
    try:
        with serving(OK, OK) as server:
            conn = Connection("127.0.0.1", server.port)
            conn.connect()
            high = os.dup2(conn.sock.fileno(), 1500)
            conn.close()
            conn.sock = socket.socket(fileno=high)
            conn._reader = conn.sock.makefile("rb")
            assert conn.sock.fileno() > 1023
            assert _put(conn).status == 201
            assert not conn.dropped()  # idle and still open: reused
            assert _put(conn).status == 201
            conn.close()
        assert server.connections == 1
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


class CountingGuard:
    """A GuardedBody guard that counts its entries and withdraws the body at ``refuse_at``."""

    def __init__(self, refuse_at: int | None = None) -> None:
        self.entries = 0
        self._refuse_at = refuse_at

    @contextmanager
    def __call__(self) -> Iterator[None]:
        self.entries += 1
        if self.entries == self._refuse_at:
            raise BodyWithdrawn("withdrawn by the test")
        yield


def test_a_guarded_body_goes_by_the_kernel_or_through_tls_piece_by_piece(tmp_path) -> None:
    body = bytes(range(256)) * (7 * GUARDED_PIECE // 2 // 256)  # three and a half pieces
    guard = CountingGuard()
    with serving(OK) as server:
        answer = _put(Connection("127.0.0.1", server.port), GuardedBody(memoryview(body), guard))
    assert answer.status == 201 and server.requests[0][1] == body
    assert guard.entries == 0  # sendmsg: the kernel reads the memory, nothing to guard
    wrap, ca_file = _tls_wrapper(tmp_path)
    with serving(OK, wrap=wrap) as server:
        conn = Connection("127.0.0.1", server.port,
                          context=ssl.create_default_context(cafile=ca_file))
        answer = _put(conn, GuardedBody(memoryview(body), guard))
        conn.close()
    assert answer.status == 201 and server.requests[0][1] == body
    assert guard.entries == 4  # each piece encrypted under its own guard


def test_a_body_withdrawn_mid_tls_is_not_retried_and_drops_the_connection(tmp_path) -> None:
    wrap, ca_file = _tls_wrapper(tmp_path)
    body = GuardedBody(memoryview(bytes(3 * GUARDED_PIECE)), CountingGuard(refuse_at=2))
    retry = RetrySettings(total=3, initial_backoff=0, increment_base=0, jitter=0)
    with serving(OK, OK, wrap=wrap) as server:
        rest = BlobRest(f"https://127.0.0.1:{server.port}/acct/c/b.vhd", None, retry=retry,
                        ca_bundle=ca_file)
        with pytest.raises(BodyWithdrawn):
            rest.request("PUT", {"comp": "page"}, {}, body, ok=(201,))
        assert rest._local.conn is None  # half a body went out: the connection is done
        rest.close()
    assert body.guard.entries == 2 and server.requests == []


def test_a_mapped_body_cut_short_is_withdrawn_not_a_crash(tmp_path) -> None:
    path = tmp_path / "source"
    path.write_bytes(os.urandom(8 * 1024 * 1024))
    with open(path, "rb") as handle:
        mapping = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    os.truncate(path, 1024 * 1024)  # what reading the rest would make SIGBUS in Python
    retry = RetrySettings(total=3, initial_backoff=0, increment_base=0, jitter=0)
    with serving(OK, OK) as server, memoryview(mapping) as view:
        rest = BlobRest(f"http://127.0.0.1:{server.port}/acct/c/b.vhd", None, retry=retry)
        with pytest.raises(BodyWithdrawn, match="went away"):
            rest.request("PUT", {"comp": "page"}, {}, GuardedBody(view, CountingGuard()),
                         ok=(201,))
        rest.close()
    mapping.close()
    assert server.requests == []

"""A byte-for-byte TCP relay in front of a server that counts the connections it carried.

It parses nothing: each accepted connection gets its own upstream connection and two
threads pumping bytes, so keep-alive behaves exactly as between client and server.
"""
from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field


@dataclass
class TcpRelay:
    upstream: tuple[str, int]
    connections: int = 0
    closed_by_client: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> "TcpRelay":
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.close()

    def url_for(self, upstream_url: str) -> str:
        host, port = self.upstream
        return upstream_url.replace(f"{host}:{port}", f"127.0.0.1:{self.port}", 1)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            upstream = socket.create_connection(self.upstream)
            threading.Thread(target=_pump, args=(client, upstream, self._client_closed),
                             daemon=True).start()
            threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()

    def _client_closed(self) -> None:
        with self._lock:
            self.closed_by_client += 1

    @property
    def open_connections(self) -> int:
        """Connections the client opened and has not closed."""
        with self._lock:
            return self.connections - self.closed_by_client


def _pump(source: socket.socket, sink: socket.socket, on_end=None) -> None:
    try:
        while chunk := source.recv(1 << 16):
            sink.sendall(chunk)
        if on_end is not None:
            on_end()  # the source closed its side
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

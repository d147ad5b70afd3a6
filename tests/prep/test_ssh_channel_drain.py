"""Reading a command's output while paramiko's thread takes in EOF and CLOSE.

The interleaving that made commands fail now and then on a loaded machine (EOF and CLOSE
arriving between the end-of-output check and the closed check) cannot be forced through
a real connection, so a channel double replays it step by step; the real transport is
exercised by the sandboxed-sshd tests.
"""
from __future__ import annotations

import time

import pytest

from azlift.prep.errors import ConnectionLostError
from azlift.prep.ssh import _drain


class _Transport:
    def is_active(self) -> bool:
        return True


class RacingChannel:
    """Holds ``head``; the first look at ``eof_received`` delivers ``tail``, EOF and CLOSE.

    That is the moment paramiko's reader thread runs in the real race.
    """

    def __init__(self, head: bytes, tail: bytes, tail_err: bytes, send_eof: bool) -> None:
        self._out = [head]
        self._err: list[bytes] = []
        self._pending = (tail, tail_err)
        self._send_eof = send_eof
        self._eof = False
        self.closed = False

    @property
    def eof_received(self) -> bool:
        seen = self._eof
        if self._pending is not None:
            tail, tail_err = self._pending
            self._pending = None
            self._out.append(tail)
            self._err.append(tail_err)
            self._eof = self._send_eof
            self.closed = True
        return seen

    def get_transport(self) -> _Transport:
        return _Transport()

    def recv_ready(self) -> bool:
        return any(self._out)

    def recv_stderr_ready(self) -> bool:
        return any(self._err)

    def recv(self, size: int) -> bytes:
        return self._out.pop(0)

    def recv_stderr(self, size: int) -> bytes:
        return self._err.pop(0)


def test_eof_and_close_arriving_together_keep_every_byte() -> None:
    channel = RacingChannel(b"ID=debian\n", b"VERSION_ID=12\n", b"note\n", send_eof=True)
    out, err = _drain(channel, time.monotonic() + 5, "guest")  # type: ignore[arg-type]
    assert out == b"ID=debian\nVERSION_ID=12\n"
    assert err == b"note\n"


def test_close_without_eof_is_a_lost_connection() -> None:
    channel = RacingChannel(b"ID=debian\n", b"", b"", send_eof=False)
    with pytest.raises(ConnectionLostError, match="closed before its output ended"):
        _drain(channel, time.monotonic() + 5, "guest")  # type: ignore[arg-type]

"""The server side of WinRM's NTLM authentication and message encryption, for the fake.

A real acceptor, not a stand-in: pyspnego's NTLM server context checks the client's
NTLMv2 response against a user file (``NTLM_USER_FILE``, lines ``DOMAIN:USER:PASSWORD``),
and seals and unseals messages with the session key the handshake produced. The framing
is MS-WSMV 2.2.9.1.1 (what Windows' WinRM service speaks over plain HTTP, and what pywinrm
sends for its ntlm transport there):

    --Encrypted Boundary\\r\\n
    \\tContent-Type: application/HTTP-SPNEGO-session-encrypted\\r\\n
    \\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length=N\\r\\n
    --Encrypted Boundary\\r\\n
    \\tContent-Type: application/octet-stream\\r\\n
    <signature length, 4 bytes little-endian><signature><sealed message>
    --Encrypted Boundary--\\r\\n

NTLM authenticates the TCP connection, not each request: the handshake's third message
carries the first real request, and later requests on that connection carry no header.
"""
from __future__ import annotations

import base64
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import spnego

BOUNDARY = b"--Encrypted Boundary"
PROTOCOL = "application/HTTP-SPNEGO-session-encrypted"
CONTENT_TYPE = f'multipart/encrypted;protocol="{PROTOCOL}";boundary="Encrypted Boundary"'
# What the WinRM service offers to a client without credentials (it never offers NTLM by
# name: NTLM runs under Negotiate).
CHALLENGE_HEADER = "Negotiate"


def write_user_file(path: Path, user: str, password: str, domain: str = "") -> Path:
    """The acceptor's credential store: one ``DOMAIN:USER:PASSWORD`` line, UTF-8."""
    path.write_text(f"{domain}:{user}:{password}\n", encoding="utf-8")
    return path


class NtlmRefused(Exception):
    """The client's NTLM token did not authenticate (wrong password, unknown user)."""


@dataclass
class NtlmConnection:
    """One TCP connection's NTLM state: the acceptor context, then the session keys."""

    context: spnego.ContextProxy | None = None
    authenticated: bool = False
    user: str = ""
    steps: list[str] = field(default_factory=list)

    def step(self, header: str) -> str | None:
        """Consume ``Authorization: Negotiate <token>``; the reply token for the 401, or None
        once the connection is authenticated."""
        scheme, _, token = header.partition(" ")
        if scheme.lower() not in ("negotiate", "ntlm") or not token:
            raise NtlmRefused(f"unsupported authorization scheme {scheme!r}")
        data = base64.b64decode(token)
        if self.context is None or self.authenticated:
            self.context, self.authenticated = spnego.server(protocol="ntlm"), False
        try:
            reply = self.context.step(data)
        except spnego.exceptions.SpnegoError as error:
            self.context = None
            raise NtlmRefused(str(error)) from error
        self.steps.append("challenge" if reply else "authenticate")
        if self.context.complete:
            self.authenticated = True
            self.user = self.context.client_principal or ""
            return None
        return base64.b64encode(reply or b"").decode("ascii")

    def unseal(self, body: bytes) -> bytes:
        """The SOAP message inside an encrypted request body."""
        assert self.context is not None
        parts = [part for part in body.split(BOUNDARY + b"\r\n") if part]
        if len(parts) != 2:
            raise ValueError("expected a header part and a payload part")
        length = int(re.search(rb"Length=(\d+)", parts[0]).group(1))  # type: ignore[union-attr]
        payload = parts[1]
        if payload.endswith(BOUNDARY + b"--\r\n"):
            payload = payload[:-len(BOUNDARY + b"--\r\n")]
        payload = payload.removeprefix(b"\tContent-Type: application/octet-stream\r\n")
        signature_length = struct.unpack("<i", payload[:4])[0]
        signature = payload[4:4 + signature_length]
        message = self.context.unwrap_winrm(signature, payload[4 + signature_length:])
        if len(message) != length:
            raise ValueError(f"OriginalContent says {length} bytes, the message has {len(message)}")
        return message

    def seal(self, message: bytes) -> bytes:
        """An encrypted response body carrying ``message``."""
        assert self.context is not None
        wrapped = self.context.wrap_winrm(message)
        return (BOUNDARY + b"\r\n"
                + f"\tContent-Type: {PROTOCOL}\r\n".encode()
                + f"\tOriginalContent: type=application/soap+xml;charset=UTF-8;"
                  f"Length={len(message)}\r\n".encode()
                + BOUNDARY + b"\r\n"
                + b"\tContent-Type: application/octet-stream\r\n"
                + struct.pack("<i", len(wrapped.header)) + wrapped.header + wrapped.data
                + BOUNDARY + b"--\r\n")


def is_encrypted(content_type: str) -> bool:
    return "multipart/encrypted" in content_type and PROTOCOL in content_type

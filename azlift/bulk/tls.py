"""Mutual TLS between the coordinator, the scheduler and the workers.

Dask retries a refused TLS connection for ever (a worker with the wrong CA prints "Waiting
to connect" until it is killed), so before a worker or a coordinator hands the address to
Dask it shakes hands once itself, with the same files and the same rules as Dask (the peer's
certificate must chain to the CA; host names are not checked, as Dask does not), and turns
what went wrong into one line: which side refused which certificate.
"""
from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import ClusterError, TlsConfigError, TlsRefusedError

PROBE_TIMEOUT_S = 10.0
REFUSAL_WAIT_S = 3.0


@dataclass(frozen=True)
class TlsFiles:
    """The CA that signs the cluster's certificates, and this process's certificate."""

    ca_file: Path
    cert: Path
    key: Path

    @classmethod
    def from_options(cls, ca: Path | None, cert: Path | None,
                     key: Path | None) -> TlsFiles | None:
        """None without TLS; all three files, or a usage error naming the missing ones."""
        given = {"--tls-ca-file": ca, "--tls-cert": cert, "--tls-key": key}
        if not any(given.values()):
            return None
        missing = [name for name, value in given.items() if not value]
        if missing:
            raise TlsConfigError(f"--tls-ca-file, --tls-cert and --tls-key go together; "
                                 f"missing {', '.join(missing)}")
        assert ca and cert and key
        return cls(ca, cert, key)

    def client_context(self) -> ssl.SSLContext:
        """A client context as Dask builds it (CA required, host name not checked)."""
        try:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_file))
            context.check_hostname = False
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_cert_chain(str(self.cert), str(self.key))
        except (OSError, ssl.SSLError) as error:
            raise TlsConfigError(f"cannot load the TLS files (CA {self.ca_file}, certificate "
                                 f"{self.cert}, key {self.key}): {_reason(error)}") from None
        return context

    def security(self) -> Any:
        """Dask's Security for a client of the cluster (the coordinator)."""
        from distributed.security import Security

        return Security(tls_ca_file=str(self.ca_file), tls_client_cert=str(self.cert),
                        tls_client_key=str(self.key), require_encryption=True)


def _reason(error: BaseException) -> str:
    reason = getattr(error, "verify_message", None) or getattr(error, "reason", None)
    return str(reason or error).strip() or type(error).__name__


def host_port(address: str) -> tuple[str, int]:
    """``tls://host:port`` → (host, port)."""
    parts = urlsplit(address if "://" in address else f"tls://{address}")
    if not parts.hostname or parts.port is None:
        raise TlsConfigError(f"expected a scheduler address like tls://HOST:PORT, found "
                             f"{address!r}")
    return parts.hostname, parts.port


def check_address(address: str, tls: TlsFiles | None) -> str:
    """The address to hand to Dask: ``tls://`` with TLS files, ``tcp://`` without."""
    scheme = address.split("://", 1)[0] if "://" in address else ""
    if tls is not None:
        if scheme not in ("", "tls"):
            raise TlsConfigError(f"TLS files were given but the scheduler address is "
                                 f"{address!r}; use tls://HOST:PORT")
        return address if scheme else f"tls://{address}"
    if scheme == "tls":
        raise TlsConfigError(f"{address} is a TLS scheduler: give --tls-ca-file, --tls-cert "
                             "and --tls-key")
    return address


def probe(address: str, tls: TlsFiles, timeout: float = PROBE_TIMEOUT_S) -> None:
    """One TLS handshake with the scheduler at ``address``; a refusal on either side
    raises TlsRefusedError saying which certificate was refused and why."""
    host, port = host_port(address)
    context = tls.client_context()
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except OSError as error:
        raise ClusterError(f"cannot reach the Dask scheduler at {address}: "
                           f"{_reason(error)}") from None
    try:
        with context.wrap_socket(raw, server_hostname=host) as stream:
            # TLS 1.3: the server judges our certificate after our side of the handshake
            # is done, and says so with an alert that arrives on the first read.
            stream.settimeout(REFUSAL_WAIT_S)
            try:
                stream.recv(1)
            except (TimeoutError, socket.timeout):
                pass
    except ssl.SSLCertVerificationError as error:
        raise TlsRefusedError(
            f"the scheduler at {address} presented a certificate that {tls.ca_file} does not "
            f"vouch for ({_reason(error)}): use the CA that signed the cluster's "
            "certificates") from None
    except ssl.SSLError as error:
        raise TlsRefusedError(
            f"the scheduler at {address} refused this process's certificate {tls.cert} "
            f"({_reason(error)}): it must be signed by the scheduler's CA") from None
    except OSError as error:
        raise ClusterError(f"the TLS handshake with {address} failed: {_reason(error)}") from None
    finally:
        raw.close()

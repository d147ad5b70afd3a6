"""A session-wide Azurite blob service started from the project's own install.

Usage in a test module::

    from tests.support.azurite import azurite  # noqa: F401  (the fixture)

    def test_something(azurite):
        container = azurite.new_container()
        client = azurite.service_client()

The fixture starts ``azurite-blob`` in memory on a free port of 127.0.0.1, waits until it
answers, and stops it at the end of the session.
"""
from __future__ import annotations

import itertools
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from azlift.upload.auth import EMULATOR_ACCOUNT, EMULATOR_KEY

from .tools import TOOLS_DIR, free_port, require_executable

# The well-known development account published in Microsoft's Azurite documentation.
ACCOUNT_NAME = EMULATOR_ACCOUNT
ACCOUNT_KEY = EMULATOR_KEY
AZURITE_BLOB = TOOLS_DIR / "node_modules" / ".bin" / "azurite-blob"
READY_TIMEOUT_S = 30.0


@dataclass
class Azurite:
    """A running Azurite blob service: where it is and how to sign in."""

    host: str
    port: int
    account_name: str = ACCOUNT_NAME
    account_key: str = ACCOUNT_KEY
    _counter: Iterator[int] = field(default_factory=itertools.count, repr=False)

    @property
    def endpoint(self) -> str:
        """Blob endpoint URL (path-style, as Azurite serves it)."""
        return f"http://{self.host}:{self.port}/{self.account_name}"

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={self.account_name};"
                f"AccountKey={self.account_key};BlobEndpoint={self.endpoint};")

    def blob_url(self, container: str, blob: str) -> str:
        return f"{self.endpoint}/{container}/{blob}"

    def service_client(self, **kwargs: object):  # -> BlobServiceClient
        """A BlobServiceClient signed with the development key."""
        from azure.storage.blob import BlobServiceClient
        return BlobServiceClient(self.endpoint, credential={
            "account_name": self.account_name, "account_key": self.account_key}, **kwargs)

    def new_container_name(self) -> str:
        """A unique, valid container name (not created)."""
        return f"t{next(self._counter):04d}-{uuid.uuid4().hex[:12]}"

    def new_container(self) -> str:
        """Create a unique container and return its name."""
        name = self.new_container_name()
        self.service_client().create_container(name)
        return name


def _wait_until_listening(host: str, port: int, process: subprocess.Popen,
                          timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"azurite-blob exited with code {process.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"azurite-blob did not listen on {host}:{port} within {timeout} s")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextmanager
def _running_azurite(*extra: str) -> Iterator[tuple[str, int]]:
    """Start ``azurite-blob`` in memory on a free port with ``extra`` options; stop it after."""
    require_executable(str(AZURITE_BLOB))
    host, port = "127.0.0.1", free_port()
    workdir = tempfile.mkdtemp(prefix="azurite-")
    log = open(Path(workdir) / "azurite.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [str(AZURITE_BLOB), "--blobHost", host, "--blobPort", str(port),
         "--inMemoryPersistence", "--skipApiVersionCheck", "--loose", "--disableTelemetry",
         *extra],
        cwd=workdir,
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    try:
        try:
            _wait_until_listening(host, port, process, READY_TIMEOUT_S)
        except RuntimeError as error:
            log.flush()
            tail = (Path(workdir) / "azurite.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{error}; its log ends with:\n{tail}") from None
        yield host, port
    finally:
        _stop(process)
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """Azurite's blob service for the whole test session (skips when not installed)."""
    with _running_azurite() as (host, port):
        yield Azurite(host=host, port=port)


@dataclass
class SecureAzurite(Azurite):
    """Azurite over HTTPS with OAuth: bearer tokens are accepted (and checked for issuer,
    audience and expiry, not for a signature), besides the development key."""

    ca_file: str = ""

    @property
    def endpoint(self) -> str:
        return f"https://{self.host}:{self.port}/{self.account_name}"

    def service_client(self, **kwargs: object):  # -> BlobServiceClient
        return super().service_client(connection_verify=self.ca_file, **kwargs)


@pytest.fixture(scope="session")
def azurite_oauth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureAzurite]:
    """Azurite with ``--oauth basic`` over HTTPS, its certificate made for the session."""
    from .tls_ca import self_signed as make_certificate

    cert, key = make_certificate(tmp_path_factory.mktemp("azurite-tls"))
    with _running_azurite("--cert", str(cert), "--key", str(key), "--oauth", "basic") as (
            host, port):
        yield SecureAzurite(host=host, port=port, ca_file=str(cert))

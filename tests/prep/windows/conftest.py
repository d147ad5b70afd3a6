"""Fixtures: a fake WS-Management endpoint over HTTPS with a certificate made per test."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from prep.winrm import WinRMRemote, WinRMSettings
from tests.support.fake_wsman import TEST_PASSWORD as PASSWORD
from tests.support.fake_wsman import TEST_USER as USER
from tests.support.fake_wsman import FakeWSMan, WindowsMachine, make_certificate


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def machine() -> WindowsMachine:
    return WindowsMachine()


@pytest.fixture
def wsman(machine: WindowsMachine, certificate: tuple[Path, Path]) -> Iterator[FakeWSMan]:
    cert, key = certificate
    fake = FakeWSMan(machine, user=USER, password=PASSWORD, certfile=cert, keyfile=key).start()
    yield fake
    fake.stop()


@pytest.fixture
def settings(wsman: FakeWSMan, certificate: tuple[Path, Path]) -> WinRMSettings:
    return WinRMSettings(host="127.0.0.1", user=USER, port=wsman.port, transport="basic",
                         ca_cert=str(certificate[0]), read_timeout=10, operation_timeout=5)


@pytest.fixture
def remote(settings: WinRMSettings) -> Iterator[WinRMRemote]:
    connection = WinRMRemote(settings, PASSWORD)
    yield connection
    connection.close()

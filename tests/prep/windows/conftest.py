"""Fixtures: the fake WS-Management endpoint and a connected WinRM remote."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from azlift.prep.winrm import WinRMRemote, WinRMSettings
from tests.support.fake_wsman import TEST_PASSWORD, TEST_USER, FakeWSMan
from tests.support.fake_wsman import windows_machine, wsman, wsman_certificate  # noqa: F401


@pytest.fixture
def settings(wsman: FakeWSMan, wsman_certificate: tuple[Path, Path]) -> WinRMSettings:  # noqa: F811
    return WinRMSettings(host="127.0.0.1", user=TEST_USER, port=wsman.port, transport="basic",
                         ca_cert=str(wsman_certificate[0]), read_timeout=10, operation_timeout=5)


@pytest.fixture
def remote(settings: WinRMSettings) -> Iterator[WinRMRemote]:
    connection = WinRMRemote(settings, TEST_PASSWORD)
    yield connection
    connection.close()

"""The default transport, NTLM, end to end: pywinrm's ntlm transport (requests-ntlm,
pyspnego) against a real NTLM acceptor, with WinRM message encryption over plain HTTP."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from azlift.prep.errors import RemoteAuthError
from azlift.prep.windows import gather_facts, start_sysprep, sysprep_arguments
from azlift.prep.winrm import WinRMRemote, WinRMSettings
from tests.prep.windows.test_windows_winrm_transport import probe_script
from tests.support.fake_wsman import TEST_PASSWORD, TEST_USER, FakeWSMan, WindowsMachine
from tests.support.fake_wsman import ntlm_user_file, wsman_ntlm  # noqa: F401  (fixtures)
from tests.support.wsman_ntlm import write_user_file


def ntlm_settings(fake: FakeWSMan, user: str = TEST_USER) -> WinRMSettings:
    return WinRMSettings(host="127.0.0.1", user=user, port=fake.port, transport="ntlm",
                         use_http=True, read_timeout=10, operation_timeout=5)


def test_ntlm_over_http_authenticates_once_and_seals_every_message(
        wsman_ntlm: FakeWSMan) -> None:  # noqa: F811
    remote = WinRMRemote(ntlm_settings(wsman_ntlm), TEST_PASSWORD)
    try:
        facts = gather_facts(remote)  # the check script: long, so it goes through stdin
    finally:
        remote.close()
    assert facts["os"]["caption"] == wsman_ntlm.machine.os_caption
    assert wsman_ntlm.ntlm_logins == [TEST_USER]  # one handshake for the whole session
    # Create, Command, Send, Receive..., Signal, Delete: every one of them sealed.
    assert wsman_ntlm.sealed_requests == len(wsman_ntlm.actions) >= 6
    assert wsman_ntlm.plaintext_refused == 0


def test_a_long_script_arrives_intact_through_sealed_stdin(wsman_ntlm: FakeWSMan) -> None:  # noqa: F811
    script = probe_script(40_000)
    remote = WinRMRemote(ntlm_settings(wsman_ntlm), TEST_PASSWORD)
    try:
        result = remote.run(script)
    finally:
        remote.close()
    assert result.ok, result.stderr
    assert json.loads(result.stdout)["sha256"] == hashlib.sha256(script.encode()).hexdigest()
    assert wsman_ntlm.actions.count("Send") >= 2  # more than one stdin chunk, each sealed


def test_a_wrong_password_is_refused_by_the_acceptor(wsman_ntlm: FakeWSMan) -> None:  # noqa: F811
    with pytest.raises(RemoteAuthError, match="refused the credentials.*ntlm") as caught:
        WinRMRemote(ntlm_settings(wsman_ntlm), "Wr0ng-secret-value").run(probe_script(100))
    assert "Wr0ng-secret-value" not in str(caught.value)
    assert wsman_ntlm.auth_failures >= 1 and wsman_ntlm.ntlm_logins == []
    assert wsman_ntlm.scripts == []


def test_the_endpoint_refuses_unsealed_soap_over_http(wsman_ntlm: FakeWSMan) -> None:  # noqa: F811
    # The strictness the tests above rely on: without encryption the request is refused.
    from winrm.exceptions import WinRMTransportError
    from winrm.protocol import Protocol
    protocol = Protocol(wsman_ntlm.url, transport="ntlm", username=TEST_USER,
                        password=TEST_PASSWORD, message_encryption="never")
    with pytest.raises(WinRMTransportError):
        protocol.open_shell()
    assert wsman_ntlm.plaintext_refused == 1 and wsman_ntlm.ntlm_logins == [TEST_USER]


def test_a_non_ascii_user_logs_in_and_starts_sysprep_under_its_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user = "Jürgen"
    monkeypatch.setenv("NTLM_USER_FILE",
                       str(write_user_file(tmp_path / "users", user, TEST_PASSWORD)))
    fake = FakeWSMan(WindowsMachine(), user=user, password=TEST_PASSWORD, auth="ntlm").start()
    remote = WinRMRemote(ntlm_settings(fake, user=user), TEST_PASSWORD)
    try:
        start = start_sysprep(remote, sysprep_arguments())
    finally:
        remote.close()
        fake.stop()
    assert fake.ntlm_logins == [user]
    assert start.account == "WIN\\Jürgen" and fake.machine.sysprep_account == "WIN\\Jürgen"

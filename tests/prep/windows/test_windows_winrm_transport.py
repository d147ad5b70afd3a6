"""The WinRM transport against the fake endpoint: protocol order, long scripts, TLS, auth."""
from __future__ import annotations

import hashlib
import json

import pytest

from azlift.prep.errors import ConnectError, HostKeyError, PrepUsageError, RemoteAuthError
from azlift.prep.winrm import COMMAND_LINE_LIMIT, WinRMRemote, WinRMSettings, fits_command_line
from tests.support.fake_wsman import TEST_PASSWORD as PASSWORD
from tests.support.fake_wsman import TEST_USER as USER
from tests.support.fake_wsman import WINDOWS_COMMAND_LINE_LIMIT, FakeWSMan


def probe_script(size: int) -> str:
    """A script of at least ``size`` characters the fake answers with its own digest."""
    lines = ["# azlift-script: probe"]
    i = 0
    while sum(len(line) + 1 for line in lines) < size:
        lines.append(f"$filler{i} = 'line {i} of a long generated script: ünïcödé ✓'")
        i += 1
    return "\n".join(lines) + "\n"


def test_a_short_script_runs_on_the_command_line_in_protocol_order(
        remote: WinRMRemote, wsman: FakeWSMan) -> None:
    script = probe_script(200)
    result = remote.run(script)
    assert result.ok
    assert json.loads(result.stdout)["sha256"] == hashlib.sha256(script.encode()).hexdigest()
    assert wsman.actions == ["Create", "Command:probe", "Receive", "Signal", "Delete"]
    assert "-EncodedCommand" in wsman.command_lines[0]


def test_a_script_over_8_kb_travels_through_stdin_intact(
        remote: WinRMRemote, wsman: FakeWSMan) -> None:
    script = probe_script(20_000)
    assert len(script.encode("utf-8")) > 8 * 1024 and not fits_command_line(script)
    result = remote.run(script)
    assert result.ok, result.stderr
    answer = json.loads(result.stdout)
    assert answer["sha256"] == hashlib.sha256(script.encode("utf-8")).hexdigest()
    assert answer["chars"] == len(script)
    assert all(len(line) <= COMMAND_LINE_LIMIT for line in wsman.command_lines)
    assert wsman.actions[:2] == ["Create", "Command:stdin-loader"]
    assert wsman.console_mode_stdin == [False]  # a pipe, not console input
    assert "Send" in wsman.actions and wsman.actions[-2:] == ["Signal", "Delete"]


def test_the_fake_refuses_a_long_command_line_like_windows(wsman: FakeWSMan,
                                                           settings: WinRMSettings) -> None:
    # pywinrm's own run_ps puts everything on the command line: that is what breaks.
    import winrm
    session = winrm.Session(wsman.url, auth=(USER, PASSWORD), transport="basic",
                            server_cert_validation="validate", ca_trust_path=settings.ca_cert)
    response = session.run_ps(probe_script(20_000))
    assert response.status_code == 1
    assert b"too long" in response.std_err
    assert len(wsman.command_lines[-1]) > WINDOWS_COMMAND_LINE_LIMIT


def test_tls_without_the_ca_is_refused(wsman: FakeWSMan, settings: WinRMSettings) -> None:
    untrusted = WinRMSettings(host="127.0.0.1", user=USER, port=wsman.port, transport="basic")
    with pytest.raises(HostKeyError, match="not trusted.*--ca-cert"):
        WinRMRemote(untrusted, PASSWORD).run(probe_script(100))
    assert wsman.scripts == []


def test_skipping_tls_verification_works_but_is_warned_about(
        wsman: FakeWSMan, settings: WinRMSettings) -> None:
    insecure = WinRMSettings(host="127.0.0.1", user=USER, port=wsman.port, transport="basic",
                             verify_tls=False)
    assert any("--insecure-skip-tls-verify" in w for w in insecure.warnings())
    assert WinRMRemote(insecure, PASSWORD).run(probe_script(100)).ok


def test_wrong_password_is_an_auth_error(settings: WinRMSettings, wsman: FakeWSMan) -> None:
    with pytest.raises(RemoteAuthError) as caught:
        WinRMRemote(settings, "wrong-password").run(probe_script(100))
    assert "wrong-password" not in str(caught.value)
    assert wsman.auth_failures >= 1


def test_basic_auth_over_plain_http_is_refused() -> None:
    with pytest.raises(PrepUsageError, match="clear text"):
        WinRMRemote(WinRMSettings(host="h", user="u", transport="basic", use_http=True), "p")


def test_plain_http_is_warned_about() -> None:
    settings = WinRMSettings(host="h", user="u", transport="ntlm", use_http=True)
    assert settings.endpoint == "http://h:5985/wsman"
    assert any("plain HTTP" in w for w in settings.warnings())


def test_nothing_listening_is_a_connect_error(settings: WinRMSettings, wsman: FakeWSMan) -> None:
    wsman.stop()
    with pytest.raises(ConnectError, match="cannot reach"):
        WinRMRemote(settings, PASSWORD).run(probe_script(100))


@pytest.mark.parametrize("transport, flag, package", [
    ("kerberos", "HAVE_KERBEROS", "pykerberos"), ("credssp", "HAVE_CREDSSP", "requests-credssp")])
def test_an_auth_transport_without_its_package_is_a_usage_error(
        monkeypatch: pytest.MonkeyPatch, transport: str, flag: str, package: str) -> None:
    from winrm import transport as winrm_transport
    monkeypatch.setattr(winrm_transport, flag, False)
    with pytest.raises(PrepUsageError, match=f"needs the Python package {package}"):
        WinRMSettings(host="h", user="u", transport=transport).validate()


def test_a_malformed_host_is_a_usage_error_not_a_crash() -> None:
    remote = WinRMRemote(WinRMSettings(host="bad host name", user=USER, transport="basic"),
                         PASSWORD)
    with pytest.raises(PrepUsageError, match="expected a host name or address") as caught:
        remote.run(probe_script(100))
    assert PASSWORD not in str(caught.value)


@pytest.mark.parametrize("changes, expected", [
    ({"use_http": True, "ca_cert": "ca.pem"}, "HTTPS only"),
    ({"verify_tls": False, "ca_cert": "ca.pem"}, "exclude each other"),
    ({"user": ""}, "user name is required"),
    ({"transport": "digest"}, "expected one of ntlm, kerberos, credssp, basic"),
])
def test_contradicting_settings_are_usage_errors(changes: dict, expected: str) -> None:
    with pytest.raises(PrepUsageError, match=expected):
        WinRMSettings(**{"host": "h", "user": "u", **changes}).validate()

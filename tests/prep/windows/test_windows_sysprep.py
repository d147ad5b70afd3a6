"""Sysprep arguments, polling, log reading, scripts, shutdown — against the fake guest."""
from __future__ import annotations

import socket

import pytest

from azlift.prep.errors import GeneralizeFailedError, PrepTimeoutError
from azlift.prep.windows import (
    GENERALIZED,
    appx_packages,
    build_plan,
    error_lines,
    ps_literal,
    script,
    shut_down,
    start_sysprep,
    sysprep_arguments,
    wait_for_generalized,
    wait_until_unreachable,
)
from azlift.prep.windows.preparer import WindowsPrepOptions
from azlift.prep.windows.sysprep import STARTUP_GRACE_SECONDS, SysprepStart
from azlift.prep.winrm import WinRMRemote
from tests.support.fake_wsman import APPX_FAILURE_PACKAGE, FakeWSMan, appx_failure_logs


class FakeClock:
    """Virtual time: sleeping advances it, so timeouts are exact and instant."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_sysprep_arguments_add_mode_vm_only_when_asked() -> None:
    assert sysprep_arguments() == ["/generalize", "/oobe", "/quiet", "/quit"]
    assert sysprep_arguments(mode_vm=True)[-1] == "/mode:vm"


def test_plan_orders_steps_and_marks_the_destructive_ones() -> None:
    plan = build_plan("vm1", WindowsPrepOptions(mode_vm=True, timeout=600, port=5986))
    commands = [step.command for step in plan.steps]
    assert "Panther" in commands[0]
    assert commands[1].endswith("Sysprep.exe /generalize /oobe /quiet /quit /mode:vm")
    assert "ImageState" in commands[2] and "shutdown.exe" in commands[3]
    assert [s.destructive for s in plan.steps] == [True, True, False, True, False]
    assert any("/mode:vm" in w for w in plan.warnings)


def test_ps_literal_quotes_safely() -> None:
    assert ps_literal("it's") == "'it''s'"
    assert ps_literal(["/a", "/b"]) == "@('/a', '/b')"
    assert ps_literal(60) == "60" and ps_literal(True) == "$true"


def test_script_binds_parameters_after_the_marker() -> None:
    text = script("fetch-logs", TailLines=25)
    first, second = text.splitlines()[:2]
    assert first == "# azlift-script: fetch-logs" and second == "$TailLines = 25"


def test_every_shipped_script_has_its_marker() -> None:
    for name in ("check", "image-state", "clean-panther", "start-sysprep", "fetch-logs",
                 "shutdown"):
        assert script(name).startswith(f"# azlift-script: {name}\n")


def test_log_reading_finds_error_lines_and_the_appx_package() -> None:
    err, act = appx_failure_logs()
    assert appx_packages(err, act) == [APPX_FAILURE_PACKAGE]
    lines = error_lines(err, act)
    assert lines and all("Error" in line for line in lines)
    assert len(lines) == len(set(lines))
    assert error_lines("2026-01-01 10:00:00, Info  fine\n") == []


def _start_sysprep(remote: WinRMRemote) -> SysprepStart:
    return start_sysprep(remote, sysprep_arguments())


def _sysprep_and_poll(remote: WinRMRemote, timeout: float) -> tuple[list, FakeClock]:
    """Start Sysprep, poll every 5 virtual seconds until generalized: (polls, clock)."""
    clock = FakeClock()
    start = _start_sysprep(remote)
    seen: list = []
    final = wait_for_generalized(remote, timeout=timeout, interval=5, on_poll=seen.append,
                                 clock=clock, sleep=clock.sleep, start=start)
    assert final.image_state == GENERALIZED
    return seen, clock


def test_polling_returns_once_generalized(remote: WinRMRemote, wsman: FakeWSMan) -> None:
    seen, clock = _sysprep_and_poll(remote, timeout=60)
    assert len(seen) == 3 and clock.sleeps == [5, 5]
    assert wsman.scripts == ["start-sysprep", "image-state", "image-state", "image-state"]


def test_polling_fails_fast_on_undeployable_and_names_the_package(
        remote: WinRMRemote, wsman: FakeWSMan) -> None:
    wsman.machine.sysprep_scenario = "appx_failure"
    clock = FakeClock()
    start = _start_sysprep(remote)
    with pytest.raises(GeneralizeFailedError) as caught:
        wait_for_generalized(remote, timeout=600, interval=5, clock=clock, sleep=clock.sleep,
                             start=start)
    assert APPX_FAILURE_PACKAGE in str(caught.value)
    assert clock.now < 600
    assert wsman.scripts[-1] == "fetch-logs"


def test_polling_stops_at_the_timeout_when_stuck(remote: WinRMRemote, wsman: FakeWSMan) -> None:
    wsman.machine.sysprep_scenario = "stuck"
    clock = FakeClock()
    start = _start_sysprep(remote)
    with pytest.raises(PrepTimeoutError) as caught:
        wait_for_generalized(remote, timeout=30, interval=10, clock=clock, sleep=clock.sleep,
                             start=start)
    message = str(caught.value)
    assert "still IMAGE_STATE_UNDEPLOYABLE" in message and "within 30 s" in message
    assert "Sysprep.exe (process 4242) is still running" in message
    assert "did not reach the generalize state" in message  # from setupact.log
    assert clock.now == 30 and wsman.scripts.count("image-state") == 4


def test_shutdown_treats_the_dropped_connection_as_expected(
        remote: WinRMRemote, wsman: FakeWSMan) -> None:
    assert shut_down(remote).startswith("connection dropped")
    assert wsman.machine.powered_off
    assert wait_until_unreachable("127.0.0.1", wsman.port, timeout=5, interval=0.05) < 5


def test_a_host_that_keeps_answering_is_a_timeout() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        clock = FakeClock()
        with pytest.raises(PrepTimeoutError, match="still answers"):
            wait_until_unreachable("127.0.0.1", port, timeout=3, interval=1, clock=clock,
                                   sleep=clock.sleep)
        assert clock.now == 3


def test_a_leftover_undeployable_state_is_not_taken_for_this_runs_failure(
        remote: WinRMRemote, wsman: FakeWSMan) -> None:
    # An earlier failed run left IMAGE_STATE_UNDEPLOYABLE and sysprep.exe starts late:
    # polls before Sysprep is seen running must not count as "Sysprep exited".
    wsman.machine.sysprep_scenario = "late_start"
    seen, _clock = _sysprep_and_poll(remote, timeout=600)
    assert [poll.sysprep_running for poll in seen] == [False, False, False, True, False]
    assert "fetch-logs" not in wsman.scripts


def test_sysprep_that_never_shows_up_fails_after_the_startup_grace(
        remote: WinRMRemote, wsman: FakeWSMan) -> None:
    wsman.machine.sysprep_scenario = "late_start"
    wsman.machine.image_state_polls = -1000  # sysprep.exe never appears
    clock = FakeClock()
    start = _start_sysprep(remote)
    with pytest.raises(GeneralizeFailedError, match="not seen running.*IMAGE_STATE_UNDEPLOYABLE"):
        wait_for_generalized(remote, timeout=600, interval=10, clock=clock, sleep=clock.sleep,
                             start=start)
    assert STARTUP_GRACE_SECONDS <= clock.now < 600


def test_a_fault_from_the_stopping_winrm_service_counts_as_the_expected_drop(
        remote: WinRMRemote, wsman: FakeWSMan) -> None:
    wsman.machine.shutdown_answer = "fault"
    outcome = shut_down(remote)
    assert "shut down (expected)" in outcome and "shutting down" in outcome
    assert wsman.machine.powered_off
    assert wait_until_unreachable("127.0.0.1", wsman.port, timeout=5, interval=0.05) < 5


def test_an_http_error_from_the_stopped_winrm_service_counts_as_the_expected_drop(
        remote: WinRMRemote, wsman: FakeWSMan) -> None:
    """Once the WinRM service has stopped, HTTP.sys answers 503 with no SOAP body: the
    shutdown under way, not an internal error after a Sysprep that succeeded."""
    wsman.machine.shutdown_answer = "http_503"
    outcome = shut_down(remote)
    assert outcome.startswith("connection dropped")
    assert wsman.machine.powered_off
    assert wait_until_unreachable("127.0.0.1", wsman.port, timeout=5, interval=0.05) < 5


def test_a_refused_shutdown_is_still_an_error(remote: WinRMRemote, wsman: FakeWSMan,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from azlift.prep.errors import RemoteCommandError
    from azlift.prep.transport import RunResult
    monkeypatch.setattr(remote, "run", lambda *a, **k: RunResult(1190, "", "shutdown refused"))
    with pytest.raises(RemoteCommandError, match="refused .exit 1190"):
        shut_down(remote)


def test_clean_panther_removes_the_folder_and_sysprep_logs_of_earlier_runs() -> None:
    text = script("clean-panther")
    assert "Join-Path $env:WINDIR 'Panther'" in text
    assert "Join-Path $env:WINDIR 'System32\\Sysprep\\Panther'" in text
    assert "@('setuperr.log', 'setupact.log')" in text

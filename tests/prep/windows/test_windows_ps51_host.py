"""What a real Windows PowerShell 5.1 host does to the run: one test per defect it exposed.

Each test drives the public flow (``execute``, ``gather_facts``, ``shut_down``) through the
real pywinrm client against the fake endpoint answering the way 5.1 does.
"""
from __future__ import annotations

import pytest

from azlift.prep.clixml import decode_clixml, error_summary
from azlift.prep.errors import GeneralizeFailedError, RemoteCommandError
from azlift.prep.windows import build_plan, execute, failure_summary, gather_facts, shut_down
from azlift.prep.windows.preparer import WindowsPrepOptions
from azlift.prep.winrm import WinRMRemote
from tests.support.fake_wsman import (
    APPX_FAILURE_PACKAGE,
    LOCKED_PANTHER_ERROR,
    TEST_USER,
    FakeWSMan,
    appx_failure_logs,
    clixml_stderr,
    ps51_get_content_json,
)

GENERALIZED = "IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def run(remote: WinRMRemote, wsman: FakeWSMan, timeout: float = 600) -> tuple:
    """The whole plan with virtual time (5 s polls): (result, progress lines, clock)."""
    clock, said = FakeClock(), []
    options = WindowsPrepOptions(port=wsman.port, timeout=timeout, poll_interval=5,
                                 shutdown_wait=5)
    result = execute(remote, options, progress=said.append, clock=clock, sleep=clock.sleep)
    return result, said, clock


# -- 1. Sysprep runs as the connecting administrator, never as SYSTEM ------------------------
def test_sysprep_runs_as_the_connecting_administrator_not_system(
        remote: WinRMRemote, wsman: FakeWSMan) -> None:
    result, said, _clock = run(remote, wsman)
    assert wsman.machine.sysprep_account == f"WIN\\{TEST_USER}"
    assert result.sysprep_account == f"WIN\\{TEST_USER}"
    assert any(f"Sysprep started as WIN\\{TEST_USER} (process 4242)" in line for line in said)


def test_a_sysprep_that_could_not_be_created_fails_at_once(remote: WinRMRemote,
                                                            wsman: FakeWSMan) -> None:
    wsman.machine.process_create_return = 9  # Win32_Process.Create: path not found
    with pytest.raises(GeneralizeFailedError,
                       match=r"did not start.*returned 9 \(path not found\)"):
        run(remote, wsman)
    assert "image-state" not in wsman.scripts and not wsman.machine.powered_off


def test_a_sysprep_that_never_runs_fails_after_the_grace_with_its_log(
        remote: WinRMRemote, wsman: FakeWSMan) -> None:
    wsman.machine.sysprep_scenario = "never_starts"
    with pytest.raises(GeneralizeFailedError) as caught:
        run(remote, wsman, timeout=1800)
    message = str(caught.value)
    assert "not seen running" in message and "IMAGE_STATE_COMPLETE" in message
    assert "Sysprep will not run on an upgraded OS" in message
    assert wsman.scripts.count("image-state") <= 15  # 60 s of grace, not 1800 s of waiting
    assert not wsman.machine.powered_off


def test_a_leftover_system_task_is_removed(remote: WinRMRemote, wsman: FakeWSMan) -> None:
    wsman.machine.scheduled_tasks.add("azlift-sysprep")
    _result, said, _clock = run(remote, wsman)
    assert "azlift-sysprep" not in wsman.machine.scheduled_tasks
    assert any("removed the leftover scheduled task azlift-sysprep" in line for line in said)


# -- 2. 5.1's JSON shape for Get-Content strings ---------------------------------------------
def test_the_log_reader_takes_the_ps51_get_content_shape() -> None:
    err, act = appx_failure_logs()
    shaped = ps51_get_content_json(err, r"C:\Windows\System32\Sysprep\Panther\setuperr.log")
    summary = failure_summary(shaped, act)
    assert APPX_FAILURE_PACKAGE in summary and "0x80073cf2" in summary
    assert failure_summary(shaped, None) == failure_summary(err, None)


def test_fetch_logs_sends_plain_strings(remote: WinRMRemote, wsman: FakeWSMan) -> None:
    wsman.machine.sysprep_scenario = "appx_failure"
    with pytest.raises(GeneralizeFailedError) as caught:
        run(remote, wsman)
    assert APPX_FAILURE_PACKAGE in str(caught.value)
    assert "PSPath" not in str(caught.value)


# -- 3. CLIXML on stderr, progress silenced --------------------------------------------------
def test_a_failing_step_shows_the_error_not_clixml(remote: WinRMRemote,
                                                   wsman: FakeWSMan) -> None:
    wsman.machine.panther_locked = True
    with pytest.raises(RemoteCommandError) as caught:
        run(remote, wsman)
    message = str(caught.value)
    assert "Remove-Item : Cannot remove item C:\\Windows\\Panther\\setupact.log" in message
    assert "because it is being used by another process." in message
    for noise in ("CLIXML", "<Objs", "_x000D_", "CategoryInfo", "At line:"):
        assert noise not in message
    assert wsman.machine.sysprep_arguments is None


def test_no_script_sends_progress_records(remote: WinRMRemote, wsman: FakeWSMan) -> None:
    gather_facts(remote)
    run(remote, wsman)
    assert wsman.scripts[:4] == ["check", "clean-panther", "start-sysprep", "image-state"]
    assert wsman.progress_records_sent == 0


def test_clixml_is_decoded_into_the_error_lines() -> None:
    stderr = clixml_stderr(LOCKED_PANTHER_ERROR)
    assert stderr.startswith("#< CLIXML\r\n<Objs") and "_x000D__x000A_" in stderr
    assert decode_clixml(stderr).splitlines() == LOCKED_PANTHER_ERROR.splitlines()
    assert error_summary(stderr).startswith("Remove-Item : Cannot remove item")
    assert decode_clixml(clixml_stderr("")) == ""  # progress only: nothing to say
    assert decode_clixml("plain text\r\n") == "plain text\r\n"
    # Characters outside the BMP arrive as escaped surrogate pairs.
    assert decode_clixml(clixml_stderr("").replace(
        "</Objs>", '<S S="Error">x _xD83D__xDE00_ &lt;y&gt;</S></Objs>')) == "x \U0001F600 <y>"


# -- 4. The code page: UTF-8, not 437 --------------------------------------------------------
NON_ASCII_USERS = ["WIN\\Zoë", "WIN\\Łukasz", "WIN\\山田太郎"]


def test_non_ascii_user_and_package_names_survive(remote: WinRMRemote,
                                                  wsman: FakeWSMan) -> None:
    wsman.machine.appx_installed.append({
        "name": "Contoso.Kündenportal", "full_name": "Contoso.Kündenportal_1.0.0.0_x64__abcdefgh",
        "is_framework": False, "non_removable": False, "signature_kind": "Developer",
        "users": NON_ASCII_USERS})
    facts = gather_facts(remote)
    package = facts["appx"]["installed"][-1]
    assert package["users"] == NON_ASCII_USERS
    assert package["full_name"] == "Contoso.Kündenportal_1.0.0.0_x64__abcdefgh"
    assert wsman.codepages == [65001]


# -- 8. An image generalized before this run -------------------------------------------------
def test_an_already_generalized_image_waits_for_this_runs_sysprep(
        remote: WinRMRemote, wsman: FakeWSMan) -> None:
    wsman.machine.registry["ImageState"] = GENERALIZED
    wsman.machine.sysprep_scenario = "already_generalized"
    result, said, _clock = run(remote, wsman)
    # Polls 1-2 still show the earlier run's state with sysprep.exe not yet visible.
    assert result.polls == 5 and result.image_state == GENERALIZED
    assert result.image_state_before == GENERALIZED
    assert any("already at IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE before this run" in line
               for line in said)


def test_an_already_generalized_image_without_sysprep_running_is_a_failure(
        remote: WinRMRemote, wsman: FakeWSMan) -> None:
    wsman.machine.registry["ImageState"] = GENERALIZED
    wsman.machine.sysprep_scenario = "never_starts"
    with pytest.raises(GeneralizeFailedError, match="already was before this run"):
        run(remote, wsman)
    assert not wsman.machine.powered_off


def test_an_already_generalized_image_that_sysprep_left_untouched_is_a_failure(
        remote: WinRMRemote, wsman: FakeWSMan) -> None:
    # This run's Sysprep was seen (right after it was created) but refused at once: the
    # image still reads GENERALIZED from the earlier run, which proves nothing.
    wsman.machine.registry["ImageState"] = GENERALIZED
    wsman.machine.sysprep_scenario = "exits_at_once"
    with pytest.raises(GeneralizeFailedError) as caught:
        run(remote, wsman)
    message = str(caught.value)
    assert "exited" in message and "without the state ever changing" in message
    assert "Sysprep will not run on an upgraded OS" in message
    assert not wsman.machine.powered_off


# -- 9. Text: PowerShell paths, and what a closed port proves --------------------------------
def test_plan_commands_are_powershell_that_would_run() -> None:
    commands = [step.command for step in build_plan("vm1", WindowsPrepOptions()).steps]
    assert "%WINDIR%" not in " ".join(commands)
    assert commands[1].startswith("$env:windir\\System32\\Sysprep\\Sysprep.exe /generalize")
    assert "Get-ItemProperty HKLM:\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Setup\\State" \
        in commands[2]


def test_a_shutdown_already_in_progress_counts_as_accepted(remote: WinRMRemote,
                                                           wsman: FakeWSMan) -> None:
    wsman.machine.shutdown_answer = "in_progress"
    assert shut_down(remote) == "a shutdown was already in progress"
    assert wsman.machine.powered_off

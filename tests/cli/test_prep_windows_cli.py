"""`azlift prep windows` end to end: the real pywinrm client against the fake guest."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from azlift.cli import common
from azlift.cli.main import main
from tests.support.fake_wsman import (
    APPX_FAILURE_PACKAGE,
    TEST_PASSWORD,
    TEST_USER,
    FakeWSMan,
    WindowsMachine,
    ntlm_user_file,  # noqa: F401  (fixture)
    windows_machine,  # noqa: F401  (fixture)
    wsman,  # noqa: F401  (fixture)
    wsman_certificate,  # noqa: F401  (fixture)
    wsman_ntlm,  # noqa: F401  (fixture)
)

PASSWORD_VAR = "AZLIFT_TEST_WINRM_PASSWORD"
FAST = ["--poll-interval", "0.05", "--shutdown-wait", "5"]


@pytest.fixture(autouse=True)
def password_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_VAR, TEST_PASSWORD)


@pytest.fixture
def certificate(wsman_certificate: tuple[Path, Path]) -> tuple[Path, Path]:  # noqa: F811
    return wsman_certificate


@pytest.fixture
def machine(windows_machine: WindowsMachine) -> WindowsMachine:  # noqa: F811
    return windows_machine


def args(wsman: FakeWSMan, certificate: tuple[Path, Path], *extra: str) -> list[str]:
    return ["prep", "windows", "127.0.0.1", "--port", str(wsman.port), "--user", TEST_USER,
            "--transport", "basic", "--password-env", PASSWORD_VAR,
            "--ca-cert", str(certificate[0]), *extra]


def no_password(*texts: str) -> None:
    for text in texts:
        assert TEST_PASSWORD not in text


def test_check_only_on_a_ready_guest_exits_0(wsman, certificate, capsys) -> None:
    code = main(args(wsman, certificate, "--check-only"))
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "no blocking findings" in out
    assert wsman.scripts == ["check"]
    assert wsman.machine.sysprep_arguments is None
    no_password(out, err)


def test_check_only_json_lists_blockers_and_exits_1(wsman, certificate, machine, capsys) -> None:
    machine.bitlocker_protection, machine.bitlocker_volume_status = "On", "FullyEncrypted"
    machine.reboot_pending_cbs = True
    machine.appx_installed.append({
        "name": "Microsoft.BingWeather", "full_name": APPX_FAILURE_PACKAGE,
        "is_framework": False, "non_removable": False, "signature_kind": "Store",
        "users": ["WIN\\alice"]})
    machine.registry["cdrom.Start"] = 4
    machine.services.pop("WindowsAzureGuestAgent")
    code = main(args(wsman, certificate, "--check-only", "--json"))
    out, err = capsys.readouterr()
    assert code == 1
    document = json.loads(out)
    assert document["ok"] is False
    severities = {f["code"]: f["severity"] for f in document["findings"]}
    assert severities["windows.bitlocker"] == "blocker"
    assert severities["windows.pending_reboot"] == "blocker"
    assert severities["windows.appx_user_only"] == "blocker"
    assert severities["windows.cdrom"] == "blocker"
    assert severities["windows.guest_agent"] == "warning"
    appx = next(f for f in document["findings"] if f["code"] == "windows.appx_user_only")
    assert APPX_FAILURE_PACKAGE in appx["message"] and appx["remediation"]
    no_password(out, err)


def test_blockers_stop_the_plan_before_anything_changes(wsman, certificate, machine,
                                                        capsys) -> None:
    machine.reboot_pending_windows_update = True
    code = main(args(wsman, certificate, "--yes", *FAST))
    out, err = capsys.readouterr()
    assert code == 1
    assert "pending_reboot" in err and "--force" in err
    assert wsman.scripts == ["check"]


def test_dry_run_prints_the_plan_and_changes_nothing(wsman, certificate, capsys) -> None:
    code = main(args(wsman, certificate, "--dry-run", "--mode-vm"))
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Sysprep.exe /generalize /oobe /quiet /quit /mode:vm" in out
    assert "Panther" in out and "IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE" in out
    assert "/mode:vm keeps the hardware configuration" in err
    assert wsman.scripts == ["check"]
    assert not wsman.machine.panther_deleted


def test_without_a_terminal_and_without_yes_it_refuses_with_5(wsman, certificate, capsys,
                                                             monkeypatch) -> None:
    monkeypatch.setattr(common, "stdin_is_terminal", lambda: False)
    code = main(args(wsman, certificate, *FAST))
    out, err = capsys.readouterr()
    assert code == 5
    assert "back the VM up" in err and "--yes" in err
    assert wsman.scripts == ["check"]


def test_declining_on_the_terminal_refuses_with_5(wsman, certificate, capsys,
                                                 monkeypatch) -> None:
    monkeypatch.setattr(common, "stdin_is_terminal", lambda: True)
    monkeypatch.setattr(common, "confirm", lambda question: False)
    assert main(args(wsman, certificate, *FAST)) == 5
    assert wsman.scripts == ["check"]


def test_a_full_run_generalizes_shuts_down_and_sees_the_host_gone(wsman, certificate, capsys,
                                                                 monkeypatch) -> None:
    asked = []
    monkeypatch.setattr(common, "stdin_is_terminal", lambda: True)
    monkeypatch.setattr(common, "confirm", lambda question: asked.append(question) or True)
    code = main(args(wsman, certificate, "--json", *FAST))
    out, err = capsys.readouterr()
    assert code == 0, err
    assert asked and "back the VM up" in err
    assert "Plan for 127.0.0.1:" in err  # the plan is shown before the question
    assert err.index("Sysprep.exe /generalize /oobe /quiet /quit") < err.index("back the VM up")
    assert wsman.scripts == ["check", "clean-panther", "start-sysprep", "image-state",
                             "image-state", "image-state", "shutdown"]
    assert wsman.machine.sysprep_arguments == ["/generalize", "/oobe", "/quiet", "/quit"]
    assert wsman.machine.panther_deleted and wsman.machine.powered_off
    document = json.loads(out)
    assert document["ok"] is True
    assert document["result"]["image_state"] == "IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE"
    assert document["result"]["shutdown"].startswith("connection dropped")
    assert document["result"]["steps_done"][-1] == "host-gone"
    no_password(out, err)


def test_appx_failure_names_the_package_and_exits_4(wsman, certificate, machine, capsys) -> None:
    machine.sysprep_scenario = "appx_failure"
    code = main(args(wsman, certificate, "--yes", *FAST))
    out, err = capsys.readouterr()
    assert code == 4
    assert APPX_FAILURE_PACKAGE in err
    assert "IMAGE_STATE_UNDEPLOYABLE" in err
    assert wsman.scripts[-1] == "fetch-logs" and "shutdown" not in wsman.scripts
    assert not machine.powered_off
    no_password(out, err)


def test_stuck_sysprep_times_out_with_the_log_errors(wsman, certificate, machine, capsys) -> None:
    machine.sysprep_scenario = "stuck"
    code = main(args(wsman, certificate, "--yes", "--json", "--timeout", "6", *FAST))
    out, err = capsys.readouterr()
    assert code == 4
    error = json.loads(out)["error"]
    assert error["code"] == "timeout"
    assert "still IMAGE_STATE_UNDEPLOYABLE" in error["message"]
    assert "still running" in error["message"]
    assert "did not reach the generalize state" in error["message"]  # logged at poll 2
    assert wsman.scripts.count("image-state") >= 2
    assert wsman.scripts[-1] == "fetch-logs" and not machine.powered_off


def test_basic_over_http_is_refused_with_2(capsys, monkeypatch) -> None:
    monkeypatch.setenv(PASSWORD_VAR, TEST_PASSWORD)
    code = main(["prep", "windows", "127.0.0.1", "--http", "--transport", "basic",
                 "--password-env", PASSWORD_VAR, "--check-only"])
    out, err = capsys.readouterr()
    assert code == 2 and "clear text" in err


def test_untrusted_certificate_is_refused_with_4(wsman, certificate, capsys) -> None:
    full = args(wsman, certificate, "--check-only")
    at = full.index("--ca-cert")
    code = main(full[:at] + full[at + 2:])
    out, err = capsys.readouterr()
    assert code == 4 and "not trusted" in err and "--ca-cert" in err
    assert wsman.scripts == []


def test_insecure_and_http_warn_every_time(wsman, certificate, capsys) -> None:
    full = args(wsman, certificate, "--check-only", "--insecure-skip-tls-verify")
    at = full.index("--ca-cert")
    for _ in range(2):
        assert main(full[:at] + full[at + 2:]) == 0
        assert "--insecure-skip-tls-verify" in capsys.readouterr().err


def test_missing_password_variable_is_a_usage_error(wsman, certificate, capsys,
                                                    monkeypatch) -> None:
    monkeypatch.delenv(PASSWORD_VAR)
    assert main(args(wsman, certificate, "--check-only")) == 2
    assert PASSWORD_VAR in capsys.readouterr().err


def test_the_installed_executable_runs_the_checks(wsman, certificate) -> None:
    azlift = Path(sys.executable).with_name("azlift")
    env = {**os.environ, PASSWORD_VAR: TEST_PASSWORD}
    done = subprocess.run([str(azlift), *args(wsman, certificate, "--check-only", "--json")],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] is True
    no_password(done.stdout, done.stderr)


def test_no_terminal_executable_refuses_with_5(wsman, certificate) -> None:
    azlift = Path(sys.executable).with_name("azlift")
    env = {**os.environ, PASSWORD_VAR: TEST_PASSWORD}
    done = subprocess.run([str(azlift), *args(wsman, certificate, *FAST)], capture_output=True,
                          text=True, env=env, stdin=subprocess.DEVNULL, timeout=60)
    assert done.returncode == 5, done.stderr
    assert wsman.scripts == ["check"]
    no_password(done.stdout, done.stderr)


def test_the_password_prompt_is_hidden_and_never_echoed(wsman, certificate, monkeypatch) -> None:
    from typer.testing import CliRunner

    from azlift.cli.main import app
    monkeypatch.setattr(common, "stdin_is_terminal", lambda: True)
    full = args(wsman, certificate, "--check-only")
    at = full.index("--password-env")
    result = CliRunner().invoke(app, full[:at] + full[at + 2:], input=TEST_PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert f"Password for {TEST_USER}@127.0.0.1" in result.output
    assert TEST_PASSWORD not in result.output
    assert wsman.scripts == ["check"]


def test_without_a_terminal_or_variable_there_is_no_password_prompt(wsman, certificate, capsys,
                                                                    monkeypatch) -> None:
    monkeypatch.setattr(common, "stdin_is_terminal", lambda: False)
    full = args(wsman, certificate, "--check-only")
    at = full.index("--password-env")
    assert main(full[:at] + full[at + 2:]) == 2
    assert "--password-env" in capsys.readouterr().err
    assert wsman.scripts == []


def test_rejected_credentials_exit_4_without_echoing_the_password(wsman, certificate, capsys,
                                                                 monkeypatch) -> None:
    monkeypatch.setenv(PASSWORD_VAR, "Wr0ng-secret-value")
    code = main(args(wsman, certificate, "--check-only", "--json"))
    out, err = capsys.readouterr()
    assert code == 4
    assert json.loads(out)["error"]["code"] == "remote_auth_failed"
    assert "Wr0ng-secret-value" not in out + err
    assert wsman.scripts == []


def test_an_unknown_transport_is_a_usage_error(wsman, certificate, capsys) -> None:
    full = args(wsman, certificate, "--check-only")
    full[full.index("basic")] = "digest"
    assert main(full) == 2
    assert "ntlm, kerberos, credssp, basic" in capsys.readouterr().err


def test_dry_run_json_with_blockers_is_one_document_and_exit_1(wsman, certificate, machine,
                                                               capsys) -> None:
    machine.is_admin = False
    code = main(args(wsman, certificate, "--dry-run", "--json"))
    out, err = capsys.readouterr()
    assert code == 1
    document = json.loads(out)  # exactly one JSON document
    assert document["ok"] is False and document["plan"]["steps"]
    assert "--force" in err
    assert wsman.scripts == ["check"]


def test_a_failure_quotes_this_runs_log_lines_not_an_earlier_runs(wsman, certificate, machine,
                                                                  capsys) -> None:
    from tests.support.fake_wsman import appx_failure_logs
    machine.setuperr_log, machine.setupact_log = appx_failure_logs()  # an earlier failed run
    machine.sysprep_scenario = "stuck"
    code = main(args(wsman, certificate, "--yes", "--timeout", "0.6", *FAST))
    err = capsys.readouterr().err
    assert code == 4
    assert "did not reach the generalize state" in err
    assert APPX_FAILURE_PACKAGE not in err and "0x3cf2" not in err


@pytest.mark.parametrize("case", ["wrong-password", "sysprep-fails", "host-down"])
def test_debug_tracebacks_carry_no_password(wsman, certificate, machine, capsys, monkeypatch,
                                            case) -> None:
    password = TEST_PASSWORD
    if case == "wrong-password":
        password = "Wr0ng-secret-value"
        monkeypatch.setenv(PASSWORD_VAR, password)
    elif case == "sysprep-fails":
        machine.sysprep_scenario = "appx_failure"
    else:
        wsman.stop()
    code = main(["--debug", *args(wsman, certificate, "--yes", "--json", *FAST)])
    out, err = capsys.readouterr()
    assert code == 4
    assert "Traceback (most recent call last)" in err  # --debug did print one
    assert json.loads(out)["ok"] is False
    assert password not in out + err


def test_help_says_why_mode_vm_is_wrong_for_another_hypervisor(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["prep", "windows", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert "--mode-vm" in text and "/mode:vm" in text
    assert "a VM from VMware, KVM or another Hyper-V host moves to Azure's different hardware" \
        in text
    assert "WinRM port (default 5986, or 5985 with --http)" in text
    assert "--insecure-skip-tls-verify" in text and "--ca-cert" in text


def test_force_goes_ahead_despite_blockers_and_says_so(wsman, certificate, machine,
                                                       capsys) -> None:
    machine.reboot_pending_cbs = True
    code = main(args(wsman, certificate, "--yes", "--force", "--mode-vm", *FAST))
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "--force: going ahead despite windows.pending_reboot" in err
    assert "/mode:vm keeps the hardware configuration" in err
    assert machine.sysprep_arguments == ["/generalize", "/oobe", "/quiet", "/quit", "/mode:vm"]
    assert machine.powered_off and "generalized" in out
    # A closed WinRM port is not proof the VM is off: the user is told to confirm it.
    assert "stopped answering; confirm the VM is Off in the hypervisor before capturing" in out
    assert "powered off" not in out


def test_plain_http_with_the_default_ntlm_runs_sealed_and_is_warned_about(
        wsman_ntlm, capsys) -> None:  # noqa: F811
    # No --transport: the default, NTLM, against a real acceptor, messages sealed over HTTP.
    code = main(["prep", "windows", "127.0.0.1", "--http", "--port", str(wsman_ntlm.port),
                 "--user", TEST_USER, "--password-env", PASSWORD_VAR, "--check-only"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "--http: talking to 127.0.0.1 over plain HTTP" in err
    assert wsman_ntlm.scripts == ["check"] and wsman_ntlm.ntlm_logins == [TEST_USER]
    assert wsman_ntlm.sealed_requests == len(wsman_ntlm.actions)
    assert TEST_PASSWORD not in err


@pytest.mark.parametrize("transport, flag", [("kerberos", "HAVE_KERBEROS"),
                                             ("credssp", "HAVE_CREDSSP")])
def test_kerberos_or_credssp_without_its_package_exits_2(transport, flag, capsys,
                                                         monkeypatch) -> None:
    from winrm import transport as winrm_transport
    monkeypatch.setattr(winrm_transport, flag, False)
    code = main(["prep", "windows", "127.0.0.1", "--transport", transport,
                 "--password-env", PASSWORD_VAR, "--check-only"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"--transport {transport} needs the Python package" in err
    assert f"pywinrm[{transport}]" in err


@pytest.mark.parametrize("argv", [["127.0.0.1", "--port", "99999"], ["bad host name"]])
def test_a_bad_host_or_port_is_a_usage_error(argv, capsys) -> None:
    code = main(["prep", "windows", *argv, "--password-env", PASSWORD_VAR, "--check-only"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "internal error" not in err and "Traceback" not in err


def test_the_installed_executable_runs_sysprep_to_the_end(wsman, certificate) -> None:
    azlift = Path(sys.executable).with_name("azlift")
    env = {**os.environ, PASSWORD_VAR: TEST_PASSWORD}
    done = subprocess.run([str(azlift), *args(wsman, certificate, "--yes", "--json", *FAST)],
                          capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)["result"]
    assert result["image_state"] == "IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE"
    assert result["steps_done"] == ["clean-panther", "start-sysprep", "wait-generalized",
                                    "shutdown", "host-gone"]
    assert wsman.scripts[-1] == "shutdown" and wsman.machine.powered_off
    no_password(done.stdout, done.stderr)


def test_a_ready_guest_reports_every_section_so_nothing_is_unchecked(wsman, certificate,
                                                                     capsys) -> None:
    """The fake answers check.ps1 with every section the script writes (as a ready Server
    2022 prints them), so the whole path finds nothing it could not check."""
    code = main(args(wsman, certificate, "--check-only", "--json"))
    out, err = capsys.readouterr()
    assert code == 0, err
    findings = json.loads(out)["findings"]
    unchecked = [f["message"] for f in findings if "could not check" in f["message"]]
    assert unchecked == []
    assert not [f for f in findings if f["severity"] in ("blocker", "warning")], findings


@pytest.mark.parametrize("command", ["windows", "linux"])
def test_a_password_typed_for_its_variables_name_is_refused_unrepeated(
        command: str, capsys) -> None:
    """`--password-env "$PW"` is an easy slip: the value must reach neither the message
    nor the --json document (a CI log keeps both)."""
    secret = "Sup3rS3cret!pw"
    extra = ["--user", "azureuser"] if command == "linux" else []
    assert main(["prep", command, "127.0.0.1", *extra, "--password-env", secret,
                 "--check-only", "--json"]) == 2
    out, err = capsys.readouterr()
    assert secret not in out + err
    assert "expected the NAME of an environment variable" in out + err

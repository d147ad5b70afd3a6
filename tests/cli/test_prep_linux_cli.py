"""`azlift prep linux` through the installed executable, CliRunner and main()."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from azlift.cli import common
from azlift.cli.main import app, main
from tests.prep.linux.conftest import keys, known_hosts, root_tree, start_sshd, trust  # noqa: F401
from tests.support.rootfs import RECORDED_LOG, read_log

AZLIFT = shutil.which("azlift", path=str(Path(sys.executable).parent)) or "azlift"


def argv(server, keys, known_hosts, *extra: str) -> list[str]:  # noqa: F811
    return ["prep", "linux", server.host, "--port", str(server.port), "--user", "root",
            "--identity", str(keys.client_key), "--known-hosts", str(known_hosts),
            "--timeout", "30", *extra]


def run_installed(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([AZLIFT, *args], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})


def test_installed_check_only_json_is_one_document(root_tree, start_sshd, keys,  # noqa: F811
                                                   known_hosts) -> None:  # noqa: F811
    server = start_sshd(root_tree("azurelinux"))
    trust(server, known_hosts)
    done = run_installed(*argv(server, keys, known_hosts, "--check-only", "--json"))
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["family"] == "azurelinux" and document["ready"] is True
    assert {f["severity"] for f in document["findings"]} == {"ok"}


def test_installed_without_terminal_or_yes_exits_5(root_tree, start_sshd, keys,  # noqa: F811
                                                   known_hosts) -> None:  # noqa: F811
    server = start_sshd(root_tree("ubuntu"))
    trust(server, known_hosts)
    done = run_installed(*argv(server, keys, known_hosts))
    assert done.returncode == 5
    assert done.stderr.strip().splitlines()[-1].startswith("azlift: error: refusing to deprovision")
    assert "Plan for 127.0.0.1 (ubuntu)" in done.stderr and "Traceback" not in done.stderr
    assert read_log(server.upper, RECORDED_LOG) == []


def test_installed_unknown_host_key_is_one_line_exit_4(root_tree, start_sshd, keys,  # noqa: F811
                                                       known_hosts) -> None:  # noqa: F811
    server = start_sshd(root_tree("debian"))
    done = run_installed(*argv(server, keys, known_hosts, "--check-only", "--json"))
    assert done.returncode == 4
    assert len(done.stderr.strip().splitlines()) == 1
    error = json.loads(done.stdout)["error"]
    assert error["code"] == "host_key_rejected" and error["exit_code"] == 4
    assert keys.host_public.split()[1] not in done.stderr  # the fingerprint, not the key
    assert "SHA256:" in done.stderr


@pytest.mark.parametrize("answer, code, recorded", [("n\n", 5, False), ("y\n", 0, True)])
def test_terminal_confirmation(answer: str, code: int, recorded: bool, root_tree,  # noqa: F811
                               start_sshd, keys, known_hosts, monkeypatch) -> None:  # noqa: F811
    monkeypatch.setattr(common, "stdin_is_terminal", lambda: True)
    server = start_sshd(root_tree("debian"))
    trust(server, known_hosts)
    result = CliRunner().invoke(app, argv(server, keys, known_hosts), input=answer)
    assert result.exit_code == code, result.output
    assert "back the VM up" in result.output  # the backup reminder comes before the question
    assert bool(read_log(server.upper, RECORDED_LOG)) == recorded


def test_check_only_and_dry_run_exclude_each_other(capsys) -> None:
    assert main(["prep", "linux", "h", "--check-only", "--dry-run"]) == 2
    assert "exclude each other" in capsys.readouterr().err


def test_password_variable_must_be_set(capsys, monkeypatch) -> None:
    monkeypatch.delenv("AZLIFT_TEST_UNSET", raising=False)
    assert main(["prep", "linux", "h", "--sudo-password-env", "AZLIFT_TEST_UNSET"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "AZLIFT_TEST_UNSET" in err


@pytest.mark.parametrize("name", ["root", "-rf"])
def test_delete_user_root_or_an_option_is_refused_before_connecting(name: str, capsys) -> None:
    # port 1 on 127.0.0.1 refuses connections: had azlift connected, the error would say so
    assert main(["prep", "linux", "127.0.0.1", "--port", "1", f"--delete-user={name}",
                 "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--delete-user" in err and "cannot reach" not in err


def test_a_bracketed_ipv6_address_is_the_address(capsys) -> None:
    assert main(["prep", "linux", "[::1]", "--port", "1", "--check-only"]) == 4
    err = capsys.readouterr().err
    assert err.startswith("azlift: error: cannot reach ::1:1: ") and "not known" not in err


def test_help_lists_every_option() -> None:
    result = CliRunner().invoke(app, ["prep", "linux", "--help"])
    assert result.exit_code == 0
    for option in ("--port", "--user", "--identity", "--password-env", "--sudo-password-env",
                   "--known-hosts", "--accept-new-host-key", "--check-only", "--dry-run",
                   "--yes", "--delete-user", "--no-shutdown", "--timeout", "--json"):
        assert option in result.output


def test_sudo_password_prompted_on_a_terminal_and_not_echoed(root_tree, start_sshd,  # noqa: F811
                                                             keys, known_hosts,  # noqa: F811
                                                             monkeypatch) -> None:
    from tests.support.rootfs import SUDO_LOG, SUDO_PASSWORD_FILE
    tree = root_tree("ubuntu", variant="-sudoer", sudoer_owns_tree=True)
    password = (tree / SUDO_PASSWORD_FILE).read_text().strip()
    monkeypatch.setattr(common, "stdin_is_terminal", lambda: True)
    server = start_sshd(tree)
    trust(server, known_hosts)
    args = argv(server, keys, known_hosts, "--check-only")
    args[args.index("root")] = "admin"
    result = CliRunner().invoke(app, args, input=password + "\n")
    assert result.exit_code == 0, result.output
    assert "sudo password for admin@127.0.0.1" in result.output
    assert password not in result.output
    assert "result [password-ok]" in read_log(server.upper, SUDO_LOG)


def test_login_password_prompted_on_a_terminal_when_keys_are_refused(
        root_tree, start_sshd, keys, known_hosts, monkeypatch, tmp_path) -> None:  # noqa: F811
    from tests.support.rootfs import SUDO_PASSWORD_FILE
    from tests.support.sshd import LOGIN_PASSWORD
    tree = root_tree("ubuntu", variant="-sudoer", sudoer_owns_tree=True)
    monkeypatch.setenv("AZLIFT_TEST_SUDO_PW", (tree / SUDO_PASSWORD_FILE).read_text().strip())
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh keys: only a password can log in
    monkeypatch.setattr(common, "stdin_is_terminal", lambda: True)
    server = start_sshd(tree)
    trust(server, known_hosts)
    args = ["prep", "linux", server.host, "--port", str(server.port), "--user", "admin",
            "--known-hosts", str(known_hosts), "--timeout", "30", "--check-only",
            "--sudo-password-env", "AZLIFT_TEST_SUDO_PW"]
    result = CliRunner().invoke(app, args, input=LOGIN_PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert "password for admin@127.0.0.1" in result.output
    assert LOGIN_PASSWORD not in result.output
    # without a terminal, the refusal stays one error line (exit 4), nothing is asked
    monkeypatch.setattr(common, "stdin_is_terminal", lambda: False)
    result = CliRunner().invoke(app, args, input=LOGIN_PASSWORD + "\n")
    assert result.exit_code == 4 and "password for" not in result.output


@pytest.mark.parametrize("debug", [False, True])
def test_a_port_that_does_not_speak_ssh_is_one_line_without_debug(tmp_path, debug) -> None:
    """paramiko's transport thread logs a traceback when the banner never comes; without
    --debug the user sees the one error line and nothing else."""
    import socket
    import threading

    from tests.cli.conftest import installed_azlift

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def hang_up() -> None:
        for _ in range(3):
            try:
                connection, _ = server.accept()
            except OSError:
                return
            connection.close()

    threading.Thread(target=hang_up, daemon=True).start()
    try:
        done = subprocess.run(
            [installed_azlift(), *(["--debug"] if debug else []), "prep", "linux",
             "127.0.0.1", "--port", str(port), "--user", "azureuser",
             "--known-hosts", str(tmp_path / "known_hosts"), "--check-only"],
            capture_output=True, text=True, timeout=120,
            env={**os.environ, "HOME": str(tmp_path)})
    finally:
        server.close()
    assert done.returncode == 4, done.stderr
    if debug:
        assert "Traceback" in done.stderr
    else:
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert done.stderr.startswith("azlift: error: ")

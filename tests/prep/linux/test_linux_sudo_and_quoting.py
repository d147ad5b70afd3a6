"""A sudoer with the password on stdin, sudo -n, and hostile names reaching a real shell."""
from __future__ import annotations

import json

import pytest

from tests.prep.linux.conftest import trust
from tests.prep.linux.test_linux_over_ssh import cli
from tests.support.rootfs import (
    HYPERV_LISTING,
    QUERIES_LOG,
    RECORDED_LOG,
    SUDO_LOG,
    SUDO_PASSWORD_FILE,
    read_log,
)

PASSWORD_VAR = "AZLIFT_TEST_SUDO_PASSWORD"
HOSTILE_USER = "o'brien; touch /pwned #$(touch /pwned2)"
HOSTILE_INITRAMFS = "boot/initrd.img-9.9.9-$(touch pwned)';touch pwned2 #`touch pwned3`"


@pytest.fixture
def sudoer_tree(root_tree):
    # uid 1000 owns the files, so the stand-in sudo (which cannot change uid) can act
    return root_tree("ubuntu", variant="-sudoer", sudoer_owns_tree=True)


@pytest.fixture
def sudo_password(monkeypatch: pytest.MonkeyPatch, sudoer_tree) -> str:
    password = (sudoer_tree / SUDO_PASSWORD_FILE).read_text().strip()
    monkeypatch.setenv(PASSWORD_VAR, password)
    return password


def test_sudo_password_goes_on_stdin_and_the_deprovision_completes(
        sudoer_tree, sudo_password, start_sshd, keys, known_hosts, capsys) -> None:
    server = start_sshd(sudoer_tree)
    trust(server, known_hosts)
    code = cli(server, keys, known_hosts, "--yes", "--json", "--sudo-password-env", PASSWORD_VAR,
               user="admin")
    captured = capsys.readouterr()
    assert code == 0, captured.err
    document = json.loads(captured.out)
    assert document["privilege"] == "sudo-password" and document["login_user"] == "admin"
    assert document["plan"]["deleted_user"] == "admin"  # the login user, by default
    assert read_log(server.upper, RECORDED_LOG) == [
        "cloud-init [clean] [--logs] [--seed]", "waagent [-force] [-deprovision+user]",
        "userdel [-f] [-r] [admin]", "shutdown [-h] [now]"]
    sudo_calls = read_log(server.upper, SUDO_LOG)
    calls = [c for c in sudo_calls if c.startswith("sudo ")]
    # sudo -n is probed first (a NOPASSWD sudoer must not get the password on stdin), then
    # every command runs under sudo -k -S, which always reads the password line itself
    assert calls[0].startswith("sudo [-n] [--] [sh] [-c]")
    assert calls[1:] and all(c.startswith("sudo [-k] [-S] [-p] [] [--] [sh] [-c]")
                             for c in calls[1:])
    assert sudo_calls.count("result [password-ok]") == len(calls) - 1
    assert "result [bad-password]" not in sudo_calls
    for text in (*sudo_calls, captured.out, captured.err):
        assert sudo_password not in text


def test_wrong_sudo_password_is_refused_before_any_change(
        sudoer_tree, start_sshd, keys, known_hosts, monkeypatch, capsys) -> None:
    monkeypatch.setenv(PASSWORD_VAR, "not the password")
    server = start_sshd(sudoer_tree)
    trust(server, known_hosts)
    code = cli(server, keys, known_hosts, "--yes", "--sudo-password-env", PASSWORD_VAR,
               user="admin")
    err = capsys.readouterr().err
    assert code == 4, err
    assert "refused the password" in err and "not the password" not in err
    assert read_log(server.upper, SUDO_LOG)[-1] == "result [bad-password]"
    assert read_log(server.upper, RECORDED_LOG) == []


def test_sudoer_without_password_and_without_terminal_gets_a_hint(
        sudoer_tree, start_sshd, keys, known_hosts, capsys) -> None:
    server = start_sshd(sudoer_tree)
    trust(server, known_hosts)
    code = cli(server, keys, known_hosts, "--check-only", user="admin")
    err = capsys.readouterr().err
    assert code == 4, err
    assert "sudo -n needs a password" in err and "--sudo-password-env" in err


@pytest.mark.parametrize("with_password", [False, True])
def test_passwordless_sudo_uses_sudo_n(with_password: bool, root_tree, start_sshd, keys,
                                       known_hosts, monkeypatch, capsys) -> None:
    tree = root_tree("rocky", variant="-nopasswd", sudoer_owns_tree=True,
                     extra_files={"etc/sandbox-sudo-nopasswd": ""})
    server = start_sshd(tree)
    trust(server, known_hosts)
    # a password given anyway is not sent: NOPASSWD sudo would pass it to the command
    monkeypatch.setenv(PASSWORD_VAR, "needless sudo password")
    extra = ("--sudo-password-env", PASSWORD_VAR) if with_password else ()
    code = cli(server, keys, known_hosts, "--check-only", "--json", *extra, user="admin")
    captured = capsys.readouterr()
    assert code == 0, captured.err
    document = json.loads(captured.out)
    assert document["privilege"] == "sudo" and document["family"] == "rocky"
    calls = [c for c in read_log(server.upper, SUDO_LOG) if c.startswith("sudo ")]
    assert calls and all(c.startswith("sudo [-n] [--] [sh] [-c]") for c in calls)


def test_hostile_user_name_reaches_userdel_as_one_argument(
        root_tree, start_sshd, keys, known_hosts, capsys) -> None:
    server = start_sshd(root_tree("debian"))
    trust(server, known_hosts)
    code = cli(server, keys, known_hosts, "--yes", "--delete-user", HOSTILE_USER)
    assert code == 0, capsys.readouterr().err
    recorded = read_log(server.upper, RECORDED_LOG)
    assert f"userdel [-f] [-r] [{HOSTILE_USER}]" in recorded
    assert recorded[-1] == "shutdown [-h] [now]"
    assert not [p for p in server.upper.rglob("pwned*")]


def test_hostile_initramfs_path_reaches_the_lister_as_one_argument(
        root_tree, start_sshd, keys, known_hosts, capsys) -> None:
    tree = root_tree("ubuntu", variant="-hostile-path",
                     extra_files={HOSTILE_INITRAMFS: HYPERV_LISTING + "\n"})
    server = start_sshd(tree)
    trust(server, known_hosts)
    code = cli(server, keys, known_hosts, "--check-only")
    assert code == 0, capsys.readouterr().err
    assert read_log(server.upper, QUERIES_LOG) == [f"lsinitramfs [/{HOSTILE_INITRAMFS}]"]
    assert not [p for p in server.upper.rglob("pwned*")]


def test_password_login_from_the_environment(sudoer_tree, sudo_password, start_sshd, keys,
                                             known_hosts, monkeypatch, capsys) -> None:
    from azlift.cli.main import main
    from tests.support.sshd import LOGIN_PASSWORD
    server = start_sshd(sudoer_tree)
    trust(server, known_hosts)
    base = ["prep", "linux", server.host, "--port", str(server.port), "--user", "admin",
            "--known-hosts", str(known_hosts), "--timeout", "30", "--check-only",
            "--password-env", "AZLIFT_TEST_LOGIN_PASSWORD", "--sudo-password-env", PASSWORD_VAR]
    monkeypatch.setenv("AZLIFT_TEST_LOGIN_PASSWORD", "wrong login password")
    assert main(base) == 4
    err = capsys.readouterr().err
    assert "refused user 'admin'" in err and "wrong login password" not in err
    monkeypatch.setenv("AZLIFT_TEST_LOGIN_PASSWORD", LOGIN_PASSWORD)
    assert main([*base, "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["privilege"] == "sudo-password"
    assert LOGIN_PASSWORD not in captured.out + captured.err


def test_no_sudo_on_the_guest_says_so(root_tree, start_sshd, keys, known_hosts,
                                      monkeypatch, capsys) -> None:
    tree = root_tree("debian", variant="-no-sudo", sudoer_owns_tree=True)
    (tree / "usr/bin/sudo").unlink(missing_ok=True)
    assert not any((tree / d / "sudo").exists() for d in ("bin", "sbin", "usr/sbin"))
    server = start_sshd(tree)
    trust(server, known_hosts)
    monkeypatch.setenv(PASSWORD_VAR, "some password")
    code = cli(server, keys, known_hosts, "--check-only", "--sudo-password-env", PASSWORD_VAR,
               user="admin")
    err = capsys.readouterr().err
    assert code == 4, err
    assert err.count("\n") == 1 and "sudo is not installed" in err and "--user root" in err

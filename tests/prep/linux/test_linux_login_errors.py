"""Login failures: one line, exit 4 (or 2 for usage), and no secret in any output."""
from __future__ import annotations

import json
import subprocess

import pytest

from azlift.cli.main import main
from tests.prep.linux.conftest import trust
from tests.support.tools import require_executable


def base(server, known_hosts, *extra: str, user: str = "root") -> list[str]:
    return ["prep", "linux", server.host, "--port", str(server.port), "--user", user,
            "--known-hosts", str(known_hosts), "--timeout", "30", "--check-only", *extra]


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("azlift: error: ")
    return lines[0]


def make_key(path, passphrase: str = "") -> None:
    subprocess.run([require_executable("ssh-keygen"), "-q", "-t", "ed25519", "-N", passphrase,
                    "-C", "other", "-f", str(path)], check=True)


def test_a_file_that_is_not_a_key(root_tree, start_sshd, known_hosts, tmp_path, capsys) -> None:
    server = start_sshd(root_tree("debian"))
    trust(server, known_hosts)
    garbage = tmp_path / "not-a-key"
    garbage.write_text("this is not a private key\n")
    assert main(base(server, known_hosts, "--identity", str(garbage))) == 4
    line = one_error_line(capsys.readouterr().err)
    assert str(garbage) in line and "expected a private key" in line


def test_a_key_the_host_does_not_accept(root_tree, start_sshd, known_hosts, tmp_path,
                                        capsys) -> None:
    server = start_sshd(root_tree("debian"))
    trust(server, known_hosts)
    make_key(tmp_path / "other")
    assert main(base(server, known_hosts, "--identity", str(tmp_path / "other"))) == 4
    line = one_error_line(capsys.readouterr().err)
    assert "refused user 'root'" in line


def test_a_passphrase_protected_key(root_tree, start_sshd, known_hosts, tmp_path,
                                    capsys) -> None:
    server = start_sshd(root_tree("debian"))
    trust(server, known_hosts)
    make_key(tmp_path / "locked", passphrase="key passphrase")
    assert main(base(server, known_hosts, "--identity", str(tmp_path / "locked"))) == 4
    line = one_error_line(capsys.readouterr().err)
    assert str(tmp_path / "locked") in line and "passphrase" in line
    assert "cannot reach" not in line


def test_missing_login_password_variable_is_a_usage_error(capsys, monkeypatch) -> None:
    monkeypatch.delenv("AZLIFT_TEST_UNSET_LOGIN", raising=False)
    assert main(["prep", "linux", "h", "--password-env", "AZLIFT_TEST_UNSET_LOGIN"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "--password-env AZLIFT_TEST_UNSET_LOGIN" in line


@pytest.mark.parametrize("flags", [[], ["--json"]])
def test_wrong_login_password_never_shows_the_password(flags, root_tree, start_sshd,
                                                       known_hosts, monkeypatch,
                                                       capsys) -> None:
    server = start_sshd(root_tree("ubuntu", variant="-sudoer", sudoer_owns_tree=True))
    trust(server, known_hosts)
    secret = "Wr0ng-login-s3cret"
    monkeypatch.setenv("AZLIFT_TEST_LOGIN_PASSWORD", secret)
    monkeypatch.setenv("AZLIFT_TEST_SUDO", "sudo-s3cret-value")
    args = ["--debug", *base(server, known_hosts, "--password-env", "AZLIFT_TEST_LOGIN_PASSWORD",
                          "--sudo-password-env", "AZLIFT_TEST_SUDO", *flags, user="admin")]
    assert main(args) == 4
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert "refused user 'admin'" in output
    assert secret not in output and "sudo-s3cret-value" not in output
    if "--json" in flags:
        assert json.loads(captured.out)["error"]["code"] == "remote_auth_failed"


def test_no_key_agent_or_password_says_what_to_pass(root_tree, start_sshd, known_hosts,
                                                    tmp_path, monkeypatch, capsys) -> None:
    server = start_sshd(root_tree("debian"))
    trust(server, known_hosts)
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh keys to find
    assert main(base(server, known_hosts)) == 4
    line = one_error_line(capsys.readouterr().err)
    assert "--identity KEY_FILE or --password-env VAR" in line and "cannot reach" not in line


@pytest.mark.parametrize("flags", [[], ["--json"]])
def test_wrong_sudo_password_under_debug_never_shows_it(flags, root_tree, start_sshd, keys,
                                                       known_hosts, monkeypatch,
                                                       capsys) -> None:
    server = start_sshd(root_tree("ubuntu", variant="-sudoer", sudoer_owns_tree=True))
    trust(server, known_hosts)
    monkeypatch.setenv("AZLIFT_TEST_SUDO", "Wr0ng-sudo-s3cret")
    args = ["--debug", *base(server, known_hosts, "--identity", str(keys.client_key),
                             "--sudo-password-env", "AZLIFT_TEST_SUDO", *flags, user="admin")]
    assert main(args) == 4
    captured = capsys.readouterr()
    assert "Traceback" in captured.err  # --debug shows it, and still no password
    assert "refused the password" in captured.err
    assert "Wr0ng-sudo-s3cret" not in captured.out + captured.err
    if flags:
        assert json.loads(captured.out)["error"]["code"] == "no_privilege"


def test_a_certificate_beside_the_key_is_used(tmp_path) -> None:
    from azlift.prep.errors import RemoteAuthError
    from azlift.prep.ssh import load_identity
    ssh_keygen = require_executable("ssh-keygen")
    for name in ("ca", "user", "other"):
        make_key(tmp_path / name)
    subprocess.run([ssh_keygen, "-q", "-s", str(tmp_path / "ca"), "-I", "sandbox", "-n", "root",
                    str(tmp_path / "user.pub")], check=True)
    assert load_identity(tmp_path / "other").public_blob is None  # no certificate beside it
    key = load_identity(tmp_path / "user")
    assert key.public_blob is not None
    assert key.public_blob.key_type == "ssh-ed25519-cert-v01@openssh.com"
    (tmp_path / "other-cert.pub").write_text("not a certificate\n")
    with pytest.raises(RemoteAuthError, match="valid certificate in .*other-cert.pub"):
        load_identity(tmp_path / "other")

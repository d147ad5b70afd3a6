"""Failures read as one clear line and a documented exit code: timeouts, failed steps."""
from __future__ import annotations

import socket
import time

from azlift.cli.main import main
from tests.prep.linux.conftest import trust
from tests.prep.linux.test_linux_over_ssh import cli
from tests.support.rootfs import RECORDED_LOG, read_log


def executable(tree, relative: str):
    (tree / relative).chmod(0o755)
    return tree


def test_a_hanging_command_times_out_with_exit_4(root_tree, start_sshd, keys, known_hosts,
                                                 capsys) -> None:
    tree = executable(root_tree("debian", variant="-hanging-lister",
                                extra_files={"usr/bin/lsinitramfs": "#!/bin/sh\nsleep 120\n"}),
                      "usr/bin/lsinitramfs")
    server = start_sshd(tree)
    trust(server, known_hosts)
    started = time.monotonic()
    code = main(["prep", "linux", server.host, "--port", str(server.port), "--user", "root",
                 "--identity", str(keys.client_key), "--known-hosts", str(known_hosts),
                 "--timeout", "4", "--check-only"])
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == 4, err
    # --timeout bounds connecting and each command: 4 s leaves room for a loaded machine
    # to connect, and a lister that sleeps 120 s must still end the run well before that
    assert 4 <= elapsed < 60
    assert "did not finish in time" in err and err.count("\n") == 1


def test_a_silent_port_is_an_ssh_error_within_the_timeout(tmp_path, capsys) -> None:
    with socket.socket() as listener:  # accepts TCP, never speaks SSH
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        started = time.monotonic()
        code = main(["prep", "linux", "127.0.0.1", "--port", str(port), "--user", "root",
                     "--known-hosts", str(tmp_path / "kh"), "--timeout", "1", "--check-only"])
        elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == 4, err
    assert elapsed < 5
    assert err.startswith("azlift: error: cannot reach 127.0.0.1:") and err.count("\n") == 1


def test_a_failing_step_stops_the_plan_before_the_power_off(root_tree, start_sshd, keys,
                                                           known_hosts, capsys) -> None:
    failing_agent = ("#!/bin/sh\necho \"waagent $*\" >> /var/log/recorded.log\n"
                     "echo 'waagent: could not stop the agent service' >&2\nexit 1\n")
    tree = executable(root_tree("debian", variant="-failing-agent",
                                extra_files={"usr/bin/waagent": failing_agent}),
                      "usr/bin/waagent")
    server = start_sshd(tree)
    trust(server, known_hosts)
    code = cli(server, keys, known_hosts, "--yes")
    err = capsys.readouterr().err
    assert code == 4, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("azlift: error: step 'deprovision with the Azure Linux agent' "
                           "failed (exit 1)")
    assert "could not stop the agent service" in last and "later steps were not run" in last
    assert read_log(server.upper, RECORDED_LOG) == [
        "cloud-init [clean] [--logs] [--seed]", "waagent -force -deprovision"]
    time.sleep(1.5)  # the detached final command was never launched
    assert not server.powered_off.is_set() and server.process.poll() is None

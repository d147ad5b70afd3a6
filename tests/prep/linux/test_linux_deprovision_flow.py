"""The execution order of a plan over the Remote seam (a scripted remote, no network)."""
from __future__ import annotations

import pytest

from azlift.prep.errors import ConnectionLostError, PrepTimeoutError, RemoteCommandError
from azlift.prep.linux import Facts, build_plan, deprovision
from azlift.prep.linux.families import FAMILIES_BY_ID
from azlift.prep.shell import Privilege, RootShell
from azlift.prep.transport import RunResult


class ScriptedRemote:
    """Answers every command with exit 0, except the ones told to fail or drop."""

    host = "vm"

    def __init__(self, fail: str | None = None, drop_on_final: bool = False) -> None:
        self.commands: list[str] = []
        self.fail = fail
        self.drop_on_final = drop_on_final
        self.alive = True

    def run(self, command: str, stdin: bytes | None = None,
            timeout: float | None = None) -> RunResult:
        self.commands.append(command)
        if self.fail and command == self.fail:
            return RunResult(2, "", "boom\nmore")
        if command.startswith("setsid ") and self.drop_on_final:
            self.alive = False
            raise ConnectionLostError("gone")
        return RunResult(0, "", "")

    def close(self) -> None:
        pass


PLAN = build_plan("vm", FAMILIES_BY_ID["ubuntu"](), Facts(cloud_init_installed=True),
                  login_user="admin", login_home="/home/admin")


def test_steps_in_order_then_one_detached_command_then_the_wait() -> None:
    remote = ScriptedRemote()
    seen: list[int] = []
    waits: list[bool] = []
    outcome = deprovision(RootShell(remote, Privilege.ROOT), PLAN,
                          wait_until_gone=lambda: waits.append(True) or 3.21,
                          on_step=lambda i, s: seen.append(i), final_delay=0)
    assert remote.commands[:-1] == [s.command for s in PLAN.steps]
    assert remote.commands[-1] == PLAN.final_command(0)
    assert seen == list(range(len(PLAN.steps) + len(PLAN.final_steps)))
    assert waits == [True]
    assert (outcome.host_gone, outcome.seconds_until_gone) == (True, 3.21)


def test_connection_lost_while_launching_the_final_command_is_success() -> None:
    remote = ScriptedRemote(drop_on_final=True)
    outcome = deprovision(RootShell(remote, Privilege.ROOT), PLAN, wait_until_gone=lambda: 0.5)
    assert outcome.connection_dropped and outcome.host_gone and outcome.final_launched


def test_a_failed_step_stops_before_the_final_command() -> None:
    remote = ScriptedRemote(fail="cloud-init clean --logs --seed")
    with pytest.raises(RemoteCommandError, match=r"exit 2\) on vm: boom; later steps"):
        deprovision(RootShell(remote, Privilege.ROOT), PLAN, wait_until_gone=lambda: 0.0)
    assert not any(c.startswith("setsid") for c in remote.commands)


def test_a_host_that_stays_up_is_a_timeout() -> None:
    def still_up() -> float:
        raise PrepTimeoutError("still answers")

    with pytest.raises(PrepTimeoutError):
        deprovision(RootShell(ScriptedRemote(), Privilege.ROOT), PLAN, wait_until_gone=still_up)


def test_sudo_password_travels_on_stdin_only() -> None:
    sent: list[tuple[str, bytes | None]] = []

    class Recorder(ScriptedRemote):
        def run(self, command, stdin=None, timeout=None):  # type: ignore[override]
            sent.append((command, stdin))
            return RunResult(0, "", "")

    shell = RootShell(Recorder(), Privilege.SUDO_PASSWORD, "s3cret-pw")
    shell.run("true")
    command, stdin = sent[0]
    assert "s3cret-pw" not in command and "s3cret-pw" not in repr(shell)
    assert stdin == b"s3cret-pw\n"


def test_the_real_wait_is_bounded_while_the_port_answers_and_ends_once_it_stops() -> None:
    import socket
    import threading
    import time

    from azlift.prep.reachability import wait_until_gone

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        listener.settimeout(0.2)
        port = listener.getsockname()[1]
        stop = threading.Event()

        def accept_like_sshd() -> None:  # a live sshd accepts every probe
            while not stop.is_set():
                try:
                    listener.accept()[0].close()
                except OSError:
                    pass

        acceptor = threading.Thread(target=accept_like_sshd, daemon=True)
        acceptor.start()
        started = time.monotonic()
        try:
            with pytest.raises(PrepTimeoutError, match=f"127.0.0.1:{port} still answers 1 s"):
                wait_until_gone("127.0.0.1", port, timeout=1.0, interval=0.05)
            # bounded: the timeout plus at most one probe's own bound, even on a loaded machine
            assert 1.0 <= time.monotonic() - started < 10
        finally:
            stop.set()
            acceptor.join(5)
    assert wait_until_gone("127.0.0.1", port, timeout=30.0) < 10  # closed: gone at once

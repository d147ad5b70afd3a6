"""kill -9 of `azlift upload` at every instant of its conversation with the service.

A proxy in front of Azurite sees each request when it arrives and when Azurite has
answered it; at one of those instants (all of them, in turn) the test SIGKILLs the
uploader and drops the request. Whatever state that leaves, `azlift upload --resume`
either completes it or refuses with the exact command that does, and the blob ends up
holding exactly the fixed VHD of the source.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from azlift.cli.main import main
from tests.cli.conftest import installed_azlift
from tests.support.azurite import azurite  # noqa: F401  (fixture)
from tests.support.fault_proxy import FaultProxy
from tests.vhd.images import MIB, write_raw

Request = tuple[int, str, str]  # index, method, target


@pytest.fixture(scope="module")
def disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 MiB with three separate pieces of data: with the footer, four Put Page requests."""
    chunks = [(offset * MIB + 8192, os.urandom(100_000)) for offset in (0, 9, 23)]
    return write_raw(tmp_path_factory.mktemp("sweep") / "disk.img", 24 * MIB, chunks)


def upload_through(proxy: FaultProxy, azurite, disk: Path, container: str,  # noqa: F811
                   state_dir: Path, *extra: str,
                   on_start: Callable[[subprocess.Popen], None] | None = None,
                   ) -> subprocess.CompletedProcess:
    endpoint = f"http://127.0.0.1:{proxy.port}/{azurite.account_name}"
    env = {**os.environ, "AZLIFT_EMULATOR_ENDPOINT": endpoint,
           "AZLIFT_STATE_DIR": str(state_dir)}
    process = subprocess.Popen(
        [installed_azlift(), "upload", str(disk), f"{container}/disk.vhd", "--emulator",
         "--threads", "1", "--retries", "0", "-q", *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if on_start is not None:
        on_start(process)
    out, err = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def run_in_process(monkeypatch, proxy: FaultProxy, azurite, state_dir: Path,  # noqa: F811
                   *args: str, capsys) -> tuple[int, str]:
    monkeypatch.setenv("AZLIFT_EMULATOR_ENDPOINT",
                       f"http://127.0.0.1:{proxy.port}/{azurite.account_name}")
    monkeypatch.setenv("AZLIFT_STATE_DIR", str(state_dir))
    capsys.readouterr()
    code = main([*args, "--emulator"])
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def conversation(azurite, disk: Path, tmp_path_factory) -> list[Request]:  # noqa: F811
    """The requests of one clean upload, in order (what the sweep walks)."""
    seen: list[Request] = []

    def record(moment: str, index: int, method: str, target: str) -> bool:
        if moment == "received":
            seen.append((index, method, target))
        return True

    container = azurite.new_container()
    with FaultProxy((azurite.host, azurite.port), on_request=record) as proxy:
        done = upload_through(proxy, azurite, disk, container,
                              tmp_path_factory.mktemp("state"))
    assert done.returncode == 0, done.stderr
    return seen


def describe(request: Request) -> str:
    _, method, target = request
    query = dict(re.findall(r"[?&]([^=&]+)=?([^&]*)", target))
    return f"{method} {query.get('comp', 'create' if method == 'PUT' else 'read')}"


def test_the_conversation_covers_every_named_instant(conversation: list[Request]) -> None:
    kinds = [describe(request) for request in conversation]
    create = kinds.index("PUT create")
    pages = [i for i, kind in enumerate(kinds) if kind == "PUT page"]
    final_metadata = max(i for i, kind in enumerate(kinds) if kind == "PUT metadata")
    assert create > 0  # something (the existence check) comes before the create
    assert len(pages) == 4 and create < pages[0] and pages[-1] < final_metadata


def sweep_points(conversation: list[Request]) -> list[tuple[str, int]]:
    return [(moment, index) for index, _, _ in conversation
            for moment in ("received", "answered")]


@pytest.mark.parametrize("moment", ["received", "answered"])
def test_kill_at_every_instant_then_resume_or_the_named_command_completes(
        azurite, disk: Path, conversation: list[Request], tmp_path: Path,  # noqa: F811
        monkeypatch, capsys, moment: str) -> None:
    outcomes = []
    for index, method, target in conversation:
        point = (moment, index)
        container = azurite.new_container()
        state_dir = tmp_path / f"state-{moment}-{index}"
        running: dict[str, subprocess.Popen] = {}
        killed = threading.Event()

        def kill_at(seen_moment: str, seen_index: int, _method: str, _target: str) -> bool:
            if (seen_moment, seen_index) != point:
                return True
            os.kill(running["process"].pid, signal.SIGKILL)
            killed.set()
            return False

        with FaultProxy((azurite.host, azurite.port), on_request=kill_at) as proxy:
            done = upload_through(proxy, azurite, disk, container, state_dir,
                                  on_start=lambda p: running.update(process=p))
            assert killed.is_set() and done.returncode == -signal.SIGKILL, (point, done)
            proxy.on_request = None
            code, err = run_in_process(monkeypatch, proxy, azurite, state_dir, "upload",
                                       str(disk), f"{container}/disk.vhd", "--resume", "-q",
                                       capsys=capsys)
            outcome = "resumed"
            if code != 0:
                assert code in (4, 5), (point, describe((index, method, target)), err)
                assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
                if "without --resume" in err:
                    follow = ()
                    outcome = "started again"
                else:
                    assert "--overwrite" in err, (point, err)
                    follow = ("--overwrite",)
                    outcome = "overwritten"
                code, err = run_in_process(monkeypatch, proxy, azurite, state_dir, "upload",
                                           str(disk), f"{container}/disk.vhd", "-q", *follow,
                                           capsys=capsys)
                assert code == 0, (point, outcome, err)
            code, err = run_in_process(monkeypatch, proxy, azurite, state_dir, "upload",
                                       "verify", str(disk), f"{container}/disk.vhd",
                                       capsys=capsys)
            assert code == 0, (point, err)
        outcomes.append((describe((index, method, target)), outcome))
    # Once the blob exists, --resume itself finishes the job: no restart, no overwrite.
    # (A kill as the create arrives leaves no blob; one after Azurite made it, a blob.)
    create = [kind for kind, _ in outcomes].index("PUT create")
    after_create = outcomes[create + (0 if moment == "answered" else 1):]
    assert all(outcome == "resumed" for _, outcome in after_create), outcomes


def test_sigterm_mid_upload_is_an_interruption_and_resume_finishes(
        azurite, disk: Path, tmp_path: Path, monkeypatch, capsys) -> None:  # noqa: F811
    """kill (a CI time-out, a service manager) is Ctrl-C: exit 130, progress kept."""
    running: dict[str, subprocess.Popen] = {}
    pages_answered = []
    container = azurite.new_container()
    state_dir = tmp_path / "state"

    def terminate_once_two_pages_are_journaled() -> None:
        """The answer is passed on after the hook returns: the kill waits until the client
        has journaled it (the next Put Page is held 0.3 s, so the upload is still on)."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            journals = list((state_dir / "uploads").glob("*.journal"))
            if journals and len(journals[0].read_text().splitlines()) >= 3:
                break
            time.sleep(0.01)
        os.kill(running["process"].pid, signal.SIGTERM)

    def terminate_after_two_pages(moment: str, index: int, method: str, target: str) -> bool:
        if moment == "answered" and "comp=page" in target:
            pages_answered.append(index)
            if len(pages_answered) == 2:
                threading.Thread(target=terminate_once_two_pages_are_journaled,
                                 daemon=True).start()
        return True

    with FaultProxy((azurite.host, azurite.port), on_request=terminate_after_two_pages,
                    put_page_delay_s=0.3) as proxy:
        done = upload_through(proxy, azurite, disk, container, state_dir,
                              on_start=lambda p: running.update(process=p))
        assert done.returncode == 130, done.stderr
        assert done.stderr.strip().splitlines()[-1].startswith("azlift: ")
        assert "interrupted" in done.stderr and "Traceback" not in done.stderr
        assert "--resume" in done.stderr
        [journal] = (state_dir / "uploads").glob("*.journal")
        assert len(journal.read_text().splitlines()) >= 3  # header + the two acknowledged
        proxy.on_request = None
        code, err = run_in_process(monkeypatch, proxy, azurite, state_dir, "upload", str(disk),
                                   f"{container}/disk.vhd", "--resume", "--json",
                                   capsys=capsys)
        assert code == 0, err
        code, err = run_in_process(monkeypatch, proxy, azurite, state_dir, "upload", "verify",
                                   str(disk), f"{container}/disk.vhd", capsys=capsys)
        assert code == 0, err

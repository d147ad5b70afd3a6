"""`azlift upload` and `azlift upload verify` as users run them: in process through
main(), and as the installed executable for kill -9, Ctrl-C, wrong keys and dead ends."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from azlift.cli.main import main
from tests.support.azurite import azurite  # noqa: F401  (fixture)
from tests.support.fault_proxy import FaultProxy
from tests.support.terminal import run_on_terminal
from tests.support.tools import black_hole, free_port
from tests.upload.helpers import blob_target, converted_bytes, make_source
from azlift.upload.journal import Journal

AZLIFT = str(Path(sys.executable).parent / "azlift")
MIB = 1024 * 1024


@pytest.fixture
def env(monkeypatch, tmp_path, azurite):  # noqa: F811
    state = tmp_path / "state"
    monkeypatch.setenv("AZLIFT_STATE_DIR", str(state))
    monkeypatch.setenv("AZLIFT_EMULATOR_ENDPOINT", azurite.endpoint)
    for name in ("AZURE_STORAGE_KEY", "AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_SAS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return state


def _run(*args: str, env_extra: dict[str, str] | None = None, timeout: float = 60):
    environment = {**os.environ, **(env_extra or {})}
    started = time.monotonic()
    done = subprocess.run([AZLIFT, *args], capture_output=True, text=True, timeout=timeout,
                          env=environment, stdin=subprocess.DEVNULL)
    return done, time.monotonic() - started


def test_send_then_verify_json(env, azurite, tmp_path, capsys) -> None:  # noqa: F811
    source = make_source("vhd-dynamic", tmp_path)
    container = azurite.new_container_name()  # created by the upload
    code = main(["upload", str(source.path), f"{container}/disk.vhd", "--emulator", "--json",
                 "--content-md5", "--threads", "4"])
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out)
    expected = converted_bytes(source.path, tmp_path)
    assert summary["ok"] is True and summary["blob_length"] == len(expected)
    assert summary["data_bytes_sent"] < len(expected) // 10
    assert summary["zero_bytes_skipped"] == (summary["unallocated_bytes_skipped"]
                                             + summary["zero_sector_bytes_trimmed"])
    assert summary["data_bytes_sent"] + summary["zero_bytes_skipped"] == len(expected)
    assert set(summary) >= {"virtual_size", "data_bytes_sent", "zero_bytes_skipped",
                            "requests", "retries", "duration_s", "throughput"}
    blob = blob_target(azurite, container)
    assert blob.client.download_blob().readall() == expected
    code = main(["upload", "verify", str(source.path), f"{container}/disk.vhd", "--emulator",
                 "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)
    assert report["ok"] is True and report["differences"] == []
    assert report["data_bytes_checked"] >= source.data_bytes


def test_human_summary_and_verify_finds_a_damaged_range(env, azurite, tmp_path, capsys) -> None:  # noqa: F811
    source = make_source("raw", tmp_path, count=20)
    container = azurite.new_container()
    assert main(["upload", str(source.path), f"{container}/d.vhd", "--emulator"]) == 0
    out, _ = capsys.readouterr()
    for word in ("virtual size", "data sent", "zeros skipped", "requests", "retries",
                 "duration", "throughput"):
        assert word in out
    offset, data = source.chunks[5]
    page = offset // 512 * 512
    blob = blob_target(azurite, container, "d.vhd")
    blob.client.upload_page(b"\xee" * 512, offset=page, length=512)
    assert main(["upload", "verify", str(source.path), f"{container}/d.vhd", "--emulator"]) == 1
    out, _ = capsys.readouterr()
    assert "DIFFERENT" in out and f"range {page}+" in out


def test_existing_blob_refused_with_exit_5(env, azurite, tmp_path, capsys) -> None:  # noqa: F811
    source = make_source("raw", tmp_path, count=3)
    container = azurite.new_container()
    assert main(["upload", str(source.path), f"{container}/d.vhd", "--emulator", "-q"]) == 0
    capsys.readouterr()
    assert main(["upload", str(source.path), f"{container}/d.vhd", "--emulator"]) == 5
    _, err = capsys.readouterr()
    assert err.count("\n") == 1 and "already exists" in err and "--overwrite" in err


@pytest.mark.parametrize("args, message", [
    (["--overwrite", "--resume"], "exclude each other"),
    (["--os-disk", "--data-disk"], "exclude each other"),
    (["--managed-disk", "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/disks/d"],
     "either DEST_URL or --managed-disk"),
])
def test_contradicting_options_are_usage_errors(env, tmp_path, capsys, args, message) -> None:
    source = make_source("raw", tmp_path, count=1)
    assert main(["upload", str(source.path), "vhds/d.vhd", "--emulator", *args]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("where", [
    ["https://[acct/vhds/d.vhd?sv=2024-01-01&sig=SECRETSIG"],
    ["https://acct.blob.core.windows.net:abc/vhds/d.vhd?sig=SECRETSIG"],
    ["vhds/d.vhd", "--connection-string",
     "BlobEndpoint=https://[bad;AccountName=a;AccountKey=U0VDUkVUU0lH"],
])
def test_text_that_is_no_url_is_a_usage_error_that_shows_no_secret(
        env, tmp_path, capsys, where) -> None:
    source = make_source("raw", tmp_path, count=1)
    assert main(["upload", str(source.path), *where]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a URL" in err, err
    assert "SECRETSIG" not in err and "U0VDUkVUU0lH" not in err


def test_unknown_checksum_is_a_usage_error(env, tmp_path, capsys) -> None:
    source = make_source("raw", tmp_path, count=1)
    assert main(["upload", str(source.path), "vhds/d.vhd", "--emulator", "--checksum",
                 "sha1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "crc64, md5, none" in err and "'sha1'" in err


def test_no_credential_is_a_usage_error(env, tmp_path, capsys) -> None:
    source = make_source("raw", tmp_path, count=1)
    url = "https://acct.blob.core.windows.net/vhds/d.vhd"
    assert main(["upload", str(source.path), url]) == 2
    assert "no storage credential" in capsys.readouterr().err


def test_too_small_for_azure_is_refused_before_sending(env, azurite, tmp_path, capsys) -> None:  # noqa: F811
    path = tmp_path / "tiny.raw"
    path.write_bytes(b"\x01" * 4096)
    container = azurite.new_container()
    assert main(["upload", str(path), f"{container}/t.vhd", "--emulator"]) == 1
    assert "size_too_small" in capsys.readouterr().err
    assert not blob_target(azurite, container, "t.vhd").exists()


def test_wrong_key_exits_4_in_one_line_without_secrets(env, azurite, tmp_path) -> None:  # noqa: F811
    source = make_source("raw", tmp_path, count=2)
    wrong_key = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXk="
    url = azurite.blob_url(azurite.new_container(), "d.vhd")
    done, _ = _run("upload", str(source.path), url, "--json",
                   env_extra={"AZURE_STORAGE_KEY": wrong_key})
    assert done.returncode == 4
    assert done.stderr.count("\n") == 1 and "refused the credential" in done.stderr
    assert json.loads(done.stdout)["error"]["code"] == "auth_failed"
    assert wrong_key not in done.stdout + done.stderr
    secret_sig = "c2VjcmV0c2lnbmF0dXJl"
    done, _ = _run("upload", str(source.path), f"{url}?sv=2021-08-06&sp=rcw&sr=b&sig={secret_sig}")
    assert done.returncode == 4, done.stderr
    assert done.stderr.count("\n") == 1
    assert secret_sig not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    malformed_key = "bm90LWEta2V5"[:-1]  # not valid base64: signing fails before sending
    done, _ = _run("upload", str(source.path), url, "--json",
                   env_extra={"AZURE_STORAGE_KEY": malformed_key})
    assert done.returncode == 4 and done.stderr.count("\n") == 1
    assert "cannot sign requests" in done.stderr and "HTTP None" not in done.stderr
    assert malformed_key not in done.stdout + done.stderr


def test_unreachable_endpoint_fails_in_bounded_time(env, tmp_path) -> None:
    source = make_source("raw", tmp_path, count=2)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, not listening: connections are refused
        done, took = _run("upload", str(source.path), "vhds/d.vhd", "--emulator",
                          "--emulator-endpoint", f"http://127.0.0.1:{port}/devstoreaccount1",
                          "--retries", "1", "--timeout", "1")
    assert done.returncode == 4 and "cannot reach" in done.stderr
    assert took < 30
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        port = silent.getsockname()[1]
        done, took = _run("upload", str(source.path), "vhds/d.vhd", "--emulator",
                          "--emulator-endpoint", f"http://127.0.0.1:{port}/devstoreaccount1",
                          "--retries", "1", "--timeout", "1")
    assert done.returncode == 4, done.stderr
    assert done.stderr.count("\n") == 1
    assert took < 30


@pytest.mark.parametrize("how", ["refused", "black-hole"])
def test_unreachable_endpoint_fails_fast_with_default_retries(env, tmp_path, how) -> None:
    """With the default --retries/--timeout (6, 60 s), the first request fails in seconds:
    not after minutes of backoff (the bound only tells the two apart)."""
    source = make_source("raw", tmp_path, count=2)
    with contextlib.ExitStack() as stack:
        if how == "refused":
            port = free_port()
        else:
            port = stack.enter_context(black_hole())
        done, took = _run("upload", str(source.path), "vhds/d.vhd", "--emulator",
                          "--emulator-endpoint", f"http://127.0.0.1:{port}/devstoreaccount1")
    assert done.returncode == 4, done.stderr
    assert done.stderr.count("\n") == 1 and "cannot reach" in done.stderr
    assert "Traceback" not in done.stderr
    assert took < 45


def _start_slow_upload(azurite, proxy, source, container, state, *extra):  # noqa: F811
    endpoint = proxy.url_for(azurite.endpoint)
    return subprocess.Popen(
        [AZLIFT, "upload", str(source.path), f"{container}/d.vhd", "--emulator",
         "--emulator-endpoint", endpoint, "--threads", "2", "--json", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
        env={**os.environ, "AZLIFT_STATE_DIR": str(state)})


def _wait_for_acknowledged(target: str, state: Path, units: int, process) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "the upload finished before it could be interrupted"
        journal = Journal.load(target, state)
        if journal is not None and len(journal.acknowledged) >= units:
            return
        time.sleep(0.02)
    raise AssertionError("the upload made no progress")


@pytest.mark.parametrize("how", ["kill -9", "ctrl-c"])
def test_interrupted_upload_resumes_byte_identical(env, azurite, tmp_path, capsys, how) -> None:  # noqa: F811
    source = make_source("raw", tmp_path, size=48 * MIB, count=600, seed=4)
    container = azurite.new_container()
    with FaultProxy((azurite.host, azurite.port), put_page_delay_s=0.01) as proxy:
        target_url = proxy.url_for(azurite.blob_url(container, "d.vhd"))
        process = _start_slow_upload(azurite, proxy, source, container, env)
        _wait_for_acknowledged(target_url, env, 3, process)
        process.send_signal(signal.SIGKILL if how == "kill -9" else signal.SIGINT)
        _, err = process.communicate(timeout=30)
        first_bytes = proxy.stats.put_page_bytes_forwarded
        if how == "kill -9":
            assert process.returncode == -signal.SIGKILL
        else:
            assert process.returncode == 130, err
            assert "interrupted" in err and "--resume" in err
        assert Journal.load(target_url, env) is not None  # the state survived
        proxy.put_page_delay_s = 0
        code = main(["upload", str(source.path), f"{container}/d.vhd", "--emulator",
                     "--emulator-endpoint", proxy.url_for(azurite.endpoint), "--resume",
                     "--json", "--threads", "2"])
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out)
    expected = converted_bytes(source.path, tmp_path)
    assert blob_target(azurite, container, "d.vhd").client.download_blob().readall() == expected
    nonzero = sum(512 for o in range(0, len(expected), 512) if any(expected[o:o + 512]))
    assert summary["resumed_bytes"] > 0 and summary["data_bytes_sent"] < nonzero
    resent = first_bytes + summary["data_bytes_sent"] - nonzero
    assert 0 <= resent <= 2 * 4 * MIB  # at most the window (2 threads × 4 MiB)


def _run_on_terminal(*args: str) -> tuple[int, bytes, bytes]:
    """Run azlift with stderr on a pseudo-terminal; (exit code, stdout, terminal output)."""
    # tqdm redraws at most every 0.1 s: a quick upload could end before the bar shows its
    # postfix, so the bar redraws on every update here.
    return run_on_terminal([AZLIFT, *args], rows=24, cols=120,
                           env={**os.environ, "TQDM_MININTERVAL": "0"}, timeout=60)


def test_progress_bar_only_on_a_terminal(env, azurite, tmp_path) -> None:  # noqa: F811
    source = make_source("raw", tmp_path, count=40)
    container = azurite.new_container()
    code, out, terminal = _run_on_terminal("upload", str(source.path), f"{container}/tty.vhd",
                                           "--emulator")
    assert code == 0
    text = terminal.decode(errors="replace")
    assert "sent=" in text and "B/s" in text  # tqdm: bytes, rate, our postfix
    assert b"data sent" in out
    done, _ = _run("upload", str(source.path), f"{container}/plain.vhd", "--emulator")
    assert done.returncode == 0 and done.stderr == ""  # stderr not a terminal: no bar
    code, _, terminal = _run_on_terminal("upload", str(source.path), f"{container}/q.vhd",
                                         "--emulator", "--quiet")
    assert code == 0 and terminal == b""


def test_unwritable_state_directory_is_one_clear_line(env, azurite, tmp_path, monkeypatch,  # noqa: F811
                                                      capsys) -> None:
    source = make_source("raw", tmp_path, count=2)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the state directory should be")
    monkeypatch.setenv("AZLIFT_STATE_DIR", str(blocker))
    container = azurite.new_container()
    assert main(["upload", str(source.path), f"{container}/d.vhd", "--emulator"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "resume journal" in err and "AZLIFT_STATE_DIR" in err
    assert not blob_target(azurite, container, "d.vhd").exists()  # refused before creating


def test_help_names_both_commands(capsys) -> None:
    assert main(["upload", "--help"]) == 0
    out = capsys.readouterr().out
    assert "send" in out and "verify" in out and "--install-completion" not in out
    assert main(["upload", "send", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--resume", "--overwrite", "--content-md5", "--threads", "--managed-disk",
                   "--emulator", "--auth-mode", "--keep-open"):
        assert option in out


def test_missing_container_the_sas_may_not_create_is_one_clear_line(env, azurite, tmp_path) -> None:  # noqa: F811
    from datetime import datetime, timedelta, timezone

    from azure.storage.blob import BlobSasPermissions, generate_blob_sas
    source = make_source("raw", tmp_path, count=2)
    container = azurite.new_container_name()  # never created
    token = generate_blob_sas(azurite.account_name, container, "d.vhd",
                              account_key=azurite.account_key,
                              permission=BlobSasPermissions(read=True, write=True, create=True),
                              expiry=datetime.now(timezone.utc) + timedelta(hours=1))
    done, _ = _run("upload", str(source.path), azurite.blob_url(container, "d.vhd") + "?" + token,
                   "--json")
    assert done.returncode == 4, done.stderr
    assert done.stderr.count("\n") == 1
    assert f"container '{container}' does not exist" in done.stderr
    assert json.loads(done.stdout)["error"]["code"] == "container_not_found"
    signature = token.split("sig=")[1].split("&")[0]
    assert signature not in done.stdout + done.stderr
    assert not azurite.service_client().get_container_client(container).exists()


def test_failed_login_is_one_line(env, tmp_path) -> None:
    source = make_source("raw", tmp_path, count=2)
    bare = {name: value for name, value in os.environ.items()
            if not name.startswith(("AZURE_", "IDENTITY_", "MSI_"))}
    done = subprocess.run(
        [AZLIFT, "upload", str(source.path), "https://nosuchaccount.blob.core.windows.net/vhds/d.vhd",
         "--auth-mode", "login", "--retries", "0", "--timeout", "2"],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        env={**bare, "HOME": str(tmp_path)})
    assert done.returncode == 4, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert "no Azure sign-in was found" in done.stderr and "`az login`" in done.stderr
    assert "Traceback" not in done.stderr

"""`--auth-mode login` end to end: the installed command, its real credential chain
(DefaultAzureCredential → AzureCliCredential → a stand-in `az` on PATH), and Azurite over
HTTPS checking every bearer token's issuer, audience and expiry."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tests.support.azurite import azurite_oauth  # noqa: F401  (fixture)
from tests.support.fake_az import STORAGE_AUDIENCE, fake_az  # noqa: F401  (fixture)
from tests.vhd.images import MIB, write_raw

SUBSCRIPTION = "11111111-2222-3333-4444-555555555555"


@pytest.fixture
def signed_in(fake_az, azurite_oauth, monkeypatch: pytest.MonkeyPatch):  # noqa: F811
    """A user signed in with the az CLI, trusting the emulator's certificate."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", azurite_oauth.ca_file)
    return fake_az


def disk_with_pieces(path: Path, pieces: int, size: int = 24 * MIB) -> Path:
    """A sparse raw disk with ``pieces`` separate 64 KiB runs of random data: one Put
    Page each, since the gaps between them are whole MiB of zeros."""
    rng = random.Random(pieces)
    chunks = [(index * MIB + 4096, rng.randbytes(64 * 1024)) for index in range(pieces)]
    return write_raw(path, size, chunks)


def no_token_in(run, fake) -> None:
    tokens = fake.tokens()
    assert tokens, "the stand-in az was never asked for a token"
    for token in tokens:
        for part in token.split("."):
            assert part not in run.out and part not in run.err


def test_upload_and_verify_sign_in_through_the_az_cli(signed_in, azurite_oauth, run_azlift,
                                                      tmp_path: Path) -> None:  # noqa: F811
    disk = disk_with_pieces(tmp_path / "disk.img", 3)
    container = azurite_oauth.new_container()
    url = f"{azurite_oauth.endpoint}/{container}/disk.vhd"

    run = run_azlift("upload", disk, url, "--auth-mode", "login", "--json")
    assert run.code == 0, run.err
    summary = json.loads(run.out)
    assert summary["ok"] is True and summary["blob_length"] == 24 * MIB + 512
    no_token_in(run, signed_in)
    calls = signed_in.calls()
    assert all(call["args"][:2] == ["account", "get-access-token"] for call in calls)
    assert any(STORAGE_AUDIENCE in " ".join(call["args"]) for call in calls)

    run = run_azlift("upload", "verify", disk, url, "--auth-mode", "login")
    assert run.code == 0, run.err
    assert run.out.startswith("OK:")
    no_token_in(run, signed_in)

    blob = azurite_oauth.service_client().get_blob_client(container, "disk.vhd")
    assert blob.download_blob(offset=MIB + 4096, length=16).readall() == \
        disk.read_bytes()[MIB + 4096:MIB + 4096 + 16]


def test_register_dry_run_checks_the_blobs_with_the_sign_in(signed_in, azurite_oauth,
                                                            run_azlift,
                                                            tmp_path: Path) -> None:  # noqa: F811
    disk = disk_with_pieces(tmp_path / "disk.img", 1)
    container = azurite_oauth.new_container()
    url = f"{azurite_oauth.endpoint}/{container}/os.vhd"
    assert run_azlift("upload", disk, url, "--auth-mode", "login", "-q").code == 0
    before = len(signed_in.calls())

    run = run_azlift("register", "image", "web", "-g", "rg", "-l", "westeurope", "--os-blob",
                     url, "--os-type", "linux", "--hyper-v-generation", "V2",
                     "--subscription", SUBSCRIPTION, "--dry-run", "--json")
    assert run.code == 0, run.err
    requests = json.loads(run.out)["requests"]
    assert requests[0]["method"] == "PUT"
    body = json.dumps(requests[0]["body"])
    assert url in body
    assert len(signed_in.calls()) > before  # the blob pre-check signed in through az
    no_token_in(run, signed_in)

    missing = f"{azurite_oauth.endpoint}/{container}/missing.vhd"
    run = run_azlift("register", "image", "web", "-g", "rg", "-l", "westeurope", "--os-blob",
                     missing, "--subscription", SUBSCRIPTION, "--dry-run")
    assert run.code != 0 and "missing.vhd" in run.err
    assert len(run.err_lines) == 1 and "Traceback" not in run.err


@pytest.mark.parametrize("refusal", ["wrong-audience", "expired"])
def test_a_refused_token_is_one_line_and_exit_4(signed_in, azurite_oauth, run_azlift,
                                                tmp_path: Path, refusal: str) -> None:  # noqa: F811
    if refusal == "expired":
        signed_in.configure(lifetime=-600)
    else:
        signed_in.configure(audience="https://management.azure.com")
    disk = disk_with_pieces(tmp_path / "disk.img", 1)
    container = azurite_oauth.new_container()
    run = run_azlift("upload", disk, f"{azurite_oauth.endpoint}/{container}/d.vhd",
                     "--auth-mode", "login", "--retries", "0")
    assert run.code == 4, run.err
    assert len(run.err_lines) == 1 and "Traceback" not in run.err
    assert "refused the credential" in run.err
    no_token_in(run, signed_in)
    assert list(azurite_oauth.service_client().get_container_client(container)
                .list_blobs()) == []


def test_not_signed_in_says_to_sign_in(signed_in, azurite_oauth, run_azlift,
                                       tmp_path: Path) -> None:  # noqa: F811
    signed_in.configure(fail="ERROR: Please run 'az login' to setup account.")
    disk = disk_with_pieces(tmp_path / "disk.img", 1)
    container = azurite_oauth.new_container()
    run = run_azlift("upload", disk, f"{azurite_oauth.endpoint}/{container}/d.vhd",
                     "--auth-mode", "login")
    assert run.code == 4, run.err
    assert len(run.err_lines) == 1 and "Traceback" not in run.err
    assert "az login" in run.err


def test_tokens_near_their_expiry_are_renewed_during_an_upload(signed_in, azurite_oauth,
                                                                run_azlift,
                                                                tmp_path: Path) -> None:  # noqa: F811
    """Tokens that live 200 s are, from the first request on, inside the window in which
    the SDK renews a token (less than 240-300 s left, with jitter): every request needs a
    renewed token from the chain, and Azurite, which refuses expired tokens, takes each."""
    signed_in.configure(lifetime=200)
    disk = disk_with_pieces(tmp_path / "disk.img", 40, size=48 * MIB)
    container = azurite_oauth.new_container()
    url = f"{azurite_oauth.endpoint}/{container}/d.vhd"
    run = run_azlift("upload", disk, url, "--auth-mode", "login", "--threads", "1", "--json")
    assert run.code == 0, run.err
    summary = json.loads(run.out)
    assert summary["requests"] >= 40
    tokens = [call for call in signed_in.calls() if "token" in call]
    # The up-front sign-in check, then one renewal per request of the upload at least.
    assert len(tokens) >= 1 + summary["requests"]
    assert len(set(signed_in.tokens())) == len(tokens)  # each one a fresh token
    no_token_in(run, signed_in)
    run = run_azlift("upload", "verify", disk, url, "--auth-mode", "login")
    assert run.code == 0, run.err

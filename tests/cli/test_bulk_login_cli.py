"""`auth_mode = "login"` in a bulk run: the worker (a process of its own) signs in through
the real credential chain (DefaultAzureCredential → AzureCliCredential → the stand-in `az`),
exactly as `azlift upload --auth-mode login`, against Azurite over HTTPS checking every
bearer token. No token reaches the output, the report or the state file."""
from __future__ import annotations

import json
from pathlib import Path

from tests.cli.test_login_cli import no_token_in, signed_in  # noqa: F401  (fixture)
from tests.support.azurite import azurite_oauth  # noqa: F401  (fixture)
from tests.support.bulk_plans import converted, lun0_vms, manifest
from tests.support.fake_az import STORAGE_AUDIENCE, fake_az  # noqa: F401  (fixture)


def test_a_bulk_run_signs_in_on_the_worker(signed_in, azurite_oauth, run_azlift,  # noqa: F811
                                           tmp_path: Path) -> None:
    container = azurite_oauth.new_container()
    vms, expected = lun0_vms(tmp_path / "disks", ("vhdx", "raw", "vhd-dynamic"), seed=500,
                             count=10)
    plan = manifest(tmp_path / "plan.toml", vms, sources={"hv01": 2},
                    destination=f"{azurite_oauth.endpoint}/{container}/", auth_mode="login",
                    threads=2)
    state = tmp_path / "run.sqlite"

    run = run_azlift("bulk", "run", plan, "--state", state, "--processes", "--json")
    assert run.code == 0, run.err
    report = json.loads(run.out)
    assert [vm["status"] for vm in report["vms"]] == ["done"] * 3
    client = azurite_oauth.service_client().get_container_client(container)
    for name, source in expected.items():
        assert client.download_blob(name).readall() == converted(source, tmp_path), name
    calls = signed_in.calls()
    assert calls and all(call["args"][:2] == ["account", "get-access-token"] for call in calls)
    assert any(STORAGE_AUDIENCE in " ".join(call["args"]) for call in calls)

    no_token_in(run, signed_in)
    for command in (("status",), ("report", "--csv")):
        no_token_in(run_azlift("bulk", *command, plan, "--state", state), signed_in)
    stored = state.read_bytes()
    for token in signed_in.tokens():
        for part in token.split("."):
            assert part.encode() not in stored

    # Signed out: every VM fails with the sign-in advice, one line each, nothing uploaded.
    signed_in.configure(fail="ERROR: Please run 'az login' to setup account.")
    other = manifest(tmp_path / "other.toml", [dict(vms[0], id="late")], sources={"hv01": 1},
                     destination=f"{azurite_oauth.endpoint}/{container}/", auth_mode="login")
    run = run_azlift("bulk", "run", other, "--state", tmp_path / "other.sqlite", "--json")
    assert run.code == 1, run.err
    [vm] = json.loads(run.out)["vms"]
    assert vm["status"] == "failed" and "az login" in vm["error"]["message"], vm
    assert "Traceback" not in run.err
    assert "late-lun0.vhd" not in [blob.name for blob in client.list_blobs()]

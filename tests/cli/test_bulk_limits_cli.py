"""`azlift bulk run` under an account that throttles, ARM that throttles writes, and
under Ctrl-C."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from tests.cli.conftest import installed_azlift
from tests.support.azurite import azurite  # noqa: F401
from tests.support.bulk_plans import KINDS, blob_bytes, converted, lun0_vms, make_disk, manifest
from tests.support.fake_arm import fake_arm, fake_arm_server  # noqa: F401
from tests.support.fault_proxy import FaultProxy


def plan_of(tmp_path, container, count, sources=("hv01", "nas1"), **defaults):
    vms, expected = lun0_vms(tmp_path / "disks", [KINDS[n % 4] for n in range(count)],
                             seed=300, count=60, sources=sources)
    return manifest(tmp_path / "plan.toml", vms, sources={s: 2 for s in sources},
                    destination=container, emulator=True, **defaults), expected


def azlift(*args, env, **kwargs):
    return subprocess.Popen([installed_azlift(), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kwargs)


def test_throttled_account_backs_off_under_the_cap_and_completes(tmp_path, azurite) -> None:  # noqa: F811
    container = azurite.new_container_name()
    plan, expected = plan_of(tmp_path, container, 6, threads=4)
    plan.write_text(plan.read_text().replace("[[source]]", "[limits]\naccount_requests = 8\n\n"
                                             "[[source]]", 1))
    with FaultProxy(upstream=(azurite.host, azurite.port), max_concurrent_put_pages=4,
                    put_page_delay_s=0.01) as proxy:
        env = {**os.environ, "AZLIFT_EMULATOR_ENDPOINT": proxy.url_for(azurite.endpoint),
               "AZLIFT_STATE_DIR": str(tmp_path / "state")}
        run = azlift("bulk", "run", plan, "--json", "-q", env=env)
        out, err = run.communicate(timeout=300)
    assert run.returncode == 0, err
    report = json.loads(out)
    assert report["totals"]["done"] == 6 and report["totals"]["failed"] == 0
    assert proxy.stats.busy_over_limit > 0  # the account did push back
    assert report["totals"]["throttled"] >= proxy.stats.busy_over_limit
    assert proxy.stats.peak_put_pages_in_flight <= 8  # never above the account cap
    for name, source in expected.items():
        assert blob_bytes(azurite, container, name) == converted(source, tmp_path), name


def test_ctrl_c_stops_cooperatively_keeps_state_and_a_rerun_finishes(tmp_path, azurite) -> None:  # noqa: F811
    container = azurite.new_container_name()
    plan, expected = plan_of(tmp_path, container, 4, sources=("hv01",), threads=2)
    with FaultProxy(upstream=(azurite.host, azurite.port), put_page_delay_s=0.1) as proxy:
        env = {**os.environ, "AZLIFT_EMULATOR_ENDPOINT": proxy.url_for(azurite.endpoint),
               "AZLIFT_STATE_DIR": str(tmp_path / "state")}
        run = azlift("bulk", "run", plan, "--json", "-q", env=env)
        deadline = time.monotonic() + 120
        while proxy.stats.put_pages_forwarded < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert run.poll() is None
        run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=120)
        assert run.returncode == 130, err
        assert "interrupted" in err and "Traceback" not in err
        assert json.loads(out)["error"]["code"] == "interrupted"
        status = azlift("bulk", "status", plan, "--json", env=env)
        document = json.loads(status.communicate(timeout=60)[0])
        assert document["totals"]["failed"] == 0 and document["totals"]["pending"] >= 1
        sent_before = proxy.stats.put_page_bytes_forwarded
        proxy.put_page_delay_s = 0.0
        rerun = azlift("bulk", "run", plan, "--json", "-q", env=env)
        out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert json.loads(out)["totals"]["done"] == 4
    data = sum(disk["bytes_sent"] for vm in json.loads(out)["vms"] for disk in vm["disks"])
    # What was sent before Ctrl-C counts once; re-sent bytes stay within the window that
    # was in flight (2 disks x 2 threads x 4 MiB).
    assert sent_before > 0
    assert data <= proxy.stats.put_page_bytes_forwarded <= data + 2 * 2 * 4 * 1024 * 1024
    for name, source in expected.items():
        assert blob_bytes(azurite, container, name) == converted(source, tmp_path), name


def test_arm_write_throttling_is_waited_out_as_retry_after_asks(tmp_path, azurite, fake_arm,
                                                                 run_main, monkeypatch) -> None:  # noqa: F811
    """ARM answers the first image PUTs 429 TooManyRequests with Retry-After: 2; each is
    sent again no sooner than ARM asked, and every VM is registered."""
    monkeypatch.setenv("AZLIFT_EMULATOR_ENDPOINT", azurite.endpoint)
    monkeypatch.setenv("AZLIFT_STATE_DIR", str(tmp_path / "state"))
    container = azurite.new_container_name()
    disks = tmp_path / "disks"
    vms = [{"id": f"vm{n}", "source": "hv01", "os_type": "linux",
            "disk": [{"path": str(make_disk(disks, f"os{n}", "vhdx", seed=n, os_disk=True)),
                      "role": "os"}]} for n in range(2)]
    plan = manifest(tmp_path / "plan.toml", vms, sources={"hv01": 2}, destination=container,
                    emulator=True, register="image", resource_group="rg",
                    location="westeurope", arm_endpoint=fake_arm.base_url)
    fake_arm.throttle_puts, fake_arm.throttle_retry_after = 2, 2
    result = run_main("bulk", "run", plan, "--json", "-q")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert {vm["id"]: vm["status"] for vm in report["vms"]} == {"vm0": "done", "vm1": "done"}
    refused = {f"vm{n}": sum(put.status == 429 for put in fake_arm.calls("PUT", f"/images/vm{n}"))
               for n in range(2)}
    # the report counts every 429 ARM answered, per VM and in all
    assert {vm["id"]: vm["arm_throttled"] for vm in report["vms"]} == refused
    assert report["totals"]["arm_throttled"] == 2
    for n in range(2):
        puts = fake_arm.calls("PUT", f"/images/vm{n}")
        assert fake_arm.get(fake_arm.resource_id("image", "rg", f"vm{n}")) is not None
        throttled = [put for put in puts if put.status == 429]
        for refused in throttled:
            retry = next(put for put in puts if put.at > refused.at)
            assert retry.at - refused.at >= 2 - 0.05, (refused.at, retry.at)
    assert sum(put.status == 429 for put in fake_arm.calls("PUT", "/images/")) == 2

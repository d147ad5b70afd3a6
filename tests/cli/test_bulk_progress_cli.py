"""What `azlift bulk run` draws: on a terminal (a pseudo-terminal here) one overall bar and a
line per disk being uploaded, fed by the workers' Dask events; elsewhere plain lines; the
--json document on stdout untouched either way."""
from __future__ import annotations

import json
import re
import socket
import subprocess
from pathlib import Path

import pytest

from tests.cli.conftest import installed_azlift
from tests.support.azurite import azurite  # noqa: F401
from tests.support.bulk_plans import make_disk, manifest
from tests.support.fault_proxy import FaultProxy
from tests.support.terminal import run_on_terminal

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@pytest.fixture
def plan(tmp_path, azurite, monkeypatch) -> Path:  # noqa: F811
    """Four VMs that upload (through a proxy that slows each Put Page) and one that fails."""
    with FaultProxy(upstream=(azurite.host, azurite.port), put_page_delay_s=0.05) as proxy:
        monkeypatch.setenv("AZLIFT_EMULATOR_ENDPOINT", proxy.url_for(azurite.endpoint))
        monkeypatch.setenv("AZLIFT_STATE_DIR", str(tmp_path / "state"))
        disks = tmp_path / "disks"
        vms = [{"id": f"vm{n}", "source": "hv01", "disk": [
            {"path": str(make_disk(disks, f"d{n}", "vhdx", seed=700 + n, count=30)), "lun": 0}]}
            for n in range(4)]
        vms.append({"id": "broken", "source": "hv01",
                    "disk": [{"path": str(disks / "missing.vhdx"), "lun": 0}]})
        yield manifest(tmp_path / "plan.toml", vms, sources={"hv01": 2},
                       destination=azurite.new_container_name(), emulator=True, threads=2)


def run_on_a_terminal(*args: str) -> tuple[int, str, str]:
    """Run azlift with stderr on a 160-column pseudo-terminal; stdout stays a pipe."""
    code, out, screen = run_on_terminal([installed_azlift(), *args], rows=40, cols=160,
                                        timeout=300)
    return code, out.decode(), screen.decode(errors="replace")


def frames(screen: str) -> list[str]:
    """Every line tqdm drew, in order (carriage returns and cursor moves split them)."""
    return [line.strip() for line in re.split(r"[\r\n]", ANSI.sub("\n", screen)) if line.strip()]


def test_a_terminal_shows_an_overall_bar_and_a_line_per_active_disk(plan) -> None:
    code, out, screen = run_on_a_terminal("bulk", "run", str(plan), "--json")
    assert code == 1, screen  # the broken VM
    report = json.loads(out)  # --json: stdout holds the one document, nothing else
    assert {vm["id"]: vm["status"] for vm in report["vms"]} == {
        "vm0": "done", "vm1": "done", "vm2": "done", "vm3": "done", "broken": "failed"}
    drawn = frames(screen)
    overall = [line for line in drawn if line.startswith("bulk:")]
    assert overall, drawn
    bar = re.compile(r"bulk: +\d+%\|.*\| *[\d.]+[kMG]?/[\d.]+[kMG]? \[[\d:]+<[\d:?]+, "
                     r"[\d.?]+[kMG]?B/s, VMs (\d) done, (\d) failed of 5\]")
    counts = [tuple(map(int, match.groups())) for line in overall if (match := bar.search(line))]
    assert counts, overall
    assert counts[-1] == (4, 1), overall[-3:]  # the last frame counts every VM
    # Frames repeat; the counts only grow.
    assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in zip(counts, counts[1:])), counts
    host = socket.gethostname()
    for n in range(4):
        lines = [text for text in drawn if text.startswith(f"vm{n}/lun0:")]
        disk = re.compile(rf"vm{n}/lun0: +\d+%\|.*\| .*B/s, on {re.escape(host)}\]")
        assert any(disk.search(line) for line in lines), (n, lines)
    # A failure is printed above the bars, as one line.
    assert [text for text in drawn if text.startswith("azlift: broken: failed (io_error:")]


def test_without_a_terminal_each_vm_is_one_plain_line(plan) -> None:
    done = subprocess.run([installed_azlift(), "bulk", "run", str(plan)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert "\r" not in done.stderr and "%|" not in done.stderr
    lines = done.stderr.splitlines()
    assert sorted(lines) == sorted([f"azlift: vm{n}: done" for n in range(4)] + [
        next(line for line in lines if line.startswith("azlift: broken: failed (io_error: "))])
    assert "4 done, 1 failed, 0 pending of 5 VMs" in done.stdout

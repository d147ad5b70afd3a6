"""Scale-out on 127.0.0.1: `azlift bulk scheduler` and `azlift bulk worker` processes (each
worker its own state directory and its own proxy to Azurite, machines in miniature), the
coordinator as its own process. Workers die with SIGKILL mid-upload; so does the coordinator."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.cli.conftest import installed_azlift
from tests.support.azurite import azurite  # noqa: F401
from tests.support.bulk_plans import blob_bytes, converted, make_disk, manifest
from tests.support.fault_proxy import FaultProxy
from tests.support.sockets import listening_sockets

KINDS = ("raw", "vhd-fixed", "vhd-dynamic", "vhdx")


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Cluster:
    """A scheduler and named workers, each with its own state directory; all reach Azurite
    through one counting proxy (one endpoint, as machines share one storage account)."""

    def __init__(self, root: Path, azurite, delay: float, *,  # noqa: F811
                 scheduler_args: tuple[str, ...] = (), security=None) -> None:
        self.root = root
        self.azurite = azurite
        self.security = security  # Dask's Security for the test's own client, with TLS
        self.processes: dict[str, subprocess.Popen] = {}
        self.proxy = FaultProxy(upstream=(azurite.host, azurite.port),
                                put_page_delay_s=delay).__enter__()
        file = root / "scheduler.json"
        self.processes["scheduler"] = self._start(
            "scheduler", ["bulk", "scheduler", "--port", "0", "--scheduler-file", str(file),
                          "--no-workers-timeout", "20", *scheduler_args], os.environ)
        wait_for(lambda: file.exists() and file.read_text().strip(), 30, "the scheduler file")
        wait_for(lambda: json.loads(file.read_text()).get("address"), 30, "its address")
        self.address = json.loads(file.read_text())["address"]

    def _start(self, name: str, args: list[str], env) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        return subprocess.Popen([installed_azlift(), *args], stdout=log, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)

    def worker(self, name: str, *sources: str, extra: tuple[str, ...] = ()) -> None:
        env = {**os.environ, "AZLIFT_EMULATOR_ENDPOINT": self.proxy.url_for(self.azurite.endpoint),
               "AZLIFT_STATE_DIR": str(self.root / f"{name}-state")}
        args = ["bulk", "worker", self.address, "--name", name, "--local-directory",
                str(self.root / f"{name}-dask")]
        for source in sources:
            args += ["--source", source]
        self.processes[name] = self._start(name, [*args, *extra], env)

    def wait_for_workers(self, count: int) -> None:
        from distributed import Client

        with Client(self.address, timeout="30s", security=self.security) as client:
            client.wait_for_workers(count, timeout=60)

    def worker_port(self, name: str) -> int:
        """The port the worker ``name`` serves Dask's comms on (from the scheduler)."""
        from distributed import Client

        with Client(self.address, timeout="30s", security=self.security) as client:
            workers = client.scheduler_info(n_workers=-1)["workers"]
        [address] = [a for a, info in workers.items() if info.get("name") == name]
        return int(address.rsplit(":", 1)[1])

    def listening(self, name: str) -> set[tuple[str, int]]:
        """The listening TCP sockets of one of the cluster's processes."""
        return listening_sockets(self.processes[name].pid)

    def kill(self, name: str) -> None:
        os.killpg(self.processes[name].pid, signal.SIGKILL)
        self.processes[name].wait(timeout=30)

    def put_bytes(self) -> int:
        return self.proxy.stats.put_page_bytes_forwarded

    def uploading(self, name: str) -> bool:
        """A worker is mid-upload while its resume journal exists."""
        return any((self.root / f"{name}-state").rglob("*.journal"))

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")[-3000:]

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
        self.proxy.__exit__(None, None, None)


@pytest.fixture
def cluster(tmp_path, azurite):  # noqa: F811
    made = Cluster(tmp_path, azurite, delay=0.05)
    try:
        yield made
    finally:
        made.close()


LOOPBACK = {"127.0.0.1", "::1"}


def coordinator(plan: Path, address: str, *extra: str, root: Path) -> subprocess.Popen:
    env = {**os.environ, "AZLIFT_STATE_DIR": str(root / "coordinator-state")}
    return subprocess.Popen([installed_azlift(), "bulk", "run", str(plan), "--scheduler", address,
                             "--json", "-q", *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, text=True, start_new_session=True)


def twenty_disks(tmp_path: Path, container: str, sources: tuple[str, ...], **defaults) -> tuple[Path, dict]:
    disks, vms, expected = tmp_path / "disks", [], {}
    for n in range(10):
        source = sources[n % len(sources)]
        os_path = make_disk(disks, f"vm{n}-os", KINDS[n % 4], seed=100 + n, count=40)
        data_path = make_disk(disks, f"vm{n}-data", KINDS[(n + 1) % 4], seed=200 + n, count=40)
        vms.append({"id": f"vm{n}", "source": source,
                    "disk": [{"path": str(os_path), "role": "os"},
                             {"path": str(data_path), "lun": 0}]})
        expected[f"vm{n}-os.vhd"], expected[f"vm{n}-lun0.vhd"] = os_path, data_path
    plan = manifest(tmp_path / "plan.toml", vms, sources={s: 2 for s in sources},
                    destination=container, emulator=True, threads=2, **defaults)
    return plan, expected


def test_scale_out_survives_a_killed_worker_and_fails_a_source_nobody_serves(
        cluster, tmp_path, azurite) -> None:  # noqa: F811
    container = azurite.new_container_name()
    plan, expected = twenty_disks(tmp_path, container, ("hv01", "nas1"))
    plan.write_text(plan.read_text() + ('\n[[source]]\nname = "ghost"\n\n[[vm]]\nid = "lost"\n'
                                        'source = "ghost"\n\n[[vm.disk]]\n'
                                        'path = "/nowhere/x.vhdx"\nlun = 0\n'))
    cluster.worker("w1", "hv01=1")
    cluster.worker("w2", "hv01=1")
    cluster.worker("w3", "nas1=2")
    cluster.wait_for_workers(3)
    run = coordinator(plan, cluster.address, "--wait-for-workers", "3", root=tmp_path)
    wait_for(lambda: cluster.uploading("w1") or run.poll() is not None, 120,
             "w1 to be uploading")
    time.sleep(0.3)
    assert run.poll() is None, run.communicate()
    cluster.kill("w1")
    out, err = run.communicate(timeout=300)
    assert run.returncode == 1, err  # only the VM of the source nobody serves fails
    report = json.loads(out)
    status = {vm["id"]: vm for vm in report["vms"]}
    assert status["lost"]["status"] == "failed"
    assert status["lost"]["error"]["code"] == "no_worker"
    assert "ghost" in status["lost"]["error"]["message"]
    done = [vm for vm in report["vms"] if vm["id"] != "lost"]
    assert all(vm["status"] == "done" for vm in done), [(v["id"], v["error"]) for v in done]
    for vm in done:
        workers = set(vm["worker"].split(","))
        assert workers <= ({"w1", "w2"} if int(vm["id"][2:]) % 2 == 0 else {"w3"}), vm
    # w1 died mid-upload: what it held finished on w2, the other worker of its source.
    assert "w2" in {disk["worker"] for vm in done for disk in vm["disks"]}
    for name, source in expected.items():
        assert blob_bytes(azurite, container, name) == converted(source, tmp_path), name
    data = sum(vm_disk["bytes_sent"] for vm in done for vm_disk in vm["disks"])
    # Re-sent data is bounded by what w1 had in flight: one disk, 2 threads x 4 MiB.
    assert cluster.put_bytes() <= data + 2 * 4 * 1024 * 1024 + 512

    again = coordinator(plan, cluster.address, "--wait-for-workers", "1", root=tmp_path)
    before = cluster.put_bytes()
    out, err = again.communicate(timeout=120)
    assert again.returncode == 1 and cluster.put_bytes() == before


def test_a_killed_coordinator_is_replaced_by_a_rerun(cluster, tmp_path, azurite) -> None:  # noqa: F811
    container = azurite.new_container_name()
    plan, expected = twenty_disks(tmp_path, container, ("hv01",))
    cluster.worker("w1", "hv01=2")
    cluster.wait_for_workers(1)
    first = coordinator(plan, cluster.address, root=tmp_path)
    wait_for(lambda: cluster.put_bytes() > 0 or first.poll() is not None, 120, "an upload")
    assert first.poll() is None, first.communicate()
    # Without TLS the scheduler, the worker and their HTTP servers listen on loopback only.
    for name in ("scheduler", "w1"):
        sockets = cluster.listening(name)
        assert len(sockets) >= 2 and {ip for ip, _ in sockets} <= LOOPBACK, (name, sockets)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    second = coordinator(plan, cluster.address, root=tmp_path)
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    report = json.loads(out)
    assert report["totals"]["done"] == 10 and report["totals"]["failed"] == 0
    for name, source in expected.items():
        assert blob_bytes(azurite, container, name) == converted(source, tmp_path), name


def test_scheduler_refuses_to_listen_beyond_loopback_without_tls(tmp_path) -> None:
    done = subprocess.run([installed_azlift(), "bulk", "scheduler", "--host", "0.0.0.0",
                           "--port", "0"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 5
    assert "refusing to listen on 0.0.0.0 without TLS" in done.stderr
    assert "--insecure" in done.stderr


def test_insecure_scheduler_warns_before_it_listens(tmp_path) -> None:
    """--insecure is allowed but said out loud (an address of TEST-NET-3 that this machine
    does not own, so nothing ends up listening)."""
    done = subprocess.run([installed_azlift(), "bulk", "scheduler", "--host", "203.0.113.7",
                           "--port", "0", "--insecure"], capture_output=True, text=True,
                          timeout=60)
    assert "listening on 203.0.113.7 WITHOUT TLS" in done.stderr
    # The address cannot be bound here: one line naming the cause, exit 4.
    assert done.returncode == 4, done.stderr
    assert "azlift: error: the scheduler failed to start: [Errno 99]" in done.stderr
    assert "Traceback" not in done.stderr


def test_worker_listens_beyond_loopback_only_with_tls_or_insecure() -> None:
    done = subprocess.run([installed_azlift(), "bulk", "worker", "tcp://127.0.0.1:9",
                           "--source", "hv01", "--host", "0.0.0.0"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 5, done.stderr
    assert done.stderr.strip() == ("azlift: error: refusing to listen on 0.0.0.0 without TLS: "
                                   "give --tls-ca-file, --tls-cert and --tls-key, or --insecure "
                                   "on a network you trust")

"""Prep on a scale-out cluster: a guest is generalized by the worker started with
`--reach NAME` that its VM names, a VM without reach by the coordinator itself, a reach no
worker serves fails its VM; never more than [limits] prep_guests guests at once."""
from __future__ import annotations

import json
import os
import socket

from azlift.bulk import StateStore
from tests.cli.test_bulk_cluster import Cluster, cluster, coordinator  # noqa: F401
from tests.prep.linux.conftest import keys, root_tree, start_sshd  # noqa: F401
from tests.support.azurite import azurite  # noqa: F401
from tests.support.bulk_plans import blob_bytes, converted, manifest
from tests.support.guest_disks import PowerOffWriter, final_os_disk, placeholder
from tests.support.rootfs import RECORDED_LOG, read_log


def start_worker(cluster: Cluster, name: str, *options: str) -> None:  # noqa: F811
    """`azlift bulk worker` with its own state, reaching Azurite through the proxy."""
    env = {**os.environ,
           "AZLIFT_EMULATOR_ENDPOINT": cluster.proxy.url_for(cluster.azurite.endpoint),
           "AZLIFT_STATE_DIR": str(cluster.root / f"{name}-state")}
    cluster.processes[name] = cluster._start(name, [
        "bulk", "worker", cluster.address, "--name", name, "--local-directory",
        str(cluster.root / f"{name}-dask"), *options], env)


def test_prep_runs_where_the_vm_reaches_its_guest_one_guest_at_a_time(
        cluster, tmp_path, azurite, root_tree, start_sshd, keys) -> None:  # noqa: F811
    container = azurite.new_container_name()
    start_worker(cluster, "disks", "--source", "hv01=2")
    start_worker(cluster, "lab", "--reach", "lab=2")  # serves guests only, no source
    cluster.wait_for_workers(2)
    servers = {"web01": start_sshd(root_tree("ubuntu")), "app01": start_sshd(root_tree("debian")),
               "db01": start_sshd(root_tree("ubuntu"))}
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("".join(server.known_hosts_line for server in servers.values()))
    reach = {"web01": "lab", "app01": None, "db01": "ghost"}
    vms, disks, finals = [], {}, {}
    for n, (vm_id, server) in enumerate(servers.items()):
        finals[vm_id] = final_os_disk(tmp_path / "final" / f"{vm_id}.raw", "linux", seed=20 + n)
        disks[vm_id] = placeholder(tmp_path / "hv01" / f"{vm_id}.raw")
        PowerOffWriter(disks[vm_id], finals[vm_id], server.powered_off.is_set).start()
        vm = {"id": vm_id, "source": "hv01", "disk": [{"path": str(disks[vm_id]), "role": "os"}],
              "prep": {"os": "linux", "host": server.host, "port": server.port, "user": "root",
                       "identity": str(keys.client_key), "known_hosts": str(known_hosts),
                       "timeout": 30, "settle_seconds": 1, "settle_timeout": 30}}
        if reach[vm_id]:
            vm["reach"] = reach[vm_id]
        vms.append(vm)
    plan = manifest(tmp_path / "plan.toml", vms, sources={"hv01": 2}, destination=container,
                    emulator=True, threads=2)
    plan.write_text(plan.read_text() + "\n[limits]\nprep_guests = 1\n")
    state = tmp_path / "run.sqlite"

    run = coordinator(plan, cluster.address, "--yes", "--wait-for-workers", "5",
                      "--state", str(state), root=tmp_path)
    out, err = run.communicate(timeout=300)
    assert run.returncode == 1, err + cluster.log("lab") + cluster.log("disks")
    entries = {entry["id"]: entry for entry in json.loads(out)["vms"]}
    assert entries["web01"]["prep"]["worker"] == "lab"
    assert entries["app01"]["prep"]["worker"] == socket.gethostname()  # the coordinator
    for vm_id in ("web01", "app01"):
        entry = entries[vm_id]
        assert (entry["status"], entry["phases"]) == \
            ("done", ["prep", "settle", "check", "upload", "verify"]), entry
        assert entry["disks"][0]["worker"] == "disks"
        assert blob_bytes(azurite, container, f"{vm_id}-os.vhd") == \
            converted(disks[vm_id], tmp_path)
        assert "shutdown [-h] [now]" in read_log(servers[vm_id].upper, RECORDED_LOG)
    lost = entries["db01"]
    assert (lost["status"], lost["phase"], lost["error"]["code"]) == ("failed", "prep",
                                                                      "no_worker")
    assert "--reach ghost" in lost["error"]["message"]
    assert read_log(servers["db01"].upper, RECORDED_LOG) == []

    # prep_guests = 1: one guest's prep ended before the other's began
    store = StateStore(state)
    try:
        spans = {}
        for vm_id in ("web01", "app01"):
            times = {event["kind"]: event["ts"] for event in store.events(vm_id)}
            spans[vm_id] = (times["prep_started"], times["prepped"])
    finally:
        store.close()
    first, second = sorted(spans.values())
    assert first[1] <= second[0], spans

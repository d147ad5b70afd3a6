"""Scale-out over mutual TLS on 127.0.0.1: `azlift bulk scheduler`, `worker` and `run` as
real processes, certificates from a CA made for the test; a process holding another CA's
certificate, or trusting another CA, is refused with one line and exit 5, promptly."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_bulk_cluster import LOOPBACK, Cluster, coordinator
from tests.support.azurite import azurite  # noqa: F401
from tests.support.bulk_plans import blob_bytes, converted, lun0_vms, manifest
from tests.support.tls_ca import CertificateAuthority, Issued


def tls_args(ca: CertificateAuthority, issued: Issued) -> tuple[str, ...]:
    return ("--tls-ca-file", str(ca.ca_file), "--tls-cert", str(issued.cert),
            "--tls-key", str(issued.key))


@pytest.fixture
def authority(tmp_path) -> CertificateAuthority:
    return CertificateAuthority(tmp_path / "tls", "cluster")


@pytest.fixture
def tls_cluster(tmp_path, azurite, authority):  # noqa: F811
    from distributed.security import Security

    client = authority.issue("test-client")
    made = Cluster(tmp_path, azurite, delay=0.0,
                   scheduler_args=tls_args(authority, authority.issue("scheduler")),
                   security=Security(tls_ca_file=str(authority.ca_file),
                                     tls_client_cert=str(client.cert),
                                     tls_client_key=str(client.key), require_encryption=True))
    try:
        yield made
    finally:
        made.close()


def test_a_plan_runs_over_mutual_tls(tls_cluster, authority, tmp_path, azurite) -> None:  # noqa: F811
    assert tls_cluster.address.startswith("tls://127.0.0.1:")
    tls_cluster.worker("w1", "hv01=2", extra=tls_args(authority, authority.issue("w1")))
    tls_cluster.wait_for_workers(1)
    container = azurite.new_container_name()
    vms, expected = lun0_vms(tmp_path / "disks", ("vhdx", "vhd-dynamic", "raw"), seed=300,
                             count=20)
    plan = manifest(tmp_path / "plan.toml", vms, sources={"hv01": 2}, destination=container,
                    emulator=True, threads=2)
    run = coordinator(plan, tls_cluster.address,
                      *tls_args(authority, authority.issue("coordinator")), root=tmp_path)
    out, err = run.communicate(timeout=300)
    assert run.returncode == 0, err + tls_cluster.log("w1")
    report = json.loads(out)
    assert {vm["id"]: (vm["status"], vm["worker"]) for vm in report["vms"]} == {
        f"vm{n}": ("done", "w1") for n in range(3)}
    for name, source in expected.items():
        assert blob_bytes(azurite, container, name) == converted(source, tmp_path), name

    # The scheduler listens on loopback only; the TLS worker serves its comm port to the
    # network (mutual TLS guards it) and its HTTP server on loopback only.
    scheduler = tls_cluster.listening("scheduler")
    assert len(scheduler) >= 2 and {ip for ip, _ in scheduler} <= LOOPBACK, scheduler
    port = tls_cluster.worker_port("w1")
    beyond = {(ip, p) for ip, p in tls_cluster.listening("w1") if ip not in LOOPBACK}
    assert beyond and {p for _, p in beyond} == {port}, (beyond, port)
    assert {p for ip, p in tls_cluster.listening("w1") if ip in LOOPBACK} - {port}


def test_certificates_of_another_ca_are_refused_in_one_line(tls_cluster, authority,
                                                            tmp_path, run_azlift) -> None:
    stranger = CertificateAuthority(tmp_path / "other", "stranger")
    their_cert = stranger.issue("intruder")
    address = tls_cluster.address
    plan = manifest(tmp_path / "plan.toml", [{"id": "a", "source": "hv01", "disk": [
        {"path": str(tmp_path / "x.vhdx"), "lun": 0}]}], sources={"hv01": 1},
        destination="vhds", emulator=True)

    # Trusting another CA: the scheduler's certificate is not vouched for.
    for args in (["bulk", "worker", address, "--source", "hv01", *tls_args(stranger, their_cert)],
                 ["bulk", "run", str(plan), "--scheduler", address, "-q",
                  *tls_args(stranger, their_cert)]):
        done = run_azlift(*args, timeout=60)
        assert done.code == 5, done.err
        [line] = done.err.strip().splitlines()
        assert line.startswith(f"azlift: error: the scheduler at {address} presented a "
                               f"certificate that {stranger.ca_file} does not vouch for"), line

    # The right CA but a certificate it did not sign: the scheduler refuses it.
    for args in (["bulk", "worker", address, "--source", "hv01", "--tls-ca-file",
                  str(authority.ca_file), "--tls-cert", str(their_cert.cert), "--tls-key",
                  str(their_cert.key)],
                 ["bulk", "check", str(plan), "--scheduler", address, "--tls-ca-file",
                  str(authority.ca_file), "--tls-cert", str(their_cert.cert), "--tls-key",
                  str(their_cert.key)]):
        done = run_azlift(*args, timeout=60)
        assert done.code == 5, done.err
        [line] = done.err.strip().splitlines()
        assert line.startswith(f"azlift: error: the scheduler at {address} refused this "
                               f"process's certificate {their_cert.cert}"), line

    # A TLS address without the files, files without their partner: usage errors.
    done = run_azlift("bulk", "worker", address, "--source", "hv01", timeout=60)
    assert done.code == 2 and "give --tls-ca-file, --tls-cert and --tls-key" in done.err
    done = run_azlift("bulk", "run", str(plan), "--scheduler", address, "--tls-ca-file",
                      str(authority.ca_file), timeout=60)
    assert done.code == 2 and "missing --tls-cert, --tls-key" in done.err
    assert "Traceback" not in done.err

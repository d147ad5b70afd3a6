"""The verify phase judges each blob as `azlift upload verify` does. By default (``verify =
"pages"``) type, length, footer and written page ranges: a page lost after the service
accepted it fails that VM with ``verify_failed``, and no data is downloaded. With ``verify
= "full"`` every data range is also read back: a page altered behind the uploader's back
fails its VM (the others finish), and a retry sends the blob again."""
from __future__ import annotations

import threading
from pathlib import Path

from azlift.bulk import build_report, load_manifest
from tests.support.azurite import azurite  # noqa: F401
from tests.support.bulk_plans import blob_bytes, converted, make_disk, manifest, run_in_process
from tests.support.fault_proxy import FaultProxy


def run(plan, state: Path, run_id: str, *, retry_failed: bool = False) -> dict:
    """The report's VMs by id after one in-process run."""
    store, _ = run_in_process(plan, state, run_id, retry_failed=retry_failed)
    report = build_report(store, "plan.toml")
    store.close()
    return {vm["id"]: vm for vm in report["vms"]}


def good_and_bad_plan(tmp_path: Path, proxy, azurite, monkeypatch, container: str,  # noqa: F811
                      good: Path, bad: Path, **defaults):
    """VMs "good" and "bad" (one disk each) uploaded through ``proxy``."""
    monkeypatch.setenv("AZLIFT_EMULATOR_ENDPOINT", proxy.url_for(azurite.endpoint))
    monkeypatch.setenv("AZLIFT_STATE_DIR", str(tmp_path / "state"))
    return load_manifest(manifest(tmp_path / "plan.toml", [
        {"id": "good", "source": "hv01", "disk": [{"path": str(good), "lun": 0}]},
        {"id": "bad", "source": "hv01", "disk": [{"path": str(bad), "lun": 0}]}],
        sources={"hv01": 2}, destination=container, emulator=True, threads=2, **defaults))


def test_full_verify_a_page_altered_after_upload_fails_its_vm_and_a_retry_repairs_it(
        tmp_path: Path, azurite, monkeypatch) -> None:  # noqa: F811
    container = azurite.new_container_name()
    altered: list[int] = []
    lock = threading.Lock()

    def alter_first_page(moment: str, index: int, method: str, target: str) -> None:
        """Once the service has written the first page of bad-lun0.vhd, flip one of its
        bytes behind the uploader's back (as a fault in the storage path would)."""
        if moment != "answered" or method != "PUT" or "comp=page" not in target \
                or "/bad-lun0.vhd" not in target:
            return
        with lock:
            if altered:
                return
            blob = azurite.service_client().get_blob_client(container, "bad-lun0.vhd")
            start = next(iter(blob.list_page_ranges())).start
            page = bytearray(blob.download_blob(offset=start, length=512).readall())
            page[100] ^= 0xFF
            blob.upload_page(bytes(page), offset=start, length=512)
            altered.append(start)

    disks = tmp_path / "disks"
    good = make_disk(disks, "good", "vhdx", seed=31)
    bad = make_disk(disks, "bad", "vhd-dynamic", seed=32)
    with FaultProxy(upstream=(azurite.host, azurite.port), on_request=alter_first_page) as proxy:
        plan = good_and_bad_plan(tmp_path, proxy, azurite, monkeypatch, container, good, bad,
                                 verify="full")

        first = run(plan, tmp_path / "state.sqlite", "v1")
        assert altered, "the proxy never saw a page of bad-lun0.vhd"
        assert (first["good"]["status"], first["good"]["error"]) == ("done", None)
        assert first["bad"]["status"] == "failed"
        assert first["bad"]["error"]["code"] == "verify_failed"
        assert f"bytes differ from offset {altered[0] + 100}" in first["bad"]["error"]["message"]
        assert blob_bytes(azurite, container, "good-lun0.vhd") == converted(good, tmp_path)
        assert blob_bytes(azurite, container, "bad-lun0.vhd") != converted(bad, tmp_path)

        sent = proxy.stats.put_page_bytes_forwarded
        second = run(plan, tmp_path / "state.sqlite", "v2", retry_failed=True)
        assert (second["bad"]["status"], second["bad"]["error"]) == ("done", None)
        assert second["good"]["attempts"] == 1  # done VMs are not touched again
        assert proxy.stats.put_page_bytes_forwarded > sent  # the bad blob was sent again
    assert blob_bytes(azurite, container, "bad-lun0.vhd") == converted(bad, tmp_path)


def test_page_verify_fails_a_lost_page_without_downloading_data(
        tmp_path: Path, azurite, monkeypatch) -> None:  # noqa: F811
    container = azurite.new_container_name()
    cleared: list[int] = []
    reads: list[str] = []
    lock = threading.Lock()

    def clear_first_page(moment: str, index: int, method: str, target: str) -> None:
        """Count the blob reads; once the first page of bad-lun0.vhd is written, clear it
        (a page the service accepted and then lost)."""
        if moment != "answered":
            return
        if method == "GET" and ".vhd" in target and "comp=" not in target:
            with lock:
                reads.append(target)
        if method != "PUT" or "comp=page" not in target or "/bad-lun0.vhd" not in target:
            return
        with lock:
            if cleared:
                return
            blob = azurite.service_client().get_blob_client(container, "bad-lun0.vhd")
            first = next(iter(blob.list_page_ranges()))
            blob.clear_page(offset=first.start, length=first.end - first.start + 1)
            cleared.append(first.start)

    disks = tmp_path / "disks"
    good = make_disk(disks, "good", "vhdx", seed=41)
    bad = make_disk(disks, "bad", "raw", seed=42)
    with FaultProxy(upstream=(azurite.host, azurite.port), on_request=clear_first_page) as proxy:
        plan = good_and_bad_plan(tmp_path, proxy, azurite, monkeypatch, container, good, bad)
        assert {vm.settings.verify for vm in plan.vms} == {"pages"}  # the default

        first = run(plan, tmp_path / "state.sqlite", "p1")
        assert cleared, "the proxy never saw a page of bad-lun0.vhd"
        assert (first["good"]["status"], first["good"]["error"]) == ("done", None)
        assert first["bad"]["error"]["code"] == "verify_failed"
        assert f"data at offset {cleared[0]}" in first["bad"]["error"]["message"]
        assert "is in no written page" in first["bad"]["error"]["message"] or \
            "are in no written page" in first["bad"]["error"]["message"]
        # one read per blob: its footer (512 bytes); no data range was downloaded
        assert sorted(target.split("?")[0].rsplit("/", 1)[-1] for target in reads) == \
            ["bad-lun0.vhd", "good-lun0.vhd"], reads
        assert blob_bytes(azurite, container, "good-lun0.vhd") == converted(good, tmp_path)

        second = run(plan, tmp_path / "state.sqlite", "p2", retry_failed=True)
        assert (second["bad"]["status"], second["bad"]["error"]) == ("done", None)
    assert blob_bytes(azurite, container, "bad-lun0.vhd") == converted(bad, tmp_path)

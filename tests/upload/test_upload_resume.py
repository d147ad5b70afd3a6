"""Resume: an interrupted upload continues with only the unacknowledged units, refuses a
source or blob it did not start, and falls back to the service's page list without a
journal. Also: overwrite refusal and the target-size check."""
from __future__ import annotations

import os
import threading

import pytest

from azlift import vhd
from tests.support.azurite import azurite  # noqa: F401  (fixture)
from tests.upload.helpers import WireCounter, blob_target, converted_bytes, make_source
from azlift.upload.errors import ResumeMismatchError, TargetExistsError, TargetSizeError, UploadInterrupted
from azlift.upload.journal import Journal
from azlift.upload.ranges import MAX_PUT_PAGE
from azlift.upload.uploader import upload_image

THREADS = 3


def _interrupt_after(units: int, cancel: threading.Event):
    """A progress callback that cancels once ``units`` units were recorded."""
    seen = {"events": 0}

    def progress(event) -> None:
        seen["events"] += 1
        if seen["events"] > units:  # the first event is the start
            cancel.set()
    return progress


def _interrupted_upload(source, target, state, units: int = 2) -> None:
    cancel = threading.Event()
    with vhd.open_image(str(source.path)) as image, pytest.raises(UploadInterrupted):
        upload_image(image, target, threads=THREADS, cancel=cancel,
                     progress=_interrupt_after(units, cancel), journal_dir=state)


@pytest.fixture
def source(tmp_path):
    return make_source("raw", tmp_path, size=40 * 1024 * 1024, count=400, seed=21)


def test_resume_sends_only_what_was_not_acknowledged(azurite, tmp_path, source) -> None:  # noqa: F811
    state = tmp_path / "state"
    first = WireCounter()
    target = blob_target(azurite, request_hook=first)
    _interrupted_upload(source, target, state)
    journal = Journal.load(target.identity, state)
    assert journal is not None and 0 < len(journal.acknowledged) < 11
    second = WireCounter()
    resumed = blob_target(azurite, target.client.container_name, request_hook=second)
    with vhd.open_image(str(source.path)) as image:
        summary = upload_image(image, resumed, threads=THREADS, resume=True, journal_dir=state)
    assert resumed.client.download_blob().readall() == converted_bytes(source.path, tmp_path)
    assert summary.resumed_bytes > 0
    assert second.put_page_bytes == summary.data_bytes_sent
    # bytes that travelled twice: at most the window that was in flight at the interrupt
    total_sent = first.put_page_bytes + second.put_page_bytes
    once = _nonzero_bytes(converted_bytes(source.path, tmp_path))
    assert once <= total_sent <= once + THREADS * MAX_PUT_PAGE
    assert summary.data_bytes_sent < once
    assert (summary.data_bytes_sent + summary.resumed_bytes + summary.zero_bytes_skipped
            == summary.blob_length)
    assert Journal.load(target.identity, state) is None  # done: the journal is gone


def _nonzero_bytes(blob: bytes) -> int:
    return sum(512 for offset in range(0, len(blob), 512) if any(blob[offset:offset + 512]))


def test_resume_refuses_a_changed_source(azurite, tmp_path, source) -> None:  # noqa: F811
    state = tmp_path / "state"
    target = blob_target(azurite)
    _interrupted_upload(source, target, state)
    stat = os.stat(source.path)
    os.utime(source.path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with vhd.open_image(str(source.path)) as image, pytest.raises(ResumeMismatchError) as error:
        upload_image(image, target, resume=True, journal_dir=state)
    assert error.value.exit_code == 5
    assert "another source" in str(error.value)


def test_resume_refuses_a_blob_azlift_did_not_start(azurite, tmp_path, source) -> None:  # noqa: F811
    target = blob_target(azurite)
    target.client.create_page_blob(size=41 * 1024 * 1024 + 512)
    with vhd.open_image(str(source.path)) as image, pytest.raises(ResumeMismatchError) as error:
        upload_image(image, target, resume=True, journal_dir=tmp_path / "state")
    assert "not started by azlift" in str(error.value)


def test_resume_without_journal_trusts_the_services_page_list(azurite, tmp_path, source) -> None:  # noqa: F811
    state = tmp_path / "state"
    target = blob_target(azurite)
    _interrupted_upload(source, target, state, units=4)
    Journal.load(target.identity, state).remove()
    counter = WireCounter()
    resumed = blob_target(azurite, target.client.container_name, request_hook=counter)
    with vhd.open_image(str(source.path)) as image:
        summary = upload_image(image, resumed, threads=THREADS, resume=True, journal_dir=state)
    expected = converted_bytes(source.path, tmp_path)
    assert resumed.client.download_blob().readall() == expected
    assert counter.put_page_bytes == summary.data_bytes_sent < _nonzero_bytes(expected)
    assert summary.resumed_bytes > 0  # the pages the service already held
    assert (summary.data_bytes_sent + summary.resumed_bytes + summary.zero_bytes_skipped
            == summary.blob_length)


def test_existing_blob_is_not_overwritten_without_overwrite(azurite, tmp_path, source) -> None:  # noqa: F811
    target = blob_target(azurite)
    target.client.upload_blob(b"precious", blob_type="BlockBlob")
    with vhd.open_image(str(source.path)) as image, pytest.raises(TargetExistsError) as error:
        upload_image(image, target, journal_dir=tmp_path / "state")
    assert error.value.exit_code == 5
    assert target.client.download_blob().readall() == b"precious"
    with vhd.open_image(str(source.path)) as image:
        upload_image(image, target, overwrite=True, journal_dir=tmp_path / "state")
    assert target.client.download_blob().readall() == converted_bytes(source.path, tmp_path)


def test_existing_target_of_the_wrong_size_is_refused_without_create(azurite, tmp_path, source) -> None:  # noqa: F811
    target = blob_target(azurite)
    target.client.create_page_blob(size=64 * 1024 * 1024 + 512)
    with vhd.open_image(str(source.path)) as image, pytest.raises(TargetSizeError):
        upload_image(image, target, create=False, journal_dir=tmp_path / "state")


def test_resume_refuses_when_a_differencing_parent_changed(azurite, tmp_path) -> None:  # noqa: F811
    source = make_source("vhd-differencing", tmp_path, size=40 * 1024 * 1024, count=300)
    state = tmp_path / "state"
    target = blob_target(azurite)
    _interrupted_upload(source, target, state)
    parent = tmp_path / "parent.vhd"
    stat = os.stat(parent)
    os.utime(parent, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with vhd.open_image(str(source.path)) as image, pytest.raises(ResumeMismatchError) as error:
        upload_image(image, target, resume=True, journal_dir=state)
    assert "parents_sha256" in str(error.value)


def test_resume_with_content_md5_hashes_what_an_earlier_run_sent(azurite, tmp_path, source) -> None:  # noqa: F811
    import hashlib
    state = tmp_path / "state"
    target = blob_target(azurite)
    _interrupted_upload(source, target, state)
    with vhd.open_image(str(source.path)) as image:
        summary = upload_image(image, target, threads=THREADS, resume=True, content_md5=True,
                               journal_dir=state)
    blob = target.client.download_blob().readall()
    assert summary.resumed_bytes > 0
    assert summary.content_md5 == hashlib.md5(blob).hexdigest()
    assert target.properties().content_md5 == hashlib.md5(blob).digest()


def test_a_version_1_journal_resumes_and_resends_units_that_now_cross_the_grid(
        azurite, tmp_path) -> None:  # noqa: F811
    """Version 1 cut every extent at each 4 MiB multiple; version 2 keeps a short extent
    whole. A version-1 journal that acknowledged the first half of such an extent must not
    make the resume skip the whole of it."""
    from azlift.upload.journal import fingerprint
    from azlift.upload.stream import fixed_vhd_layout
    from azlift.upload.uploader import _metadata

    mib = 1024 * 1024
    path = tmp_path / "straddle.raw"
    data = os.urandom(128 * 1024)
    with open(path, "wb") as out:
        out.truncate(24 * mib)
        out.seek(4 * mib - 64 * 1024)
        out.write(data)  # one 128 KiB extent across the 4 MiB mark
        out.seek(10 * mib)
        out.write(os.urandom(4096))
    state = tmp_path / "state"
    target = blob_target(azurite)
    with vhd.open_image(str(path)) as image:
        layout = fixed_vhd_layout(image)
        assert (4 * mib - 64 * 1024, 128 * 1024) in list(layout.units())
        fp = fingerprint(image, layout, target.identity)
    # what version 1 left: the blob with the first half of the extent, its unit recorded
    target.create(layout.blob_length, False, _metadata(fp, "uploading"))
    target.put_pages(4 * mib - 64 * 1024, data[:64 * 1024], None)
    journal = Journal.start(fp, state)
    header = journal.path.read_text().replace('"version": 2', '"version": 1', 1)
    assert header != journal.path.read_text()
    journal.path.write_text(header + f"{4 * mib - 64 * 1024}\n")
    assert Journal.load(target.identity, state).version == 1

    resumed = blob_target(azurite, target.client.container_name)
    with vhd.open_image(str(path)) as image:
        summary = upload_image(image, resumed, threads=THREADS, resume=True, journal_dir=state)
    assert resumed.client.download_blob().readall() == converted_bytes(path, tmp_path)
    assert summary.data_bytes_sent == 128 * 1024 + 4096 + 512  # the extent again, whole


def test_an_interrupt_just_after_an_outcome_was_taken_neither_hangs_nor_leaves_threads(
        azurite, tmp_path, source, monkeypatch) -> None:  # noqa: F811
    """Ctrl-C can land between the queue handing over a finished unit and the window
    counting it: the upload must still stop, journal what finished and end its threads."""
    from azlift.upload.workers import Workers

    real_next_done = Workers.next_done
    calls = {"n": 0}

    def interrupted(self, timeout):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] == 4:
            self._done.get(timeout=30)  # taken, then the signal arrives
            raise KeyboardInterrupt
        return real_next_done(self, timeout)

    monkeypatch.setattr(Workers, "next_done", interrupted)
    state = tmp_path / "state"
    target = blob_target(azurite)
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        try:
            with vhd.open_image(str(source.path)) as image:
                upload_image(image, target, threads=THREADS, journal_dir=state)
        except BaseException as error:  # noqa: BLE001 - inspected below
            outcome["error"] = error

    runner = threading.Thread(target=run)
    runner.start()
    runner.join(60)
    assert not runner.is_alive(), "the upload hung after the interrupt"
    assert isinstance(outcome.get("error"), KeyboardInterrupt)
    assert not [thread for thread in threading.enumerate()
                if thread.name.startswith("azlift-put") and thread.is_alive()]
    journal = Journal.load(target.identity, state)
    assert journal is not None and len(journal.acknowledged) >= 2

"""Units read through a mapping under a read lease: the lease is real (the kernel lists
it and holds writers back), it goes back within moments of a writer asking, and a source
opened for writing or cut short mid-upload ends in a right blob or a clean error, never in
a killed process."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from azlift import vhd
from azlift.upload.leased_source import LeasedSource, SourceWithdrawn, close_mapping
from azlift.upload.stream import SourceReader, fixed_vhd_layout
from azlift.upload.cells import send_unit
from azlift.upload.uploader import upload_image
from azlift.vhd.conversion import convert
from azlift.vhd.errors import VhdError
from tests.support.azurite import azurite  # noqa: F401  (fixture)
from tests.upload.helpers import WireCounter, blob_target

MIB = 1024 * 1024


def leases_on(path: Path) -> list[str]:
    """/proc/locks lines of the leases held on ``path`` (by any process)."""
    stat = os.stat(path)
    where = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    return [line for line in Path("/proc/locks").read_text().splitlines()
            if " LEASE " in f" {line} " and line.split()[5] == where]


def wait_for_break(path: Path) -> None:
    """Until the kernel shows a writer asking for ``path``'s lease."""
    deadline = time.monotonic() + 10
    while not any(" BREAKING " in line for line in leases_on(path)):
        assert time.monotonic() < deadline, "the writer never asked for the lease"
        time.sleep(0.02)


def writer(path: Path, action: str) -> subprocess.Popen:
    """Another process that opens ``path`` for writing ("open"), truncates it to 1 MiB
    ("truncate") or writes 4 MiB of 0x5a at its start ("write"), then prints how long the
    kernel made it wait."""
    step = {"open": "os.close(os.open(p, os.O_WRONLY))",
            "truncate": f"os.truncate(p, {MIB})",
            "write": f"f = os.open(p, os.O_WRONLY); os.pwrite(f, b'Z' * {4 * MIB}, 0); "
                     "os.close(f)"}[action]
    code = (f"import os, time; p = {str(path)!r}; t = time.monotonic(); {step}; "
            "print(time.monotonic() - t)")
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def file_of(tmp_path: Path, size: int = 8 * MIB) -> Path:
    path = tmp_path / "source.raw"
    path.write_bytes(os.urandom(size))
    return path


def take(path: Path) -> LeasedSource:
    fd = os.open(path, os.O_RDONLY)
    try:
        leased = LeasedSource.take(str(path), fd)
    finally:
        os.close(fd)
    assert leased is not None, "this system grants no read lease on the test's files"
    return leased


@pytest.fixture
def leased_file(tmp_path: Path):  # noqa: ANN201 - (path, LeasedSource), closed after
    path = file_of(tmp_path)
    leased = take(path)
    try:
        yield path, leased
    finally:
        leased.close()


def test_the_lease_is_held_and_given_back(leased_file) -> None:
    path, leased = leased_file
    held = leases_on(path)
    assert len(held) == 1 and " READ " in held[0] and f" {os.getpid()} " in held[0]
    leased.close()
    assert leases_on(path) == []


def test_no_lease_while_the_file_is_open_for_writing_or_for_another_file(tmp_path) -> None:
    path = file_of(tmp_path)
    fd = os.open(path, os.O_RDWR)
    try:
        assert LeasedSource.take(str(path), fd) is None
    finally:
        os.close(fd)
    (tmp_path / "other").mkdir()
    other = file_of(tmp_path / "other")
    fd = os.open(other, os.O_RDONLY)
    try:
        assert LeasedSource.take(str(path), fd) is None
        assert leases_on(path) == []
    finally:
        os.close(fd)


def test_no_lease_on_a_filesystem_without_a_block_device() -> None:
    """tmpfs here; NFS, SMB, FUSE and overlays alike: their files can change elsewhere."""
    shm = Path("/dev/shm")
    assert shm.is_dir() and os.major(shm.stat().st_dev) == 0
    path = shm / f"azlift-test-{os.getpid()}"
    path.write_bytes(bytes(MIB))
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            assert LeasedSource.take(str(path), fd) is None
        finally:
            os.close(fd)
    finally:
        path.unlink()


def test_map_gives_the_files_bytes_and_refuses_what_it_cannot_map(tmp_path) -> None:
    path = file_of(tmp_path, 3 * MIB)
    leased = take(path)
    try:
        mapping = leased.map(MIB, MIB)
        assert mapping is not None and mapping[:] == path.read_bytes()[MIB:2 * MIB]
        close_mapping(mapping)
        assert leased.map(512, MIB) is None  # not on a page boundary
        assert leased.map(0, MIB - 4096) is None  # too small to gain from a mapping
        assert leased.map(2 * MIB, 2 * MIB) is None  # runs past the end: populate refuses
    finally:
        leased.close()


def test_a_writer_waits_for_an_open_guard_and_no_longer(leased_file) -> None:
    path, leased = leased_file
    with leased.guard():
        child = writer(path, "truncate")
        wait_for_break(path)
        time.sleep(0.3)
        assert child.poll() is None  # held back while the mapping may be read
        assert os.path.getsize(path) == 8 * MIB
    closed = time.monotonic()
    child.communicate(timeout=10)
    assert time.monotonic() - closed < 5  # let through when the guard closed, not at 45 s
    assert os.path.getsize(path) == MIB
    with pytest.raises(SourceWithdrawn), leased.guard():
        pytest.fail("a guard ran after the lease was broken")
    assert leased.withdrawn and leased.map(0, MIB) is None
    assert leases_on(path) == []


def test_a_guard_asked_for_once_a_writer_waits_refuses_and_lets_it_through(leased_file) -> None:
    path, leased = leased_file
    child = writer(path, "open")
    wait_for_break(path)
    assert not leased.withdrawn  # nothing polled: the guard itself finds out
    with pytest.raises(SourceWithdrawn), leased.guard():
        pytest.fail("a guard ran while a writer waited")
    assert float(child.communicate(timeout=10)[0]) < 5
    assert leased.map(0, MIB) is None


def test_poll_lets_a_writer_through_promptly(leased_file) -> None:
    path, leased = leased_file
    child = writer(path, "open")
    deadline = time.monotonic() + 10
    while child.poll() is None and time.monotonic() < deadline:
        leased.poll()
        time.sleep(0.05)
    waited = float(child.communicate(timeout=10)[0])
    assert waited < 5 and leased.withdrawn


class HookAt:
    """A request hook that runs ``action`` once, at the ``nth`` Put Page."""

    def __init__(self, nth: int, action) -> None:  # noqa: ANN001
        self.nth, self.action, self.seen = nth, action, 0
        self._lock = threading.Lock()

    def __call__(self, request) -> None:  # noqa: ANN001
        http = request.http_request
        if http.method != "PUT" or "comp=page" not in http.url:
            return
        with self._lock:
            self.seen += 1
            run = self.seen == self.nth
        if run:
            self.action()


def mapped_now(path: Path) -> bool:
    """True while this process maps ``path`` (the kernel's /proc/self/maps)."""
    return any(line.endswith(f" {path}") for line in
               Path("/proc/self/maps").read_text().splitlines())


def test_a_writer_mid_upload_waits_moments_and_the_blob_is_right(azurite, tmp_path) -> None:  # noqa: F811
    path = file_of(tmp_path, 40 * MIB)
    state: dict = {}

    def open_for_writing() -> None:  # in the request of a cell sent from its mapping
        state["leases"], state["mapped"] = leases_on(path), mapped_now(path)
        state["child"] = writer(path, "open")

    target = blob_target(azurite, request_hook=HookAt(2, open_for_writing))
    with vhd.open_image(str(path)) as image:
        summary = upload_image(image, target, threads=3, journal_dir=tmp_path / "state")
    waited = float(state["child"].communicate(timeout=10)[0])
    assert state["mapped"] and len(state["leases"]) == 1
    assert f" {os.getpid()} " in state["leases"][0]
    assert waited < 5
    blob = target.client.download_blob().readall()
    assert len(blob) == summary.blob_length and blob[:40 * MIB] == path.read_bytes()
    assert leases_on(path) == [] and not mapped_now(path)


def test_a_source_cut_short_mid_upload_is_a_clean_error(azurite, tmp_path) -> None:  # noqa: F811
    path = tmp_path / "fixed.vhd"
    convert(str(file_of(tmp_path, 40 * MIB)), str(path))
    state: dict = {}

    def cut_short() -> None:  # waits for the cut: the cells after it meet a short file
        state["mapped"] = mapped_now(path)
        state["waited"] = float(writer(path, "truncate").communicate(timeout=20)[0])

    target = blob_target(azurite, request_hook=HookAt(2, cut_short))
    with vhd.open_image(str(path)) as image, pytest.raises(VhdError) as raised:
        upload_image(image, target, threads=3, journal_dir=tmp_path / "state")
    assert "ends after" in str(raised.value) and str(path) in str(raised.value)
    assert "was deleted" in str(raised.value) and not target.exists()
    assert state["mapped"] and state["waited"] < 5
    assert os.path.getsize(path) == MIB


@contextmanager
def first_unit_of(path: Path, target):  # noqa: ANN001, ANN201 - (send, LeasedSource)
    """The blob created and the source leased; ``send()`` sends the first 4 MiB unit
    through send_unit. The lease and the reader are closed after."""
    with vhd.open_image(str(path)) as image:
        layout = fixed_vhd_layout(image)
        target.create(layout.blob_length, False)
        reader = SourceReader(image)
        leased = reader.lease()
        assert leased is not None
        try:
            yield (lambda: send_unit(reader, target, (0, 4 * MIB), layout, True, False, None,
                                     threading.Event(), leased=leased)), leased
        finally:
            leased.close()
            reader.close()


def test_a_unit_whose_mapping_is_withdrawn_is_read_again_into_a_buffer(azurite, tmp_path) -> None:  # noqa: F811
    path = file_of(tmp_path, 8 * MIB)
    target = blob_target(azurite)
    with first_unit_of(path, target) as (send, _):
        child = writer(path, "open")
        wait_for_break(path)
        result = send()  # mapped (nothing withdrawn yet), refused at the scan's guard, read again
        assert float(child.communicate(timeout=10)[0]) < 5
    assert (result.sent_bytes, result.requests) == (4 * MIB, 1)
    blob = target.client.download_blob(offset=0, length=4 * MIB).readall()
    assert blob == path.read_bytes()[:4 * MIB]


def test_a_unit_whose_lease_went_during_its_request_is_put_again_from_a_buffer(
        azurite, tmp_path) -> None:  # noqa: F811
    """What left through the mapping after a writer had the file may not be what the file
    holds: the unit goes again, read into a buffer."""
    path = file_of(tmp_path, 8 * MIB)
    counter = WireCounter()
    state: dict = {}

    def writer_first(request) -> None:  # noqa: ANN001 - in the unit's request, before it leaves
        counter(request)
        if counter.put_pages == 1:
            child = writer(path, "write")
            wait_for_break(path)
            state["leased"].poll()  # as the upload's main loop does
            state["waited"] = float(child.communicate(timeout=10)[0])

    target = blob_target(azurite, request_hook=writer_first)
    with first_unit_of(path, target) as (send, state["leased"]):
        result = send()
    assert state["waited"] < 5 and counter.put_pages == 2
    assert (result.sent_bytes, result.requests) == (4 * MIB, 1)
    assert target.client.download_blob(offset=0, length=4 * MIB).readall() == b"Z" * 4 * MIB


def test_a_unit_asks_the_kernel_afresh_whether_its_lease_held(azurite, tmp_path) -> None:  # noqa: F811
    """No poll, no guard after the body left: the unit itself asks whether a writer came
    (the kernel ends a lease unasked once the break time runs out), gives the lease back
    and goes again from a buffer."""
    path = file_of(tmp_path, 8 * MIB)
    counter = WireCounter()
    state: dict = {}

    def writer_waits(request) -> None:  # noqa: ANN001 - the body has not left yet
        counter(request)
        if counter.put_pages == 1:
            state["child"] = writer(path, "write")
            wait_for_break(path)

    target = blob_target(azurite, request_hook=writer_waits)
    with first_unit_of(path, target) as (send, leased):
        started = time.monotonic()
        result = send()
        assert leased.withdrawn and leases_on(path) == []
        assert time.monotonic() - started < 5
    assert float(state["child"].communicate(timeout=10)[0]) < 5
    assert counter.put_pages == 2 and (result.sent_bytes, result.requests) == (4 * MIB, 1)


def test_a_worker_never_reads_a_file_renamed_over_the_source(tmp_path) -> None:
    """Workers reopen the source by its path: once another file took that name, they
    share the caller's handle instead of reading the other file."""
    path = file_of(tmp_path, 2 * MIB)
    original = path.read_bytes()
    other = tmp_path / "other.raw"
    other.write_bytes(b"\x5a" * 2 * MIB)
    with vhd.open_image(str(path), "raw") as image:
        reader = SourceReader(image)
        try:
            os.replace(other, path)
            got: list[bytes] = []
            worker = threading.Thread(target=lambda: got.append(reader.read(0, 2 * MIB)))
            worker.start()
            worker.join(timeout=30)
        finally:
            reader.close()
    assert got == [original]


def test_no_lease_for_a_source_whose_data_lies_in_small_pieces(azurite, tmp_path) -> None:  # noqa: F811
    """Cells under MIN_MAPPED are read into buffers: such a source is not leased at all."""
    path = tmp_path / "sparse.raw"
    with open(path, "wb") as handle:
        handle.truncate(24 * MIB)
        for slot in range(0, 24, 2):
            handle.seek(slot * MIB)
            handle.write(os.urandom(256 * 1024))
    state: dict = {}
    target = blob_target(azurite, request_hook=HookAt(
        2, lambda: state.update(leases=leases_on(path), mapped=mapped_now(path))))
    with vhd.open_image(str(path)) as image:
        upload_image(image, target, threads=3, journal_dir=tmp_path / "state")
    assert state == {"leases": [], "mapped": False}
    assert target.client.download_blob().readall()[:24 * MIB] == path.read_bytes()

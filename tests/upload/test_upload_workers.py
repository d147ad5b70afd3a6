"""workers.Workers: outcomes in the order items finish, errors handed back, threads
started only as items need them and all ended by close."""
from __future__ import annotations

import threading
import time

import pytest

from azlift.upload.workers import Workers


def test_outcomes_come_back_as_items_finish_with_their_items() -> None:
    release = {name: threading.Event() for name in ("slow", "fast")}

    def job(name: str) -> str:
        release[name].wait(5)
        return name.upper()

    workers = Workers(job, 2, "t")
    workers.submit("slow")
    workers.submit("fast")
    assert workers.next_done(timeout=0.05) is None  # neither finished yet
    release["fast"].set()
    first = workers.next_done(timeout=5)
    release["slow"].set()
    second = workers.next_done(timeout=5)
    workers.close()
    assert (first.item, first.result, second.item, second.result) == (
        "fast", "FAST", "slow", "SLOW")
    assert workers.in_flight == 0 and workers.next_done(timeout=None) is None


def test_an_error_is_handed_back_and_the_thread_goes_on() -> None:
    def job(value: int) -> int:
        if value == 0:
            raise ZeroDivisionError("no")
        return 10 // value

    workers = Workers(job, 1, "t")
    for value in (0, 5):
        workers.submit(value)
    outcomes = [workers.next_done(timeout=5) for _ in range(2)]
    workers.close()
    assert isinstance(outcomes[0].error, ZeroDivisionError) and outcomes[0].item == 0
    assert (outcomes[1].result, outcomes[1].error) == (2, None)


def test_threads_start_as_needed_up_to_the_limit_and_close_ends_them() -> None:
    gate = threading.Event()
    names: set[str] = set()
    lock = threading.Lock()

    def job(_: int) -> None:
        with lock:
            names.add(threading.current_thread().name)
        gate.wait(5)

    before = threading.active_count()
    workers = Workers(job, 3, "azlift-test")
    workers.submit(0)
    assert threading.active_count() == before + 1
    for item in range(1, 6):
        workers.submit(item)
    assert threading.active_count() == before + 3  # never more than the limit
    gate.set()
    while workers.in_flight:
        assert workers.next_done(timeout=5) is not None
    workers.close()
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == before
    assert names <= {"azlift-test_0", "azlift-test_1", "azlift-test_2"} and names


def test_at_least_one_thread() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Workers(lambda item: item, 0, "t")


def test_close_hands_back_every_outcome_not_collected() -> None:
    workers = Workers(lambda item: item * 2, 2, "t")
    for item in range(5):
        workers.submit(item)
    first = workers.next_done(timeout=5)
    left = workers.close()
    assert sorted([first.item] + [outcome.item for outcome in left]) == [0, 1, 2, 3, 4]
    assert all(outcome.result == outcome.item * 2 for outcome in left)
    assert workers.in_flight == 0 and workers.close() == []

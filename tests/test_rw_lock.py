"""The reader/writer lock on the local copy: readers share it, a swapper waits for them and shuts them out,
and the thread holding it exclusively may take it again (a write unit that reads must not wait for itself)."""

from __future__ import annotations

import threading
import time

from backend.db.rw_lock import ReadWriteLock


def test_readers_share_and_a_swapper_waits_for_them() -> None:
    lock = ReadWriteLock()
    events: list[str] = []
    with (
        lock.shared(),
        lock.shared(),
    ):  # two readers at once (one thread, but not exclusive: no reentry path)
        swapper = threading.Thread(target=lambda: _swap(lock, events))
        swapper.start()
        time.sleep(0.1)
        events.append("readers done")
    swapper.join(5)
    assert events == ["readers done", "swapped"]


def test_a_reader_waits_while_the_swap_runs() -> None:
    lock = ReadWriteLock()
    events: list[str] = []
    with lock.exclusive():
        reader = threading.Thread(target=lambda: _read(lock, events))
        reader.start()
        time.sleep(0.1)
        events.append("swapped")
    reader.join(5)
    assert events == ["swapped", "read"]


def test_the_exclusive_holder_may_take_it_again() -> None:
    lock = ReadWriteLock()
    done = threading.Event()

    def nested() -> None:
        with lock.exclusive(), lock.shared(), lock.exclusive():
            done.set()

    worker = threading.Thread(target=nested)
    worker.start()
    worker.join(5)
    assert done.is_set()
    with lock.exclusive():  # released fully afterwards
        pass


def _swap(lock: ReadWriteLock, events: list[str]) -> None:
    with lock.exclusive():
        events.append("swapped")


def _read(lock: ReadWriteLock, events: list[str]) -> None:
    with lock.shared():
        events.append("read")

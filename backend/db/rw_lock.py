"""The reader/writer lock on a worker's local copy of the database.

Why its own lock: ``VolumeDatabase`` replaces the local copy (a pull, a publish) while request threads read
it; SQLite's locks cannot help since the file itself is swapped, so sessions hold this lock shared and a swap
holds it exclusively.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class ReadWriteLock:
    """Many readers of the local copy, or one swapper of it: a file is never replaced under an open session.

    The thread holding it exclusively may take it again (shared or exclusive): a write unit that reads through
    ``read()`` while it runs on the local copy must not wait for itself.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._owner: int | None = None

    def _mine(self) -> bool:
        return self._writer and self._owner == threading.get_ident()

    @contextmanager
    def shared(self) -> Iterator[None]:
        if self._mine():
            yield
            return
        with self._cond:
            while self._writer:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        if self._mine():
            yield
            return
        with self._cond:
            while self._writer or self._readers:
                self._cond.wait()
            self._writer = True
            self._owner = threading.get_ident()
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._owner = None
                self._cond.notify_all()

"""The one retry policy for a unit that lost a race (``backend.db.interface.run_retrying``): plain write units,
a generation's start and an import's commit all use it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from backend.db import interface
from backend.db.errors import WriteConflictError
from backend.db.interface import run_retrying


@pytest.fixture(autouse=True)
def no_pause(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    pauses: list[int] = []
    monkeypatch.setattr(interface, "conflict_pause", pauses.append)
    return pauses


def _losing(times: int) -> tuple[list[int], Callable[[], str]]:
    calls: list[int] = []

    def attempt() -> str:
        calls.append(len(calls))
        if len(calls) <= times:
            raise WriteConflictError("a peer published meanwhile")
        return "done"

    return calls, attempt


def test_a_lost_race_runs_again_after_a_growing_pause(no_pause: list[int]) -> None:
    calls, attempt = _losing(2)
    assert run_retrying(attempt, 2) == "done"
    assert len(calls) == 3 and no_pause == [0, 1]


def test_it_gives_up_after_the_retries(no_pause: list[int]) -> None:
    calls, attempt = _losing(5)
    with pytest.raises(WriteConflictError):
        run_retrying(attempt, 2)
    assert len(calls) == 3 and no_pause == [0, 1]


def test_before_retry_can_refuse_a_new_try(no_pause: list[int]) -> None:
    calls, attempt = _losing(1)
    asked: list[bool] = []

    def refuse() -> bool:
        asked.append(True)
        return False

    with pytest.raises(WriteConflictError):
        run_retrying(attempt, 3, before_retry=refuse)
    assert len(calls) == 1 and asked == [True] and no_pause == []
    calls, attempt = _losing(1)
    assert run_retrying(attempt, 3, before_retry=lambda: True) == "done"


def test_other_errors_are_not_retried(no_pause: list[int]) -> None:
    calls: list[int] = []

    def attempt() -> None:
        calls.append(1)
        raise ValueError("not a race")

    with pytest.raises(ValueError):
        run_retrying(attempt, 3)
    assert calls == [1] and no_pause == []

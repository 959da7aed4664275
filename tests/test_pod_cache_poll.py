"""The pod process polls its SuperNode fast while a run is active and slowly when idle.

A run's next message then waits ~0.05 s for the pod instead of up to 0.5 s, while an idle
pod keeps its polling cheap; an interval the owner sets is used as given.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from fedplug._flower import _pod_executor
from fedplug._flower._pod_executor import (
    ACTIVE_POLL_INTERVAL,
    ACTIVE_WINDOW,
    DEFAULT_POLL_INTERVAL,
    POLL_INTERVAL_ENV,
    PodExecutor,
)


def _executor(pod_file: Path) -> PodExecutor:
    # No SuperNode is needed: nothing here calls the Runtime API.
    return PodExecutor(pod_file, "127.0.0.1:9", b"s" * 32)


def test_fast_polls_only_while_a_run_is_active(fed_pods, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(POLL_INTERVAL_ENV, raising=False)
    executor = _executor(fed_pods(2, rows=60)[0])
    try:
        assert executor.idle_wait() == DEFAULT_POLL_INTERVAL  # no task yet: idle
        executor.last_task = time.monotonic()
        assert executor.idle_wait() == ACTIVE_POLL_INTERVAL < DEFAULT_POLL_INTERVAL
        executor.last_task = time.monotonic() - ACTIVE_WINDOW - 1
        assert executor.idle_wait() == DEFAULT_POLL_INTERVAL  # the run is over
    finally:
        executor.close()


def test_an_interval_the_owner_sets_is_kept(fed_pods, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(POLL_INTERVAL_ENV, "0.3")
    executor = _executor(fed_pods(2, rows=60)[0])
    try:
        assert executor.idle_wait() == 0.3
        executor.last_task = time.monotonic()
        assert executor.idle_wait() == 0.3
    finally:
        executor.close()


def test_a_finished_task_marks_the_run_active(fed_pods, monkeypatch: pytest.MonkeyPatch) -> None:
    """Even a task the pod cannot run counts: the run's next message comes soon."""
    monkeypatch.delenv(POLL_INTERVAL_ENV, raising=False)
    executor = _executor(fed_pods(2, rows=60)[0])

    class Channel:
        def __init__(self, *args: object) -> None:
            self.ended = False

        def push_output(self, *args: object) -> None:
            self.ended = True

        def close(self) -> None:
            pass

    monkeypatch.setattr(_pod_executor, "TaskChannel", Channel)
    try:
        task = _pod_executor.AcquiredTask("token", 1, 1, "agent-app")
        executor.run_task(task)
        assert executor.idle_wait() == ACTIVE_POLL_INTERVAL
    finally:
        executor.close()

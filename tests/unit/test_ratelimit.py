"""failover/ratelimit.py: one line per interval per kind, and the count of what was held back."""

from __future__ import annotations

import logging
import threading

import pytest

from failover.ratelimit import RateLimitedLog


class Clock:
    """A clock the test moves by hand, so no assertion depends on how fast the machine is."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "test.ratelimit"]


@pytest.fixture
def setup(caplog: pytest.LogCaptureFixture) -> tuple[RateLimitedLog, Clock]:
    caplog.set_level(logging.INFO, "test.ratelimit")
    clock = Clock()
    return RateLimitedLog(logging.getLogger("test.ratelimit"), interval=1.0, clock=clock), clock


def test_one_line_per_interval_then_the_count_of_what_was_held_back(
    setup: tuple[RateLimitedLog, Clock], caplog: pytest.LogCaptureFixture
) -> None:
    rlog, clock = setup
    assert rlog.log("refused", logging.WARNING, "refused %s", "a")
    for i in range(5):
        clock.now += 0.1
        assert not rlog.log("refused", logging.WARNING, "refused %s", f"b{i}")
    assert rlog.pending() == {"refused": 5}
    clock.now += 0.6  # 1.1 s after the first line
    assert rlog.log("refused", logging.WARNING, "refused %s", "c")
    assert lines(caplog) == ["refused a", "refused c (5 more in the last 1.1 s)"]
    assert rlog.pending() == {}


def test_kinds_are_limited_separately(setup: tuple[RateLimitedLog, Clock], caplog: pytest.LogCaptureFixture) -> None:
    rlog, _ = setup
    assert rlog.log("refused", logging.WARNING, "refused")
    assert rlog.log("cut", logging.WARNING, "cut")
    assert not rlog.log("refused", logging.WARNING, "refused again")
    assert lines(caplog) == ["refused", "cut"]


def test_flush_reports_a_flood_that_stopped_once_with_its_level(
    setup: tuple[RateLimitedLog, Clock], caplog: pytest.LogCaptureFixture
) -> None:
    rlog, clock = setup
    rlog.log("bad message", logging.WARNING, "first")
    rlog.log("bad message", logging.ERROR, "second")
    rlog.log("bad message", logging.ERROR, "third")
    assert rlog.flush() == 0  # not yet an interval old
    clock.now += 1.5
    assert rlog.flush() == 1
    assert rlog.flush() == 0  # said once
    assert lines(caplog) == ["first", "bad message: 2 more in the last 1.5 s"]
    assert caplog.records[-1].levelno == logging.ERROR


def test_a_message_with_a_percent_sign_and_no_args(
    setup: tuple[RateLimitedLog, Clock], caplog: pytest.LogCaptureFixture
) -> None:
    rlog, clock = setup
    rlog.log("x", logging.INFO, "100% idle")
    rlog.log("x", logging.INFO, "100% idle")
    clock.now += 2
    rlog.log("x", logging.INFO, "100% idle")
    assert lines(caplog) == ["100% idle", "100% idle (1 more in the last 2.0 s)"]


def test_many_threads_at_once_write_one_line_and_lose_no_count(
    setup: tuple[RateLimitedLog, Clock], caplog: pytest.LogCaptureFixture
) -> None:
    rlog, clock = setup
    start = threading.Barrier(8)

    def hammer() -> None:
        start.wait()
        for _ in range(500):
            rlog.log("refused", logging.WARNING, "refused")

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert lines(caplog) == ["refused"]
    assert rlog.pending() == {"refused": 8 * 500 - 1}
    clock.now += 1
    rlog.flush()
    assert lines(caplog)[-1] == f"refused: {8 * 500 - 1} more in the last 1.0 s"


def test_the_default_clock_is_monotonic(caplog: pytest.LogCaptureFixture) -> None:
    import time

    assert RateLimitedLog(logging.getLogger("test.ratelimit"))._clock is time.monotonic


def test_a_burst_writes_a_few_lines_then_one_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "test.ratelimit")
    clock = Clock()
    rlog = RateLimitedLog(logging.getLogger("test.ratelimit"), interval=1.0, burst=3, clock=clock)
    written = [rlog.log("bad message", logging.WARNING, "bad %d", i) for i in range(10)]
    assert written == [True] * 3 + [False] * 7
    clock.now += 0.5
    assert not rlog.log("bad message", logging.WARNING, "bad %d", 10)  # half a token only
    clock.now += 0.5
    assert rlog.log("bad message", logging.WARNING, "bad %d", 11)
    assert lines(caplog) == ["bad 0", "bad 1", "bad 2", "bad 11 (8 more in the last 1.0 s)"]
    # a sustained flood: one line per interval, however many events
    for _ in range(10):
        clock.now += 0.01
        for _ in range(100):
            rlog.log("bad message", logging.WARNING, "bad")
    clock.now += 1.0
    assert rlog.log("bad message", logging.WARNING, "bad")
    assert len(lines(caplog)) == 5


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        RateLimitedLog(logging.getLogger("x"), interval=0)
    with pytest.raises(ValueError):
        RateLimitedLog(logging.getLogger("x"), burst=0)

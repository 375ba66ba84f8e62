"""failover/supervise.py and the Agent's threads: a failing thread is logged and restarted, a
vital one that keeps failing (or the decision loop raising) ends the daemon, never half-alive.

The Agent runs in-process with its real loop, state file and local socket; only the input
thread functions are the test's own (plain callables, as lhcd and rhcd pass theirs)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from failover.agent import Agent
from failover.config import load
from failover.machine import ProbeResult, Role
from failover.supervise import DaemonFailed, Supervisor
from tests.unit.test_cli import CONFIG, write_scripts_and_secret

WAIT = 20.0  # generous bound for what takes well under a second on an idle machine


def wait_until(condition: Callable[[], bool], timeout: float = WAIT) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


@pytest.fixture
def log() -> logging.Logger:
    return logging.getLogger("test-supervise")


def fast(
    stop: threading.Event,
    log: logging.Logger,
    vital_failures: int = 5,
    log_every: float = 10.0,
    backoff: float = 0.001,
    backoff_max: float = 0.01,
) -> Supervisor:
    """A supervisor with short backoffs, so that tests see many restarts quickly."""
    return Supervisor(
        stop, log, backoff=backoff, backoff_max=backoff_max, vital_failures=vital_failures, log_every=log_every
    )


def test_a_thread_that_raises_once_is_logged_and_restarted(
    log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    stop, calls = threading.Event(), list[int]()

    def flaky(stop: threading.Event) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise TypeError("unexpected None")
        stop.wait()

    guard = fast(stop, log)
    thread = guard.start("flaky", flaky, vital=True)
    assert wait_until(lambda: len(calls) == 2)
    assert guard.counts == {"flaky": 1} and guard.failure is None and not stop.is_set()
    (record,) = [r for r in caplog.records if "flaky" in r.getMessage()]
    assert "TypeError: unexpected None" in record.getMessage() and record.exc_info is not None
    stop.set()
    thread.join(WAIT)
    assert not thread.is_alive()
    guard.check()  # a clean stop is no failure


def test_a_vital_thread_that_keeps_failing_stops_the_daemon(log: logging.Logger) -> None:
    stop = threading.Event()

    def broken(stop: threading.Event) -> None:
        raise OSError(24, "Too many open files")

    guard = fast(stop, log, vital_failures=4)
    guard.start("control-server", broken, vital=True)
    assert stop.wait(WAIT)
    assert guard.counts["control-server"] == 4
    with pytest.raises(DaemonFailed, match=r"vital thread control-server failed 4 times within 60 s; last: OSError"):
        guard.check()


def test_a_thread_that_is_not_vital_is_restarted_for_as_long_as_it_takes(log: logging.Logger) -> None:
    stop = threading.Event()

    def broken(stop: threading.Event) -> None:
        raise RuntimeError("no network")

    guard = fast(stop, log, vital_failures=3)
    guard.start("run_notices", broken, vital=False)
    assert wait_until(lambda: guard.counts["run_notices"] >= 30)
    assert not stop.is_set() and guard.failure is None
    stop.set()


def test_a_thread_that_returns_while_the_daemon_runs_is_a_failure(log: logging.Logger) -> None:
    stop = threading.Event()
    guard = fast(stop, log, vital_failures=3)
    guard.start("probe_master", lambda stop: None, vital=True)
    assert stop.wait(WAIT)
    with pytest.raises(DaemonFailed, match="returned while the daemon runs"):
        guard.check()


def test_the_same_error_is_logged_once_per_interval(log: logging.Logger, caplog: pytest.LogCaptureFixture) -> None:
    stop, calls = threading.Event(), list[int]()

    def broken(stop: threading.Event) -> None:
        calls.append(1)
        raise ValueError("same every time")

    guard = fast(stop, log, log_every=3600.0)
    guard.start("send_heartbeats", broken, vital=False)
    assert wait_until(lambda: len(calls) >= 50)
    stop.set()
    logged = [r for r in caplog.records if "send_heartbeats" in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is not None


def test_a_repeated_error_says_how_often_it_was_left_out(log: logging.Logger, caplog: pytest.LogCaptureFixture) -> None:
    stop, calls = threading.Event(), list[int]()

    def broken(stop: threading.Event) -> None:
        calls.append(1)
        raise ValueError("again")

    guard = fast(stop, log, log_every=0.2, backoff=0.02, backoff_max=0.02)
    guard.start("watch_service", broken, vital=False)
    assert wait_until(lambda: sum("more times since" in r.getMessage() for r in caplog.records) >= 1)
    stop.set()
    assert len(calls) > len([r for r in caplog.records if "watch_service" in r.getMessage()])


def test_a_watched_thread_that_ends_stops_the_daemon(log: logging.Logger) -> None:
    stop = threading.Event()
    guard = fast(stop, log)
    ended = threading.Thread(target=lambda: None)
    ended.start()
    guard.watch("local-server", ended)
    assert stop.wait(WAIT)
    with pytest.raises(DaemonFailed, match="the local-server thread ended"):
        guard.check()


# ---------------------------------------------------------------------------------------------- the Agent


@pytest.fixture
def agent(tmp_path: Path, log: logging.Logger) -> Agent:
    write_scripts_and_secret(tmp_path)
    (tmp_path / "failover_config.py").write_text(CONFIG)
    return Agent(load(tmp_path / "failover_config.py"), Role.MASTER, "lhcd", log)


@pytest.fixture
def serving(agent: Agent) -> Iterator[Callable[[list[Callable[[threading.Event], None]]], ServeThread]]:
    started: list[ServeThread] = []

    def serve(inputs: list[Callable[[threading.Event], None]]) -> ServeThread:
        thread = ServeThread(agent, inputs)
        thread.start()
        started.append(thread)
        return thread

    yield serve
    for thread in started:
        thread.stop.set()
        thread.join(WAIT)


class ServeThread(threading.Thread):
    """Agent.serve() as the daemon's main thread runs it; what it raised is kept."""

    def __init__(self, agent: Agent, inputs: list[Callable[[threading.Event], None]]) -> None:
        super().__init__(daemon=True)
        self.agent, self.inputs, self.stop = agent, inputs, threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.agent.serve(self.stop, self.inputs)
        except BaseException as e:
            self.error = e


def test_an_agent_input_thread_that_raises_once_is_restarted(
    serving: Callable[[list[Callable[[threading.Event], None]]], ServeThread],
) -> None:
    """The review: lhcd's heartbeat thread died on an unexpected TypeError while lhcd stayed up."""
    calls = list[int]()

    def send_heartbeats(stop: threading.Event) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise TypeError("'NoneType' object is not subscriptable")
        stop.wait()

    thread = serving([send_heartbeats])
    assert wait_until(lambda: len(calls) == 2), "the input thread was not restarted"
    assert thread.is_alive() and not thread.stop.is_set()
    thread.stop.set()
    thread.join(WAIT)
    assert not thread.is_alive() and thread.error is None


def test_an_agent_whose_vital_thread_keeps_failing_stops_with_daemon_failed(
    serving: Callable[[list[Callable[[threading.Event], None]]], ServeThread],
) -> None:
    def send_heartbeats(stop: threading.Event) -> None:
        raise TypeError("always")

    thread = serving([send_heartbeats])
    thread.join(WAIT)
    assert not thread.is_alive(), "the agent kept running with a dead vital thread"
    assert isinstance(thread.error, DaemonFailed) and "vital thread send_heartbeats failed" in str(thread.error)
    assert thread.stop.is_set()


def test_an_agent_whose_decision_loop_raises_stops_with_daemon_failed(
    agent: Agent, serving: Callable[[list[Callable[[threading.Event], None]]], ServeThread]
) -> None:
    def confused(stop: threading.Event) -> None:
        agent.submit(ProbeResult(time.monotonic(), True, "a slave's event sent to the master"))
        stop.wait()

    thread = serving([confused])
    thread.join(WAIT)
    assert not thread.is_alive()
    assert isinstance(thread.error, DaemonFailed) and "the decision loop raised MachineError" in str(thread.error)
    assert thread.stop.is_set()

"""The automatic sync thread never dies (issue 10): an unexpected exception in one turn is logged
(its traceback once), counted and journaled like any sync failure, and the loop goes on after
its backoff."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import pytest

from failover.config import Config, load
from failover.machine import NodeState, Role, State
from failover.scripts import ScriptsResult
from failover.sync.auto import AutoSync
from tests.unit.test_sync_standby import standby


class Turns(AutoSync):
    """The real loop; its one turn of work raises the given exceptions first, then succeeds."""

    def __init__(self, config: Config, errors: list[BaseException]) -> None:
        super().__init__(
            config,
            Role.MASTER,
            lambda: NodeState(Role.MASTER, State.ACTIVE),
            logging.getLogger("test.autosync"),
            self.record,
            lambda event: {},
            self.reported,
        )
        self.errors, self.notes, self.succeeded = errors, list[tuple[str, str]](), threading.Event()

    def record(self, event: str, reason: str) -> None:
        self.notes.append((event, reason))

    def reported(self, name: str, result: ScriptsResult) -> None:
        pass

    def once(self) -> list[str]:
        if self.errors:
            raise self.errors.pop(0)
        self.succeeded.set()
        return []


def config_of(tmp_path: Path) -> Config:
    path, _ = standby(tmp_path)
    text = path.read_text().replace('"LOG_DIR": "log",', '"LOG_DIR": "log",\n    "SYNC_INTERVAL": 0.1,')
    path.write_text(text)
    config = load(path)
    Path(config.STATE_DIR).mkdir()  # as the agent makes it when it starts
    return config


def run_until_success(syncer: Turns) -> threading.Thread:
    stop = threading.Event()
    thread = threading.Thread(target=syncer.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert syncer.succeeded.wait(10), f"no successful turn; notes: {syncer.notes}"
        assert thread.is_alive()
    finally:
        stop.set()
        thread.join(5)
    return thread


def test_an_unexpected_exception_in_a_turn_is_counted_journaled_and_the_loop_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = config_of(tmp_path)
    syncer = Turns(config, [KeyError("kind"), KeyError("kind"), ValueError("a bad value")])
    with caplog.at_level(logging.ERROR, logger="test.autosync"):
        run_until_success(syncer)
    failures = [reason for event, reason in syncer.notes if event == "sync-failure"]
    assert len(failures) == 3 and "(1/5 in a row)" in failures[0] and "(3/5 in a row)" in failures[2]
    assert "KeyError" in failures[0] and "ValueError: a bad value" in failures[2]
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert [type(r.exc_info[1]).__name__ for r in tracebacks if r.exc_info] == ["KeyError", "ValueError"]
    result = json.loads(Path(config.STATE_DIR, "sync.json").read_text())
    assert result["failures"] == 0 and result["auto_ok"] is True  # the successful turn reset the count


@pytest.mark.parametrize("saved", ["[]", '{"failures": "many"}', '"text"', "{"])
def test_a_damaged_sync_result_file_does_not_end_the_thread(tmp_path: Path, saved: str) -> None:
    config = config_of(tmp_path)
    Path(config.STATE_DIR, "sync.json").write_text(saved)
    run_until_success(Turns(config, []))


def test_the_loop_goes_on_even_when_a_failure_cannot_be_written(tmp_path: Path) -> None:
    config = config_of(tmp_path)
    Path(config.STATE_DIR).rmdir()  # sync.json cannot be written: reporting the failure fails too
    syncer = Turns(config, [RuntimeError("first"), RuntimeError("second")])
    stop = threading.Event()
    thread = threading.Thread(target=syncer.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert syncer.succeeded.wait(10) and thread.is_alive()  # the success then fails to write, and goes on
        assert [event for event, _ in syncer.notes].count("sync-failure") >= 2
    finally:
        stop.set()
        thread.join(5)

"""The daemons' one executor table, and the rule that carries it: every transition is persisted
(state file and journal) before any of its actions runs. Real Lhcd and Rhcd agents, real state
files; only the executors are the test's, so that they can look at the disk when called."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from failover.agent import Agent
from failover.config import load
from failover.machine import (
    ACTIONS_OF,
    Action,
    CheckService,
    Event,
    LocalHealth,
    Reply,
    Role,
    RunScripts,
    ScriptsFinished,
    ServiceChecked,
    ShutdownRequested,
    Started,
    State,
)
from failover.master_agent import Lhcd
from failover.slave_agent import Rhcd
from failover.state import read_journal
from tests.unit.test_cli import CONFIG, write_scripts_and_secret


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    write_scripts_and_secret(tmp_path)
    (tmp_path / "failover_config.py").write_text(CONFIG)
    return tmp_path / "failover_config.py"


@pytest.mark.parametrize(("kind", "role"), [(Lhcd, Role.MASTER), (Rhcd, Role.SLAVE)])
def test_each_daemon_has_one_executor_for_every_action_its_role_emits(
    config_path: Path, kind: Callable[..., Agent], role: Role
) -> None:
    agent = kind(load(config_path), logging.getLogger("test"))
    assert set(agent.executors()) == ACTIONS_OF[role]


class Recording(Lhcd):
    """lhcd whose executors record what was on disk when each action started, and answer like
    the world would (the scripts succeed, the service is then down)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        # action; what memory, the state file and the journal's last entry said when it started
        self.seen: list[tuple[Action, tuple[object, ...], tuple[object, ...], tuple[object, ...]]] = []

    def executors(self) -> dict[type[Action], Callable[[Any], Event | None]]:
        def record(action: Action) -> Event | None:
            on_disk = self.store.load()
            assert on_disk is not None
            last = read_journal(self.store.journal_path)[-1]
            memory = (self.node.state.value, self.node.term, self.node.reason, self.node.code.value)
            disk = (on_disk.state.value, on_disk.term, on_disk.reason, on_disk.code.value)
            self.seen.append((action, memory, disk, (last["to"], last["term"], last["reason"], last["code"])))
            if isinstance(action, RunScripts):
                return ScriptsFinished(1.0, action.kind, True, "ok")
            if isinstance(action, CheckService):
                return ServiceChecked(1.0, False, "port refused")
            return None

        return {kind: record for kind in ACTIONS_OF[Role.MASTER]}


def test_every_transition_is_persisted_before_its_actions_run(config_path: Path) -> None:
    agent = Recording(load(config_path), logging.getLogger("test"))
    agent.process(Started(0.5))
    agent.process(LocalHealth(0.6, False, "pid gone"))  # abnormal shutdown: Alert + SendHeartbeat
    agent.process(ShutdownRequested(0.7, term=1))  # STOPPING: scripts, check, INACTIVE, Reply
    kinds = [type(action).__name__ for action, *_ in agent.seen]
    assert kinds == ["Alert", "SendHeartbeat", "RunScripts", "CheckService", "Reply"]
    for action, memory, on_disk, journaled in agent.seen:
        # state, term, reason and its code: a self-transition (ACTIVE -> ACTIVE) differs only there
        assert on_disk == memory, f"{action} ran while the state file said {on_disk}, not {memory}"
        assert journaled == memory, f"{action} ran before its transition was journaled: {journaled}"
    reply = agent.seen[-1][0]
    assert isinstance(reply, Reply) and reply.ok and agent.node.state is State.INACTIVE


def test_an_action_without_an_executor_is_a_loud_bug(config_path: Path) -> None:
    agent = Lhcd(load(config_path), logging.getLogger("test"))
    from failover.machine import ProbeNow

    with pytest.raises(NotImplementedError, match="lhcd cannot execute ProbeNow"):
        agent.execute(ProbeNow())

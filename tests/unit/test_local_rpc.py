"""The local RPC (control server or CLI -> lhcd / rhcd): typed messages, and nothing malformed
ever reaches an agent. The handlers tested are the real ones of Lhcd and Rhcd."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from failover.config import load
from failover.machine import Condition, State
from failover.master_agent import Lhcd
from failover.protocol import (
    Ack,
    ConfirmFenced,
    Heartbeat,
    HeartbeatReply,
    OperatorCommand,
    ProtocolError,
    Refused,
    ShutdownYourService,
    StatusRequest,
    local_request,
    parse_local_answer,
    parse_local_request,
    parse_message,
)
from failover.slave_agent import Rhcd
from tests.unit.test_cli import CONFIG, write_scripts_and_secret

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=15,
)
valid_heartbeats = st.builds(
    lambda term, state, ok, detail, condition: local_request(Heartbeat(term, state, ok, detail, condition), "peer"),
    st.integers(0, 2**31 - 1),
    st.sampled_from([s.value for s in State]),
    st.none() | st.booleans(),
    st.text(max_size=30),
    st.sampled_from([c.value for c in Condition]),
)
requests = st.one_of(
    json_values,
    valid_heartbeats,
    st.fixed_dictionaries(
        {"type": st.sampled_from(["SHUTDOWN_YOUR_SERVICE", "HEARTBEAT", "OPERATOR", "CONFIRM_FENCED", "STATUS"])},
        optional={
            name: json_values | st.integers()
            for name in ("term", "reason", "peer", "state", "service_ok", "detail", "condition", "action", "by")
        },
    ),
)


@settings(max_examples=500)
@given(requests, st.sampled_from(["lhcd", "rhcd"]))
def test_fuzz_a_local_request_parses_or_is_refused_with_protocol_error(request: Any, daemon: str) -> None:
    try:
        message, peer = parse_local_request(request, daemon)
    except ProtocolError:
        return
    assert parse_local_request(local_request(message, peer), daemon) == (message, peer)


@settings(max_examples=300)
@given(json_values | requests)
def test_fuzz_a_local_answer_parses_or_is_refused_with_protocol_error(answer: Any) -> None:
    for request in (ShutdownYourService(1), Heartbeat(0, "ACTIVE", True), ConfirmFenced()):
        try:
            parsed = parse_local_answer(answer, request)
        except ProtocolError:
            continue
        assert parse_message(parsed.body()) == parsed


def test_each_daemon_serves_only_its_own_requests() -> None:
    with pytest.raises(ProtocolError, match="lhcd does not serve HEARTBEAT"):
        parse_local_request(local_request(Heartbeat(0, "ACTIVE", True)), "lhcd")
    with pytest.raises(ProtocolError, match="rhcd does not serve SHUTDOWN_YOUR_SERVICE"):
        parse_local_request(local_request(ShutdownYourService(1)), "rhcd")
    with pytest.raises(ProtocolError, match="does not answer"):
        parse_local_answer(HeartbeatReply(0, "STANDBY").body(), ShutdownYourService(1))
    assert parse_local_answer(Refused("no").body(), ShutdownYourService(1)) == Refused("no")


@pytest.fixture(scope="module")
def agents(tmp_path_factory: pytest.TempPathFactory) -> tuple[Lhcd, Rhcd]:
    base: Path = tmp_path_factory.mktemp("rpc")
    write_scripts_and_secret(base)
    (base / "failover_config.py").write_text(CONFIG)
    config = load(base / "failover_config.py")
    log = logging.getLogger("test-local-rpc")
    return Lhcd(config, log), Rhcd(config, log)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(requests)
def test_fuzz_the_real_handlers_refuse_what_they_cannot_parse(agents: tuple[Lhcd, Rhcd], request: Any) -> None:
    """Whatever arrives, the agent answers with a message its caller can parse, and nothing
    malformed becomes an event. Requests that would wait for the decision loop (a valid shutdown,
    operator command or fence confirmation) are the end-to-end tests' business."""
    for agent in agents:
        try:
            message, _ = parse_local_request(request, agent.name)
        except ProtocolError:
            message = None
        assume(not isinstance(message, ShutdownYourService | OperatorCommand | ConfirmFenced))
        queued = agent._events.qsize()
        if not isinstance(request, dict):
            continue  # the socket layer only hands JSON objects to the handler
        answer = agent.on_local_request(request)
        parsed = parse_message(answer)
        if message is None:
            assert isinstance(parsed, Refused) and agent._events.qsize() == queued
        else:
            assert isinstance(parsed, HeartbeatReply) and agent._events.qsize() == queued + 1


def test_a_heartbeat_from_socketserver2_becomes_one_event(agents: tuple[Lhcd, Rhcd]) -> None:
    _, rhcd = agents
    before = rhcd._events.qsize()
    answer = parse_local_answer(
        rhcd.on_local_request(local_request(Heartbeat(0, "ACTIVE", True, "+OK"), "10.0.0.1:4444")),
        Heartbeat(0, "ACTIVE", True),
    )
    assert answer == HeartbeatReply(0, "STANDBY") and rhcd._events.qsize() == before + 1
    assert isinstance(parse_message(rhcd.on_local_request(StatusRequest().body())), Refused)
    assert not isinstance(parse_message(rhcd.on_local_request({"type": "ACK", "term": 1})), Ack)

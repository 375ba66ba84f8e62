"""The control servers' real handlers (socketserver, socketserver2), fed every authenticated
message a peer could send, with the agents down: each answers with a message its peer can
parse, and none raises (a raise would cost the connection and, before, the thread)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from failover import master_control, slave_control
from failover.channel import Handler
from failover.config import load
from failover.machine import Condition, State
from failover.protocol import (
    OPERATOR_ACTIONS,
    Ack,
    ConfirmFenced,
    Heartbeat,
    HeartbeatReply,
    Message,
    OperatorAnswer,
    OperatorCommand,
    Refused,
    ShutdownYourService,
    StatusReply,
    StatusRequest,
    encode_line,
    parse_message,
)
from tests.unit.test_cli import CONFIG, write_scripts_and_secret

terms = st.integers(0, 2**31 - 1)
texts = st.text(max_size=200)
states = st.sampled_from([s.value for s in State])
conditions = st.sampled_from([c.value for c in Condition])
messages = st.one_of(
    st.builds(ShutdownYourService, st.integers(1, 2**31 - 1), texts),
    st.builds(Ack, terms, st.booleans(), texts),
    st.builds(
        Heartbeat, terms, states, st.none() | st.booleans(), texts, st.sampled_from([c.value for c in Condition])
    ),
    st.builds(HeartbeatReply, terms, states),
    st.just(StatusRequest()),
    st.builds(StatusReply, st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)),
    st.builds(Refused, texts),
    st.builds(OperatorCommand, st.sampled_from(OPERATOR_ACTIONS), texts, texts, texts, terms, states, st.booleans()),
    st.builds(OperatorAnswer, st.booleans(), texts, states, terms),
    st.builds(ConfirmFenced, st.none() | terms),
)


@pytest.fixture(scope="module")
def handlers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Handler]:
    base: Path = tmp_path_factory.mktemp("handlers")
    write_scripts_and_secret(base)
    # short timeouts: with no agent behind them the handlers answer from files or refuse
    (base / "failover_config.py").write_text(CONFIG.replace("}", '    "CONTROL_TIMEOUT": 0.5,\n}'))
    config = load(base / "failover_config.py")
    log = logging.getLogger("test-handlers")
    return {"master": master_control.make_handler(config, log), "slave": slave_control.make_handler(config, log)}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages, st.sampled_from(["master", "slave"]))
def test_fuzz_every_message_gets_an_answer_its_peer_can_parse(
    handlers: dict[str, Handler], message: Message, host: str
) -> None:
    reply = handlers[host](message, "10.0.0.9:4242")
    assert isinstance(reply, Message)
    line = encode_line(reply.body())  # what the channel would send: within the line limit
    assert parse_message(json.loads(line)) == reply
    if isinstance(message, ShutdownYourService) and host == "master":
        assert isinstance(reply, Ack) and not reply.ok  # no lhcd: a NACK that says so, never an ACK
    if isinstance(message, Heartbeat) and host == "slave":
        assert isinstance(reply, HeartbeatReply | Refused)  # rhcd down: the term from the state file

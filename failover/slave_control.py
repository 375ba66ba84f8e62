"""The slave's control server on MONITOR_PORT_SLAVE: what the socketserver2 daemon runs
(agents/slave/socketserver2.py).

Authenticates every request and serves HEARTBEAT (handed to rhcd, answered with the slave's
term and state, which depose an ACTIVE master that is behind) and STATUS. When rhcd is down,
the heartbeat is still answered from the state file, so the master always learns the term.
"""

from __future__ import annotations

import logging
import threading

from failover.channel import ChannelError, Handler, local_call
from failover.config import Config
from failover.control import serve_common
from failover.daemon import serve_control, socket_path
from failover.machine import Role, initial_state
from failover.protocol import (
    Heartbeat,
    HeartbeatReply,
    Message,
    ProtocolError,
    Refused,
    local_request,
    parse_local_answer,
)
from failover.state import StateError, StateStore


def make_handler(config: Config, log: logging.Logger) -> Handler:
    store = StateStore(config.STATE_DIR, Role.SLAVE, config.SLAVE_HOST)

    def handle(message: Message, peer: str) -> Message:
        if isinstance(message, Heartbeat):
            try:
                answer = parse_local_answer(
                    local_call(socket_path(config, "rhcd"), local_request(message, peer), config.CONTROL_TIMEOUT),
                    message,
                )
                if isinstance(answer, HeartbeatReply):
                    return answer
                log.warning("rhcd refused the heartbeat from %s: %s", peer, answer)
            except (ChannelError, ProtocolError) as e:
                log.warning("heartbeat from %s not handed to rhcd (%s): answering from the state file", peer, e)
            try:
                node = store.load() or initial_state(Role.SLAVE)
            except StateError as e:
                return Refused(f"the slave's state file cannot be read: {e}")
            return HeartbeatReply(node.term, node.state.value, watching=False)
        return serve_common(config, Role.SLAVE, message, peer, log)

    return handle


def run(config: Config, stop: threading.Event, log: logging.Logger) -> None:
    serve_control(config, Role.SLAVE, make_handler(config, log), stop, log)

"""The master's control server on MONITOR_PORT: what the socketserver daemon runs
(agents/master/socketserver.py).

Authenticates every request (failover.protocol) and serves two: SHUTDOWN_YOUR_SERVICE, which
it hands to lhcd and answers with lhcd's ACK or NACK, and STATUS. Anything refused is logged
by the channel and never forwarded. If lhcd is not running, the answer is a NACK that says so:
the slave must not take an unanswered request for a stopped service.
"""

from __future__ import annotations

import logging
import threading

from failover.channel import ChannelError, Handler, local_call
from failover.config import Config
from failover.control import serve_common
from failover.daemon import serve_control, socket_path
from failover.machine import Role
from failover.protocol import (
    Ack,
    Message,
    ProtocolError,
    ShutdownYourService,
    local_request,
    parse_local_answer,
)


def make_handler(config: Config, log: logging.Logger) -> Handler:
    def handle(message: Message, peer: str) -> Message:
        if isinstance(message, ShutdownYourService):
            log.warning("SHUTDOWN_YOUR_SERVICE for term %d from %s", message.term, peer)
            try:
                answer = parse_local_answer(
                    local_call(socket_path(config, "lhcd"), local_request(message, peer), config.SHUTDOWN_ACK_TIMEOUT),
                    message,
                )
            except (ChannelError, ProtocolError) as e:
                log.error("cannot hand the shutdown to lhcd: %s", e)
                return Ack(message.term, False, f"lhcd is not running on the master ({e}): nothing was stopped")
            ack = answer if isinstance(answer, Ack) else Ack(message.term, False, f"lhcd refused: {answer}")
            log.info("answering %s for term %d: %s", "ACK" if ack.ok else "NACK", ack.term, ack.detail)
            return ack
        return serve_common(config, Role.MASTER, message, peer, log)

    return handle


def run(config: Config, stop: threading.Event, log: logging.Logger) -> None:
    serve_control(config, Role.MASTER, make_handler(config, log), stop, log)

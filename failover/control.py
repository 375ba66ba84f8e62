"""What both control servers (socketserver, socketserver2) serve alike: operator commands, handed
to this host's agent; STATUS and JOURNAL (`failover history`), from this host's files; and a
refusal, with the reason, of anything the role does not serve. Each role's own messages are in
master_control.py and slave_control.py."""

from __future__ import annotations

import logging

from failover import history, status
from failover.config import Config
from failover.daemon import forward_operator
from failover.machine import Role
from failover.protocol import JournalRequest, Message, OperatorCommand, Refused, StatusReply, StatusRequest
from failover.state import StateStore


def serve_common(config: Config, role: Role, message: Message, peer: str, log: logging.Logger) -> Message:
    """The answer to a message that is not one of `role`'s own."""
    if isinstance(message, OperatorCommand):
        return forward_operator(config, role, message, peer, log)
    if isinstance(message, StatusRequest):
        return StatusReply(status.collect(config, role))
    if isinstance(message, JournalRequest):
        try:
            return history.reply(StateStore(config.STATE_DIR, role, config.host_of(role)).journal_tail(message.limit))
        except OSError as e:
            return Refused(f"the {role}'s journal cannot be read: {e}")
    log.warning("refused %s from %s: not served by the %s", message.TYPE, peer, role)
    server = "socketserver" if role is Role.MASTER else "socketserver2"
    return Refused(f"{message.TYPE} is not served by the {role}'s {server}")

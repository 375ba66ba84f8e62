"""Terms: a node learns every higher term it hears of and never forgets it, and a node that
serves (or is held while serving) stops its service when the peer shows a higher term.

Rules for the table in failover.machine; pure, time only from events.
"""

from __future__ import annotations

import dataclasses

from failover.machine.actions import Alert, SendShutdown, Step
from failover.machine.events import PeerReport
from failover.machine.lease import heard
from failover.machine.model import NodeState, Policy, State, Why
from failover.machine.steps import keep, move, stop_alerted


def step_down_on_higher_term(p: Policy, n: NodeState, e: PeerReport) -> Step:
    """ACTIVE (or held while ACTIVE) and the peer shows a higher term: this node was deposed and
    stops its service. Safety before maintenance: a hold does not keep a deposed node serving."""
    if e.term <= n.term:
        step = peer_report_other(p, n, e)
        return dataclasses.replace(step, state=dataclasses.replace(step.state, peer_contact=e.now))
    reason = f"deposed by term {e.term} (the {n.role.peer} is {e.state}): stopping the service"
    return stop_alerted(n, e, Why.DEPOSED, reason, term=e.term, hold=None)


def peer_report_other(p: Policy, n: NodeState, e: PeerReport) -> Step:
    """Outside ACTIVE: only learn the higher term (persisted, so it is never forgotten)."""
    if e.term > n.term:
        reason = f"learned term {e.term} from the {n.role.peer} ({e.state})"
        return move(n, e, n.state, Why.LEARNED_TERM, reason, term=e.term)
    return keep(n)


def peer_report_held(p: Policy, n: NodeState, e: PeerReport) -> Step:
    if n.hold is not None and n.hold.held_from is State.ACTIVE:
        return step_down_on_higher_term(p, n, e)
    return peer_report_other(p, n, e)


def heartbeat_active(p: Policy, n: NodeState, e: PeerReport) -> Step:
    """Slave, ACTIVE: a master that still reports ACTIVE in a lower term is told to shut down."""
    if e.term > n.term:
        return step_down_on_higher_term(p, n, e)
    n = heard(p, n, e)
    if e.state in (State.ACTIVE, State.RESTARTING):
        if n.code is Why.OLD_MASTER_ACTIVE:  # said once: the stream repeats it many times a second
            return keep(n, SendShutdown(n.term, p.ack_timeout))
        reason = (
            f"the master reports {e.state} in term {e.term} while this slave is ACTIVE in term {n.term}: "
            "telling it to shut down"
        )
        ask = SendShutdown(n.term, p.ack_timeout)
        return move(n, e, State.ACTIVE, Why.OLD_MASTER_ACTIVE, reason, Alert(reason), ask)
    return keep(n)

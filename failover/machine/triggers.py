"""The slave watching the master, and the triggers that start a failover.

A failover starts only through an enabled trigger (Policy.triggers):
- abnormal shutdown: the master reports its service failed past its local restart limit, and
  our own probe failed too;
- normal shutdown: the master reports its service stopped cleanly (or its agents stopped), and,
  for a stopped service, our own probe failed too;
- communication loss: no two-way contact for HEARTBEAT_TIMEOUT and PROBE_FAILURES failed
  probes; with a lease, one failed probe (the lease, not the evidence, keeps the service from
  running twice), asked at half HEARTBEAT_TIMEOUT of silence and due by its end.
With none enabled (manual mode) the slave watches and reports. A trigger that fires passes the
witness gate, then the hooks (PREPARING), then the claim (failover.machine.claim).
Rules for the table in failover.machine; pure, time only from events.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

from failover.machine.actions import Action, Alert, ProbeNow, RunScripts, Step
from failover.machine.claim import claim
from failover.machine.events import Event, PeerReport, ProbeResult, Reachability, Started
from failover.machine.lease import heard
from failover.machine.model import Condition, NodeState, Policy, ScriptKind, State, Trigger, Why
from failover.machine.steps import keep, move
from failover.machine.terms import peer_report_other

WATCHING = (State.STANDBY, State.SUSPECT)


class Evidence(NamedTuple):
    """What the current evidence fires: a trigger (enabled or not) or None, the code and subject
    of that finding (what tells news from a repeat), and its text."""

    trigger: Trigger | None
    code: Why
    subject: str
    text: str


def _heartbeats_fresh(p: Policy, n: NodeState, now: float) -> bool:
    return n.last_heartbeat is not None and now - n.last_heartbeat <= p.heartbeat_timeout


def _needed(p: Policy) -> int:
    """Failed probes that, with no contact, are a communication loss."""
    return 1 if p.takeover_wait is not None else p.probe_failures


def _fired(p: Policy, n: NodeState, now: float) -> Evidence:
    """Which trigger the current evidence fires (enabled or not), and why; or None and what is missing."""
    probe_failed = n.failures >= 1
    fresh = _heartbeats_fresh(p, n, now)
    if not probe_failed and not (fresh and n.master_condition is Condition.AGENTS_STOPPED):
        return Evidence(None, Why.ANSWERS, "", "the master's service answers again")
    if fresh:
        abnormal, normal = Trigger.ABNORMAL_SHUTDOWN, Trigger.NORMAL_SHUTDOWN
        if n.master_condition is Condition.FAILED and probe_failed:
            text = "abnormal shutdown: the master's service failed past its restart limit, or the master stopped it"
            return Evidence(abnormal, Why.ABNORMAL_SHUTDOWN, abnormal, text)
        if n.master_condition is Condition.STOPPED and probe_failed:
            return Evidence(
                normal, Why.NORMAL_SHUTDOWN, normal, "normal shutdown: the master's service was stopped cleanly"
            )
        if n.master_condition is Condition.AGENTS_STOPPED:
            return Evidence(
                normal, Why.NORMAL_SHUTDOWN, normal, "normal shutdown: the master's agents were stopped cleanly"
            )
        text = f"the master reports its service {n.master_condition} and its heartbeats arrive"
        return Evidence(None, Why.MASTER_REPORTS, n.master_condition.value, text)
    if n.failures >= _needed(p):
        text = (
            f"communication loss: no contact for over {p.heartbeat_timeout:g} s and {n.failures} probes in a row failed"
        )
        return Evidence(Trigger.COMMUNICATION_LOSS, Why.COMMUNICATION_LOSS, Trigger.COMMUNICATION_LOSS, text)
    return Evidence(None, Why.PROBES_FAILING, str(n.failures), f"{n.failures}/{_needed(p)} probes failed")


def _decide(p: Policy, n: NodeState, e: Event, detail: str) -> Step:
    """After new evidence while watching: fail over if an enabled trigger fires, else say why not.
    `n` holds the new evidence; its state, code and subject are still those of before it."""
    found = _fired(p, n, e.now)
    if found.trigger is not None and found.trigger in p.triggers:
        return _trigger(p, n, e, found.trigger, f"{found.text} ({detail})")
    quiet = found.trigger is Trigger.NORMAL_SHUTDOWN and n.failures == 0  # agents stopped, service answers
    if (found.trigger is None or quiet) and n.failures == 0:
        if n.state is State.SUSPECT:
            return move(n, e, State.STANDBY, Why.ANSWERS, f"{found.text} ({detail})")
        return keep(n)
    code, subject = found.code, found.subject
    if found.trigger is not None:
        mode = "manual mode (no trigger enabled)" if p.manual else f"the {found.trigger} trigger is disabled"
        reason = f"{found.text}, but {mode}: not failing over; `failover switchover` moves the service"
        alert: list[Action] = [Alert(reason)]
        code = Why.TRIGGER_DISABLED
    else:
        reason, alert = f"the master's service does not answer our probes: {found.text}", []
    if n.state is State.SUSPECT and n.code is code and n.subject == subject:
        return keep(n)  # nothing new: no journal entry for every probe
    return move(n, e, State.SUSPECT, code, f"{reason} (last: {detail})", *alert, subject=subject)


def _trigger(p: Policy, n: NodeState, e: Event, trigger: Trigger, why: str) -> Step:
    """A trigger fired: the witness gate, then the hooks, then the claim."""
    if p.isolation_timeout is not None and n.witness_ok is not True:
        if n.state is State.SUSPECT and n.code is Why.WITNESS_SILENT and n.subject == trigger:
            return keep(n)
        reason = f"{why}; but the witness does not answer either: this slave may be the isolated one, not taking over"
        return move(n, e, State.SUSPECT, Why.WITNESS_SILENT, reason, Alert(reason), subject=trigger)
    if trigger in p.prepare:
        reason = f"{why}: running the trigger's scripts and BEFORE_FAILOVER_SCRIPTS before anything moves"
        return move(
            n, e, State.PREPARING, Why.PREPARING, reason, RunScripts(ScriptKind.BEFORE_FAILOVER), trigger=trigger
        )
    return claim(p, dataclasses.replace(n, trigger=trigger), e, why)


def started_watching(p: Policy, n: NodeState, e: Started) -> Step:
    # heartbeats get a HEARTBEAT_TIMEOUT from now to arrive before their absence means anything
    if n.state is State.SUSPECT:
        return move(
            n,
            e,
            State.STANDBY,
            Why.RESTARTED,
            "restarted: probing afresh",
            failures=0,
            last_heartbeat=e.now,
            master_condition=Condition.UNKNOWN,
        )
    return keep(n, failures=0, last_heartbeat=e.now, master_condition=Condition.UNKNOWN)


def started_preparing(p: Policy, n: NodeState, e: Started) -> Step:
    return move(
        n,
        e,
        State.STANDBY,
        Why.RESTARTED,
        "restarted while running the before-failover scripts: watching afresh",
        failures=0,
        last_heartbeat=e.now,
        trigger=None,
    )


def probe(p: Policy, n: NodeState, e: ProbeResult) -> Step:
    n = dataclasses.replace(n, failures=0 if e.ok else n.failures + 1)
    return _decide(p, n, e, e.detail)


def heartbeat_watching(p: Policy, n: NodeState, e: PeerReport) -> Step:
    if e.state in (State.ACTIVE, State.RESTARTING):
        condition = e.condition
    elif e.state is State.INACTIVE and e.term == n.term:
        # The master stopped its service by itself (its lease ended, or it was isolated) and no
        # one claimed a newer term: nobody serves. To the watching slave that is a failed
        # service, so the abnormal-shutdown trigger (with a failed probe of ours) takes over.
        condition = Condition.FAILED
    else:
        condition = Condition.UNKNOWN
    news = condition is not n.master_condition
    n = dataclasses.replace(heard(p, n, e), term=max(n.term, e.term), master_condition=condition)
    if news and condition in (Condition.FAILED, Condition.STOPPED) and n.failures == 0:
        reason = f"the master reports its service {condition} ({e.detail}): probing now"
        return move(n, e, State.SUSPECT, Why.MASTER_REPORTS, reason, ProbeNow(), subject=condition)
    return _decide(p, n, e, e.detail or f"the master is {e.state}, its service {condition}")


def heartbeat_other(p: Policy, n: NodeState, e: PeerReport) -> Step:
    """Outside watching and ACTIVE: the heartbeat is contact, and may teach a higher term."""
    return peer_report_other(p, heard(p, n, e), e)


def tick_watching(p: Policy, n: NodeState, e: Event) -> Step:
    """Heartbeats lost for HEARTBEAT_TIMEOUT: the hosts cannot synchronise (once per loss). With
    a lease, at half of it a probe is asked, bounded to the other half: its answer is there when
    the loss is declared, whatever PROBE_INTERVAL and REMOTE_POP3_TIMEOUT are."""
    if n.heartbeats_lost or n.last_heartbeat is None:
        return keep(n)
    silent = e.now - n.last_heartbeat
    if silent <= p.heartbeat_timeout:
        half = p.heartbeat_timeout / 2
        if p.takeover_wait is not None and n.state in WATCHING and not n.silence_probed and silent > half:
            # the rest of the silence, but never so short that a healthy master's login cannot make it
            bound = max(p.heartbeat_timeout - silent, p.heartbeat_timeout / 4)
            return keep(n, ProbeNow(timeout=bound), silence_probed=True)
        return keep(n)
    reason = f"no contact with the master for {silent:.1f} s (HEARTBEAT_TIMEOUT {p.heartbeat_timeout:g} s)"
    actions: list[Action] = [Alert(reason)]
    if p.sync_failure_hooks:
        actions.append(RunScripts(ScriptKind.SYNC_FAILURE))
    step = move(n, e, n.state, Why.HEARTBEATS_LOST, reason, *actions, heartbeats_lost=True)
    if n.state in WATCHING and n.failures >= _needed(p):
        decided = _decide(p, step.state, e, "heartbeats lost")
        return dataclasses.replace(decided, actions=(*step.actions, *decided.actions))
    return step


def reachability(p: Policy, n: NodeState, e: Reachability) -> Step:
    return keep(n) if e.witness is None else keep(n, witness_ok=e.witness)

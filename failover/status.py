"""What an operator sees: one host's status as a dict (served over STATUS), and the text view.

A host's status is read from its files, so it is there even when the daemons are down: the
state file (role, state, term, reason), the brain daemon's status file (last probe, last
heartbeat, last alert), the pid locks of both daemons, and the end of the journal.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from failover.agent import status_path
from failover.config import Config
from failover.daemon import DAEMONS, PidUnknown, pid_path, running_pid
from failover.machine import Role, State
from failover.sanitize import clean
from failover.state import StateError, StateStore, wall_clock

BRAIN = {Role.MASTER: "lhcd", Role.SLAVE: "rhcd"}
JOURNAL_LINES = 8
SCHEMA_VERSION = 1  # `failover status --json`'s "schema_version": raised when a field changes meaning or goes


def collect(config: Config, role: Role) -> dict[str, Any]:
    store = StateStore(config.STATE_DIR, role, config.host_of(role))
    status: dict[str, Any] = {"role": role.value, "host": config.host_of(role), "checked": wall_clock()}
    try:
        node = store.load()
    except StateError as e:
        node = None
        status["error"] = str(e)
    if node is not None:
        status.update(state=node.state.value, group=node.group, term=node.term, reason=node.reason)
        status.update(service_ok=node.service_ok, condition=node.condition.value, restarts=len(node.restarts))
        if node.state is State.MAINTENANCE:
            hold = node.hold
            status["hold"] = {
                "by": hold.by if hold else "",
                "since": hold.since if hold else "",
                "reason": hold.reason if hold else "",
                "held_from": hold.held_from.value if hold else None,
            }
    else:
        status.update(state=None, group=None, term=None, reason="no state yet (agents never started here)")
    if config.SYNC_FILES:
        from failover.sync.peer import read_result

        status["sync"] = read_result(config)
    triggers = sorted(t.value for t in config.triggers())
    status["triggers"] = triggers
    status["mode"] = "automatic" if triggers else "manual"
    status["daemons"] = {name: _daemon_pid(config, name) for name in DAEMONS[role]}
    brain = BRAIN[role]
    if status["daemons"][brain]:
        try:
            status["observations"] = json.loads(Path(status_path(config, brain)).read_text()).get("observations", {})
        except (OSError, ValueError):
            status["observations"] = {}
    status["journal"] = store.journal_tail(JOURNAL_LINES)
    return status


def _daemon_pid(config: Config, name: str) -> int | str | None:
    """The pid, or a word when a daemon runs (it holds its lock) but its pid cannot be read."""
    try:
        return running_pid(pid_path(config, name))
    except PidUnknown:
        return "running, pid unknown"


def _age(observations: dict[str, Any], key: str) -> str:
    return f" at {observations[key]}" if observations.get(key) else ""


def printable(value: Any) -> Any:
    """`value` with every string in it made one clean line (a reason or a peer's detail may
    hold newlines or escape sequences; on a terminal they would forge or hide lines)."""
    if isinstance(value, str):
        return clean(value, 2000)
    if isinstance(value, dict):
        return {clean(k, 200): printable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [printable(v) for v in value]
    return value


def render(statuses: dict[Role, dict[str, Any]], errors: dict[Role, str]) -> str:
    statuses = {role: printable(s) for role, s in statuses.items()}
    errors = {role: clean(e, 2000) for role, e in errors.items()}
    lines = [f"{'ROLE':7} {'HOST':22} {'GROUP':9} {'STATE':13} {'TERM':5} DAEMONS"]
    for role in Role:
        s = statuses.get(role)
        if s is None:
            lines.append(f"{role.value:7} {'?':22} {'?':9} {'UNREACHABLE':13} {'?':5} {errors.get(role, '')}")
            continue
        daemons = ", ".join(f"{n} {'pid ' + str(p) if p else 'NOT RUNNING'}" for n, p in s["daemons"].items())
        lines.append(
            f"{role.value:7} {s['host']:22} {s['group'] or '-':9} {s['state'] or '-':13} "
            f"{s['term'] if s['term'] is not None else '-':<5} {daemons}"
        )
    lines.append("")
    for role in Role:
        s = statuses.get(role)
        if s is None:
            lines.append(f"{role.value}: no answer ({errors.get(role, 'unreachable')})")
            continue
        lines.append(f"{role.value}: {s['reason']}")
        if s.get("hold"):
            h = s["hold"]
            lines.append(
                f"  HELD by {h.get('by')} since {h.get('since')}: {h.get('reason')} (`failover release` resumes)"
            )
        if s.get("error"):
            lines.append(f"  STATE FILE PROBLEM: {s['error']}")
        lines += [f"  {line}" for line in _details(role, s)]
    journal = sorted((e for s in statuses.values() for e in s.get("journal", [])), key=lambda e: e.get("time", ""))
    if journal:
        lines += ["", "last transitions:"]
        for e in journal[-JOURNAL_LINES:]:
            term = f"term {e.get('term')}"
            lines.append(
                f"  {e.get('time', '?')} {e.get('role', '?'):6} {e.get('from')} -> {e.get('to')} ({term}): "
                f"{e.get('reason')}"
            )
    return "\n".join(lines)


def _details(role: Role, s: dict[str, Any]) -> list[str]:
    o = s.get("observations")
    out = []
    if o is None:
        out.append(f"{BRAIN[role]} is not running: no live observations")
        return out
    if role is Role.SLAVE:
        if "probe_ok" in o:
            result = "OK" if o["probe_ok"] else "FAILED"
            out.append(
                f"last probe of the master: {result} in {o.get('probe_latency', 0) * 1000:.1f} ms "
                f"({o.get('probe_detail')}){_age(o, 'probe_time')}"
            )
        if "heartbeat_time" in o:
            out.append(
                f"last heartbeat from the master{_age(o, 'heartbeat_time')}: {o.get('master_state')} "
                f"in term {o.get('master_term')}, its service "
                f"{'ok' if o.get('master_service_ok') else 'DOWN: ' + str(o.get('master_detail'))}"
                f" ({o.get('master_condition', 'unknown')})"
            )
        else:
            out.append("no heartbeat from the master since rhcd started")
        if s.get("mode") == "manual":
            out.append("MANUAL MODE: no failover trigger is enabled; only `failover switchover` moves the service")
        elif s.get("triggers"):
            out.append(f"failover triggers: {', '.join(s['triggers'])}")
        if s.get("state") == State.FENCING.value:
            out.append(
                "WAITING: the master has not confirmed its shutdown. This slave will not start the service "
                "until the master answers, or an operator who made sure the master serves no one runs "
                "`failover confirm-fenced`."
            )
    else:
        if "local_service_ok" in o:
            out.append(
                f"local service: {'ok' if o['local_service_ok'] else 'DOWN'} ({o.get('local_service_detail')})"
                f"{_age(o, 'local_service_checked')}"
            )
        if s.get("restarts"):
            out.append(f"local restarts in the current window: {s['restarts']}")
        if o.get("last_heartbeat_error"):
            out.append(f"last heartbeat error: {o['last_heartbeat_error']}")
        if "slave_state" in o:
            out.append(
                f"the slave answered heartbeats{_age(o, 'last_heartbeat_ack')}: {o['slave_state']} "
                f"in term {o.get('slave_term')}"
            )
        if o.get("slave_watching") is False:
            out.append("THE SLAVE'S rhcd DOES NOT RUN: nothing watches this master, nothing would fail over")
        if s.get("state") == State.INACTIVE.value:
            out.append(
                "INACTIVE after a failover: the slave serves; starting these agents again does not start "
                "the service here (no automatic failback); `failover switchback` moves it back"
            )
    out += _stream(role, o)
    sync = s.get("sync")
    if sync:
        age = f" ({time.time() - float(sync['epoch']):.0f} s ago)" if sync.get("epoch") else ""
        check = {True: "all match", False: f"DIFFERENT ({sync.get('check_summary')})"}.get(
            sync.get("check_ok"), "never"
        )
        auto = "PAUSED until `failover sync --full`" if sync.get("paused") else f"{sync.get('failures') or 0} failures"
        out.append(f"file sync: last check {check}; automatic: {auto}; updated {sync.get('time')}{age}")
        if sync.get("last_error"):
            out.append(f"  last sync error: {sync['last_error']}")
    if o.get("last_alert"):
        out.append(f"last alert{_age(o, 'last_alert_time')}: {o['last_alert']}")
    return out


def _stream(role: Role, o: dict[str, Any]) -> list[str]:
    """The heartbeat stream's health, and the master's lease."""
    if "stream_received" not in o:
        return []
    silent = o.get("stream_silent_s")
    line = (
        f"heartbeat stream: {o.get('stream_sent_per_s')}/s sent, {o.get('stream_received_per_s')}/s received, "
        f"loss {o.get('stream_loss')}, acknowledged in {o.get('stream_ack_ms')} ms, last datagram {silent} s ago; "
        f"dropped: {o.get('stream_dropped')}"
    )
    out = [line]
    if role is Role.MASTER and "lease_left" in o:
        left = o["lease_left"]
        state = f"{left:.2f} s left" if isinstance(left, int | float) and left > 0 else "ENDED"
        out.append(f"lease: {state} (renewed by {o.get('lease_renewed_by')})")
    return out

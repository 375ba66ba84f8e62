"""`failover history` and FAILOVER_SEQ on a real loopback pair: a kill -9 of the master's Dovecot,
then both hosts' journals as one story (the other host's over the control channel, so it goes
missing, with a warning and exit 4, when that host's control server is down); hooks numbered
across a kill -9 and restart of rhcd."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from failover.lab.pair import LoopbackPair
from failover.machine import Role
from tests.integration.test_operations_e2e import eventually

MakePair = Callable[..., LoopbackPair]
M, S = Role.MASTER, Role.SLAVE


def moves(entries: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(e["role"], e["from"], e["to"]) for e in entries if e["from"] != e["to"]]


def test_history_after_a_failover_is_both_hosts_in_time_order_with_their_reasons(make_pair: MakePair) -> None:
    pair = make_pair()
    before = datetime.now(UTC)
    pair.pop3[M].kill(signal.SIGKILL)
    pair.wait_for(S, "ACTIVE", timeout=30)
    pair.wait_for(M, "INACTIVE", timeout=10)

    shown = pair.failover("history", "--json", role=M)  # the master's journal from its files, the slave's asked
    assert shown.returncode == 0, shown.stderr
    story = json.loads(shown.stdout)
    assert all(e["schema_version"] == 1 for e in story)
    times = [datetime.fromisoformat(e["time"]) for e in story]
    assert times == sorted(times)  # one clock on loopback: the merged story is in time order
    for role in Role:  # each host's entries are its journal's, in its order, reasons and all
        journal = [(e["from"], e["to"], e["term"], e["reason"]) for e in pair.journal(role)]
        mine = [(e["from"], e["to"], e["term"], e["reason"]) for e in story if e["role"] == role.value]
        assert mine and mine == journal[-len(mine) :]
    failover = [m for m in moves(story) if m[1] != "STANDBY" or m[0] == "slave"]
    expected = [
        ("slave", "SUSPECT", "FAILING_OVER"),
        ("master", "ACTIVE", "STOPPING"),
        ("master", "STOPPING", "INACTIVE"),
        ("slave", "FAILING_OVER", "STARTING"),
        ("slave", "STARTING", "ACTIVE"),
    ]
    assert [m for m in failover if m in expected] == expected, moves(story)
    claim = next(e for e in story if e["to"] == "FAILING_OVER")
    assert "abnormal shutdown" in claim["reason"] and claim["term"] == 1 and claim["from_term"] == 0
    assert any(e["event"] == "scripts:startup" and e["reason"].startswith("ok: ") for e in story)  # scripts' results

    text = pair.failover("history", "--since", before.isoformat(), role=S)
    assert text.returncode == 0, text.stderr
    header, *rows = text.stdout.splitlines()
    assert header.startswith("TIME (UTC)") and "REASON" in header
    assert all(row.startswith(before.strftime("%Y-%m-%dT")) and row[23] == "Z" for row in rows)
    column = header.index("REASON")
    stopping = next(row for row in rows if "ACTIVE -> STOPPING" in row)
    assert stopping.split()[1:3] == ["master", "127.0.0.1"] and stopping[column - 2 : column] == "  "
    assert [row.split()[1] for row in rows if "-> ACTIVE " in row][-1] == "slave"
    assert not any("Started" in row for row in rows)  # the agents' first entries came before --since

    pair.kill_daemon("socketserver2")  # the slave's control server down: its history cannot come
    partial = pair.failover("history", role=M)
    assert partial.returncode == 4, partial.stderr
    assert "ACTIVE -> STOPPING" in partial.stdout
    assert {row.split()[1] for row in partial.stdout.splitlines()[1:]} == {"master"}
    assert partial.stderr.startswith("WARNING: the slave's history is missing, only the master's is shown: ")
    assert "cannot connect" in partial.stderr


HOOK = """#!/bin/sh
printf '%s|%s|%s|%s\\n' "$FAILOVER_ROLE" "$FAILOVER_SEQ" "$FAILOVER_EVENT" "$FAILOVER_TO_STATE" >> seq.log
"""


def seqs(pair: LoopbackPair, role: Role) -> list[int]:
    path = Path(pair.dir, "seq.log")
    lines = path.read_text().splitlines() if path.exists() else []
    return [int(line.split("|")[1]) for line in lines if line.startswith(role.value + "|")]


def test_failover_seq_increases_across_hooks_and_a_kill_9_and_restart_of_rhcd(make_pair: MakePair) -> None:
    pair = make_pair(start=False)
    Path(pair.dir, "seqhook").write_text(HOOK)
    os.chmod(Path(pair.dir, "seqhook"), 0o755)
    pair.write_config(NOTIFY_SCRIPTS=["./seqhook"])
    pair.pop3[M].start()
    pair.start_agents(M)
    pair.start_agents(S)
    for action in ("hold", "release"):  # a transition on each host each time, each notified
        done = pair.failover(action, "--reason", "seq test")
        assert done.returncode == 0, done.stderr
    eventually(lambda: len(seqs(pair, S)) >= 2 and len(seqs(pair, M)) >= 2, what="two notifications per host")
    first = seqs(pair, S)

    pair.kill_daemon("rhcd")  # a crash, then a start: the numbers go on from the journal
    pair.start_agents(S)
    assert pair.failover("hold", "--reason", "after the restart").returncode == 0
    eventually(lambda: len(seqs(pair, S)) > len(first), what="a notification after the restart")
    for role in Role:
        numbers = seqs(pair, role)
        assert numbers == sorted(set(numbers)) and numbers[0] > 0, (role, numbers)
    assert min(seqs(pair, S)[len(first) :]) > max(first)

"""`failover demo`: a pair on this machine, a client polling through it, a failure to watch.

Everything is real: the POP3 servers (Dovecot, or the built-in responder when Dovecot is not
installed, and the demo says so), the agent processes started with `failover start`, the
client. The decisions printed are the agents' own journals, as they are written.
"""

from __future__ import annotations

import signal
import subprocess
import time

import click

from failover.lab.pair import PROFILES, LoopbackPair, Poller
from failover.lab.pop3 import dovecot_available
from failover.machine import Role

M, S = Role.MASTER, Role.SLAVE


def _say(text: str = "", fg: str | None = None, bold: bool | None = None, dim: bool | None = None) -> None:
    click.echo(click.style(text, fg=fg, bold=bold, dim=dim))


def _dovecot_version() -> str:
    try:
        return subprocess.run(
            ["/usr/sbin/dovecot", "--version"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except OSError:
        return "?"


def _run(pair: LoopbackPair, *args: str, role: Role | None = None) -> None:
    _say(f"    $ failover {' '.join(args)}", dim=True)
    done = pair.failover(*args, role=role)
    for line in (done.stdout + done.stderr).strip().splitlines():
        _say(f"      {line}")
    if done.returncode != 0:
        raise click.ClickException(f"failover {' '.join(args)} failed")


def _follow(pair: LoopbackPair, poller: Poller, since: float, seen: set[tuple[str, str]], until: float) -> None:
    """Print new journal entries of both hosts (time relative to `since`) until `until`."""
    slave_answered = False
    while time.monotonic() < until:
        new = []
        for role in Role:
            for entry in pair.journal(role):
                key = (role.value, entry["time"] + entry["reason"])
                if key not in seen:
                    seen.add(key)
                    new.append((entry.get("mono", since), role, entry))
        for mono, role, entry in sorted(new, key=lambda item: item[0]):
            name = "rhcd" if role is S else "lhcd"
            color = "green" if entry["to"] == "ACTIVE" else ("red" if entry["to"] in ("FAILED", "FENCING") else None)
            move = f"{entry['from']} -> {entry['to']} (term {entry['term']})"
            line = f"    +{mono - since:6.3f} s  {name} ({role.value:6}) {move}"
            _say(line, fg=color, bold=True)
            _say(f"                 why: {entry['reason']}")
        first = poller.first("slave", since)
        if first is not None and not slave_answered:
            slave_answered = True
            _say(f"    +{first - since:6.3f} s  client: first complete POP3 exchange answered by the slave", fg="green")
        if (
            slave_answered
            and pair.state(S).get("state") in ("ACTIVE", "FAILED", "FENCING")
            and time.monotonic() > (first or 0) + 0.5
        ):
            return
        time.sleep(0.02)


def run_demo(profile: str, pop3_kind: str | None, keep: bool) -> int:
    pair = LoopbackPair(profile=profile, pop3_kind=pop3_kind)
    try:
        return _demo(pair, profile)
    finally:
        if keep:
            _say(f"\nkept: {pair.dir} (agents and servers still run). Try:", bold=True)
            _say(f"    failover --config {pair.config_path} status")
            _say(f"    failover --config {pair.config_path} --role slave stop slave   # and so on")
        else:
            pair.close()


def _demo(pair: LoopbackPair, profile: str) -> int:
    settings = {**dict(PROBE_INTERVAL=5.0, PROBE_FAILURES=3, REMOTE_POP3_TIMEOUT=10.0), **PROFILES[profile]}
    _say("failover demo: a master and a slave on this machine, each with its own POP3 server", bold=True)
    if pair.kind == "dovecot":
        _say(f"  POP3 servers: Dovecot {_dovecot_version()} (two real instances)")
    elif dovecot_available():
        _say("  POP3 servers: the BUILT-IN POP3 responder (asked for with --builtin)", fg="yellow")
    else:
        _say("  POP3 servers: the BUILT-IN POP3 responder, because Dovecot is not installed here", fg="yellow")
        _say("  (run scripts/setup.sh as root on Debian to install Dovecot)", fg="yellow")
    for role, daemons in ((M, "lhcd + socketserver"), (S, "rhcd + socketserver2")):
        _say(
            f"  {role.value:6}: POP3 on 127.0.0.1:{pair.pop3[role].port}, control port {pair.monitor_ports[role]} "
            f"({daemons})"
        )
    _say(
        f"  timing profile {profile!r}: a probe every {settings['PROBE_INTERVAL']:g} s (timeout "
        f"{settings['REMOTE_POP3_TIMEOUT']:g} s), failover after {settings['PROBE_FAILURES']} failed probes, or "
        "at once when the master's lhcd reports its service down and a probe confirms it"
    )
    _say(f"  files: {pair.dir} (failover_config.py, state/ with the journals, log/)")

    _say("\n[1] start the master's POP3 server, then the agents on both 'hosts'", bold=True)
    pair.pop3[M].start()
    _run(pair, "start", "master", role=M)
    _run(pair, "start", "slave", role=S)

    _say("\n[2] a client polls every 10 ms: greeting, USER, PASS, STAT; master first, then slave", bold=True)
    poller = Poller(pair)
    poller.start()
    wait = max(2.0, 2.5 * float(settings["PROBE_INTERVAL"]))
    time.sleep(wait)
    served = poller.count("master", 0)
    _say(f"    {len(poller.answers)} exchanges in {wait:g} s, {served} answered by the master")
    _run(pair, "status")

    seen = {(r.value, e["time"] + e["reason"]) for r in Role for e in pair.journal(r)}
    _say("\n[3] kill -9 of the master's POP3 server (its whole process group): a crash", bold=True)
    killed = time.monotonic()
    pair.pop3[M].kill(signal.SIGKILL)
    _say(f"    +{0:6.3f} s  master's POP3 server killed ({time.strftime('%H:%M:%S')})", fg="red")
    limit = 30 + 4 * float(settings["PROBE_INTERVAL"]) * int(settings["PROBE_FAILURES"])
    _follow(pair, poller, killed, seen, killed + limit)
    time.sleep(0.5)
    poller.stop()

    _say("\n[4] outcome", bold=True)
    first = poller.first("slave", killed)
    after = [a for a in poller.answers if a.time >= killed]
    failed = sum(1 for a in after if a.server is None)
    ok = first is not None and pair.state(S).get("state") == "ACTIVE"
    if first is not None:
        _say(
            f"    outage seen by the client: {first - killed:.3f} s (the kill -> the first complete exchange "
            "answered by the slave)",
            fg="green",
            bold=True,
        )
    else:
        _say("    the slave never answered the client", fg="red", bold=True)
    _say(
        f"    exchanges since the kill: {failed} unanswered, {poller.count('slave', killed)} answered by the slave, "
        f"{poller.count('master', killed)} by the master"
    )
    _run(pair, "status")

    _say("\n[5] no automatic failback: restart the old master's agents", bold=True)
    _run(pair, "stop", "master", role=M)
    _run(pair, "start", "master", role=M)
    time.sleep(1.0)
    master = pair.state(M)
    _say(
        f"    master is {master.get('state')} in term {master.get('term')}; its POP3 server "
        f"{'RUNS' if pair.pop3[M].running() else 'stays down'}. The operation sheet moves the service back."
    )
    _say("\n[6] what happened, both hosts in time order (`failover history`)", bold=True)
    _run(pair, "history", "--limit", "12", role=M)
    _say(
        "\nlogs: "
        + ", ".join(f"log/{n}.log" for n in ("lhcd", "socketserver", "rhcd", "socketserver2"))
        + f" in {pair.dir}; journals: state/master.journal, state/slave.journal"
    )
    _say(
        "\nresult: " + ("the slave took over" if ok else "FAILED: the slave did not take over"),
        fg="green" if ok else "red",
        bold=True,
    )
    if not ok:
        _say(pair.logs())
    return 0 if ok else 1


__all__ = ["run_demo"]

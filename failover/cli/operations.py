"""`failover hold`, `release`, `switchover`, `switchback`: the operator's controls (the operation
sheets as commands).

Every command asks the agents through their authenticated control servers; the agents' state
machines decide and answer. The switchback's progress is persisted in STATE_DIR, so an
interrupted switchback resumes where it stopped.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

import click

from failover.channel import ChannelError, request
from failover.cli.context import CommandError, Context, fetch_status, pass_context
from failover.config import Config
from failover.machine import Role, State
from failover.protocol import OperatorAnswer, OperatorCommand, ProtocolError, Refused
from failover.state import atomic_write, wall_clock

SETTLE = 120.0  # seconds a switchover or a switchback step may take before the command gives up


def operator_name() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def command(config: Config, role: Role, action: str, reason: str = "", **peer: Any) -> OperatorAnswer:
    """Send one operator command to `role`'s agent; refusals and silence become CommandError."""
    message = OperatorCommand(action, operator_name(), reason, wall_clock(), **peer)
    host, port = config.host_of(role), config.monitor_port_of(role)
    timeout = config.SHUTDOWN_ACK_TIMEOUT + 2 * config.CONTROL_TIMEOUT
    try:
        answer = request(host, port, config.read_secret(), message, timeout)
    except (ChannelError, ProtocolError, OSError) as e:
        raise CommandError(f"the {role} ({host}:{port}) did not answer: {e}") from None
    if isinstance(answer, Refused):
        raise CommandError(f"the {role} refused: {answer.reason}")
    if not isinstance(answer, OperatorAnswer):
        raise CommandError(f"the {role} answered {answer.TYPE}")
    return answer


def _live(config: Config, role: Role) -> dict[str, Any]:
    """The role's status, only if its control server answers (no stale files here)."""
    status = fetch_status(config, role)
    if status.get("note"):
        raise CommandError(f"the {role}'s agents do not answer: {status['note']}")
    return status


def _both(ctx: Context, action: str, reason: str) -> None:
    failed = []
    for role in (Role.SLAVE, Role.MASTER):  # the slave first: it is the one that acts on its own
        try:
            answer = command(ctx.config, role, action, reason)
        except CommandError as e:
            failed.append(role)
            click.echo(f"{role}: NOT {action}: {e.message}", err=True)
            continue
        click.echo(f"{role}: {answer.message} ({answer.state}, term {answer.term})")
        if not answer.ok:
            failed.append(role)
    if failed:
        raise CommandError(f"{action} did not reach every host ({', '.join(failed)}); run it again when they answer")


@click.command()
@click.option("--reason", default="", help="Why (shown in status on both hosts).")
@pass_context
def hold(ctx: Context, reason: str) -> None:
    """Maintenance: no automatic action on either host until `failover release` (survives restarts)."""
    _both(ctx, "hold", reason)


@click.command()
@click.option("--reason", default="", help="Journaled with the release.")
@pass_context
def release(ctx: Context, reason: str) -> None:
    """End the maintenance hold on both hosts: watching (and acting) again."""
    _both(ctx, "release", reason)


def _wait_for(config: Config, role: Role, done: set[str], bad: set[str], what: str) -> dict[str, Any]:
    end = time.monotonic() + SETTLE
    last = None
    while time.monotonic() < end:
        try:
            status = _live(config, role)
        except CommandError:
            time.sleep(0.2)
            continue
        if status["state"] != last:
            click.echo(f"  {role}: {status['state']} (term {status['term']}): {status['reason']}")
            last = status["state"]
        if status["state"] in done:
            return status
        if status["state"] in bad:
            raise CommandError(f"{what}: the {role} is {status['state']}: {status['reason']}")
        time.sleep(0.1)
    raise CommandError(f"{what}: the {role} is still {last} after {SETTLE:g} s; see `failover status`")


@click.command()
@click.option("--reason", default="", help="Why (journaled on both hosts).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_context
def switchover(ctx: Context, reason: str, yes: bool) -> None:
    """A planned move of the service from the master to the slave, with a failover's safety
    (SHUTDOWN, ACK or fence, startup, hooks)."""
    config = ctx.config
    master, slave = _live(config, Role.MASTER), _live(config, Role.SLAVE)
    problems = []
    if slave["state"] == State.ACTIVE.value:
        problems.append("the slave is already ACTIVE: `failover switchback` moves the service back to the master")
    elif slave["state"] not in (State.STANDBY.value, State.SUSPECT.value):
        problems.append(f"the slave is {slave['state']} ({slave['reason']}), not ready to take over")
    if master["state"] == State.MAINTENANCE.value or slave["state"] == State.MAINTENANCE.value:
        problems.append("the pair is held for maintenance: `failover release` first")
    elif master["state"] not in (State.ACTIVE.value, State.RESTARTING.value):
        problems.append(f"the master is {master['state']}, not ACTIVE: nothing to move")
    sync = master.get("sync") or {}
    if config.SYNC_FILES and (sync.get("paused") or sync.get("check_ok") is False or sync.get("auto_ok") is False):
        why = sync.get("last_error") or sync.get("check_summary") or "see `failover sync --check`"
        problems.append(f"SYNC_FILES are not in sync on the slave ({why}): `failover sync --full` on the master first")
    if not all(slave["daemons"].values()) or not all(master["daemons"].values()):
        problems.append(f"agents not running: master {master['daemons']}, slave {slave['daemons']}")
    if problems:
        raise CommandError("switchover refused:\n  " + "\n  ".join(problems))
    if not yes:
        click.confirm(
            f"Move the service from the master ({config.MASTER_HOST}) to the slave ({config.SLAVE_HOST})?", abort=True
        )
    answer = command(config, Role.SLAVE, "switchover", reason)
    if not answer.ok:
        raise CommandError(f"switchover refused by the slave: {answer.message}")
    click.echo(f"slave: {answer.message}")
    _wait_for(config, Role.SLAVE, {State.ACTIVE.value}, {State.FAILED.value, State.MAINTENANCE.value}, "switchover")
    click.echo("switchover done: the slave is ACTIVE, the master INACTIVE (`failover switchback` moves it back)")


# ---------------------------------------------------------------------------------------------- switchback


@dataclass
class Progress:
    """The persisted progress of one switchback: the term it started from and the steps done."""

    path: str
    term: int
    started: str
    done: list[str]

    @classmethod
    def load(cls, config: Config) -> Progress | None:
        path = os.path.join(config.STATE_DIR, "switchback.json")
        try:
            with open(path) as f:
                data = json.load(f)
            return cls(path, int(data["term"]), str(data["started"]), list(data["done"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CommandError(f"{path}: unreadable ({e}); move it away to plan afresh") from None

    def save(self) -> None:
        body = {"term": self.term, "started": self.started, "done": self.done}
        atomic_write(self.path, json.dumps(body, indent=1).encode())

    def finish(self) -> None:
        os.unlink(self.path)


STEPS = (
    ("check", "check: the slave is ACTIVE, the master INACTIVE and repaired (its agents answer, its service is down)"),
    ("stop-slave", "stop the service on the slave (shutdown scripts, verified down); the slave stays held"),
    ("start-master", "start the service on the master in a new term (startup scripts, verified up, load balancer)"),
    ("release-slave", "release the slave: STANDBY, watching the master again"),
)


def _check(master: dict[str, Any], slave: dict[str, Any], progress: Progress | None) -> list[str]:
    """What keeps the switchback from starting (empty: ready)."""
    if progress is not None:
        return []
    problems = []
    if slave["state"] != State.ACTIVE.value:
        problems.append(f"the slave is {slave['state']}, not ACTIVE: there is nothing to move back")
    if master["state"] != State.INACTIVE.value:
        problems.append(f"the master is {master['state']}, not INACTIVE ({master['reason']})")
    if master.get("service_ok") is True:
        problems.append("the master's service runs: both would serve")
    if not all(master["daemons"].values()):
        problems.append(f"the master's agents are not all running: {master['daemons']}")
    return problems


@click.command()
@click.option("--dry-run", is_flag=True, help="Print the plan and the checks; change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask before each step.")
@pass_context
def switchback(ctx: Context, dry_run: bool, yes: bool) -> None:
    """Move the service back to the repaired master (the operation sheet as a command). Safe to
    run again after an interruption: it resumes from the persisted step."""
    config = ctx.config
    master, slave = _live(config, Role.MASTER), _live(config, Role.SLAVE)
    progress = Progress.load(config)
    if progress is not None:
        click.echo(
            f"resuming the switchback started {progress.started} from term {progress.term}; done: "
            f"{', '.join(progress.done) or 'nothing yet'}"
        )
    click.echo("plan:")
    for i, (name, text) in enumerate(STEPS, 1):
        mark = "done" if progress and name in progress.done else "todo"
        click.echo(f"  {i}. [{mark}] {text}")
    problems = _check(master, slave, progress)
    if problems:
        raise CommandError("switchback cannot start:\n  " + "\n  ".join(problems))
    if dry_run:
        click.echo(
            f"dry run: the checks pass (master {master['state']} term {master['term']}, slave "
            f"{slave['state']} term {slave['term']}); nothing was changed"
        )
        return
    if progress is None:
        progress = Progress(os.path.join(config.STATE_DIR, "switchback.json"), int(slave["term"]), wall_clock(), [])
        progress.done.append("check")
        progress.save()
    for number, (name, text) in enumerate(STEPS, 1):
        if name in progress.done:
            continue
        if not yes and not click.confirm(f"step {number}: {text}. Go on?", default=True):
            raise CommandError(f"stopped before step {number}; `failover switchback` resumes here")
        _run_step(config, name, progress)
        progress.done.append(name)
        progress.save()
        click.echo(f"step {number} done: {text}")
    progress.finish()
    click.echo("switchback done: the master is ACTIVE, the slave STANDBY and watching")


def _run_step(config: Config, name: str, progress: Progress) -> None:
    what = f"switchback step {name}"
    if name == "stop-slave":
        answer = command(config, Role.SLAVE, "switchback-stop", "switchback")
        if not answer.ok:
            raise CommandError(f"{what}: {answer.message}; fix it, then run `failover switchback` again")
        _wait_for(config, Role.SLAVE, {State.MAINTENANCE.value}, {State.FAILED.value, State.ACTIVE.value}, what)
    elif name == "start-master":
        slave = _live(config, Role.SLAVE)
        down = slave["state"] == State.MAINTENANCE.value and slave.get("service_ok") is not True
        answer = command(
            config,
            Role.MASTER,
            "switchback-start",
            "switchback",
            peer_term=int(slave["term"]),
            peer_state=str(slave["state"]),
            peer_service_down=down,
        )
        if not answer.ok and not answer.state == State.ACTIVE.value:
            raise CommandError(f"{what}: {answer.message}; fix it, then run `failover switchback` again")
        _wait_for(config, Role.MASTER, {State.ACTIVE.value}, {State.FAILED.value}, what)
    elif name == "release-slave":
        answer = command(config, Role.SLAVE, "release", "switchback done")
        if not answer.ok:
            raise CommandError(f"{what}: {answer.message}")

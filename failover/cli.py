"""The `failover` command: check, status, start, stop, keygen, confirm-fenced, demo."""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from failover.channel import ChannelError, local_call, request
from failover.config import Config, ConfigError, find_role, load
from failover.daemon import DAEMONS, MODULES, PidUnknown, pid_path, running_pid, signal_daemon, socket_path
from failover.machine import Role, State
from failover.protocol import (
    ConfirmFenced,
    OperatorAnswer,
    ProtocolError,
    StatusReply,
    StatusRequest,
    local_request,
    parse_local_answer,
)
from failover.starting import Launch, StartFailed, spawn, wait_ready
from failover.starting import stop as stop_launched
from failover.state import ensure_private_dir
from failover.status import collect, render
from failover.status_schema import StatusError, checked


class FailoverError(click.ClickException):
    """A user error: printed as it is (no "Error:" prefix, no traceback), exit 1."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        click.echo(self.format_message(), err=True)


class BadConfig(FailoverError):
    """The config has problems (one line each): exit 2, like `perl -cw` failing."""

    exit_code = 2


class NoAnswer(FailoverError):
    exit_code = 3


@dataclass
class Context:
    config_path: str
    role_option: str | None
    _config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            try:
                self._config = load(self.config_path)
            except ConfigError as e:
                raise BadConfig("\n".join(e.lines())) from None
        return self._config

    def role(self) -> Role:
        try:
            return find_role(self.config, Role(self.role_option) if self.role_option else None)
        except ConfigError as e:
            raise BadConfig("\n".join(e.lines())) from None


role_argument = click.argument("role", type=click.Choice([r.value for r in Role]))
pass_context = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    envvar="FAILOVER_CONFIG",
    default="failover_config.py",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="The config file (same on both hosts).",
)
@click.option(
    "--role",
    "role_option",
    type=click.Choice([r.value for r in Role]),
    help="This host's role, when MASTER_HOST/SLAVE_HOST cannot tell (a pair on one machine).",
)
@click.pass_context
def main(ctx: click.Context, config_path: str, role_option: str | None) -> None:
    """Two-host failover for a service that runs on one host at a time (POP3 first)."""
    ctx.obj = Context(config_path, role_option)


# ---------------------------------------------------------------------------------------------- check


@main.command()
@click.argument("path", required=False, type=click.Path(dir_okay=False))
@pass_context
def check(ctx: Context, path: str | None) -> None:
    """Validate the config (the replacement for `perl -cw`): exit 0, or 2 with one line per problem."""
    ctx = Context(path or ctx.config_path, ctx.role_option)
    config = ctx.config
    for warning in config.warnings:
        click.echo(f"{config.source}: warning: {warning}", err=True)
    try:
        role_text = f"this host is the {find_role(config, Role(ctx.role_option) if ctx.role_option else None)}"
    except ConfigError as e:
        if "both MASTER_HOST" not in e.problems[0].message:
            raise BadConfig("\n".join(e.lines())) from None
        role_text = "both roles are on this machine (give --role to start, status works as is)"
    c = config
    if c.SYNC_FILES and c.RLOGIN_KNOWN_HOSTS:
        _check_sync(ctx)
    triggers = ", ".join(sorted(t.value for t in c.triggers()))
    mode = f"automatic failover on: {triggers}" if triggers else "MANUAL MODE (no trigger enabled)"
    click.echo(
        f"{c.source}: OK: {role_text}; master {c.MASTER_HOST}, slave {c.SLAVE_HOST}; {mode}; probes every "
        f"{c.PROBE_INTERVAL:g} s (timeout {c.REMOTE_POP3_TIMEOUT:g} s, {c.PROBE_FAILURES} in a row = down); "
        f"{c.RESTART_LIMIT} local restarts per {c.RESTART_WINDOW:g} s; ON_ACK_TIMEOUT {c.ON_ACK_TIMEOUT.value}"
    )


def _check_sync(ctx: Context) -> None:
    """On the ACTIVE host with a reachable peer: are SYNC_FILES equal? (a warning, not a config error)"""
    from failover.sync_commands import own_state
    from failover.syncfiles import SyncError
    from failover.syncpeer import Peer

    try:
        me = ctx.role()
        if own_state(ctx.config, me) is not State.ACTIVE:
            return
        with Peer(ctx.config, me) as peer:
            rows = peer.plan(full=False).rows
    except (SyncError, FailoverError, ConfigError) as e:
        click.echo(f"{ctx.config.source}: note: SYNC_FILES not compared (the peer: {e})", err=True)
        return
    differ = [r for r in rows if r.status not in ("equal", "skipped")]  # skipped: a fifo, socket, device
    if differ:
        paths = ", ".join(f"/{r.path} ({r.status})" for r in differ[:5])
        click.echo(f"{ctx.config.source}: warning: SYNC_FILES: {len(differ)} of {len(rows)} differ: {paths}", err=True)


# ---------------------------------------------------------------------------------------------- status


def fetch_status(config: Config, role: Role) -> dict[str, Any]:
    """Ask the role's control server; if it does not answer but its files are here, read them."""
    host, port = config.host_of(role), config.monitor_port_of(role)
    try:
        reply = request(host, port, config.read_secret(), StatusRequest(), config.CONTROL_TIMEOUT)
    except (ChannelError, ProtocolError, OSError) as e:
        if os.path.exists(os.path.join(config.STATE_DIR, f"{role.value}.state.json")):
            status = collect(config, role)
            status["note"] = f"control server not answering ({e}); read from local files"
            return status
        raise FailoverError(f"{role} at {host}:{port}: {e}") from None
    if not isinstance(reply, StatusReply):
        raise FailoverError(f"{role} at {host}:{port} answered {reply.TYPE}")
    try:
        return checked(reply.status)
    except StatusError as e:
        raise FailoverError(f"{role} at {host}:{port} sent a status that cannot be read: {e}") from None


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def status(ctx: Context, as_json: bool) -> None:
    """Both hosts: role, state (ACTIVE / STANDBY / INACTIVE), term, last probe, last transitions."""
    statuses, errors = {}, {}
    for role in Role:
        try:
            statuses[role] = fetch_status(ctx.config, role)
        except FailoverError as e:
            errors[role] = e.message
    if as_json:
        click.echo(json.dumps({r.value: statuses.get(r, {"error": errors.get(r)}) for r in Role}, indent=1))
    else:
        click.echo(render(statuses, errors))
    if not statuses:
        raise NoAnswer("neither host answered")


# ---------------------------------------------------------------------------------------------- start / stop


def _command(ctx: Context, name: str, foreground: bool) -> list[str]:
    args = [sys.executable, "-m", MODULES[name], "--config", str(Path(ctx.config_path).resolve())]
    return [*args, "--foreground"] if foreground else args


def _wait_started(launched: list[Launch]) -> int:
    """The pid of the last daemon launched, once it said READY (failover.daemon). If it did not,
    stop every daemon this command started and fail with the daemon's one-line reason."""
    try:
        return wait_ready(launched[-1])
    except StartFailed as e:
        stopped = stop_launched(launched)
        undone = f"\nstopped {', '.join(stopped)}, started by this command" if stopped else ""
        raise FailoverError(f"{e}{undone}") from None


@main.command()
@role_argument
@click.option("--foreground", is_flag=True, help="Stay attached, log to the terminal, stop both on Ctrl-C.")
@pass_context
def start(ctx: Context, role: str, foreground: bool) -> None:
    """Start this host's daemons (master: socketserver + lhcd; slave: socketserver2 + rhcd), each
    once the one before it is ready. Exit 0 when all are ready; else 1 with the reason, and
    what this command started is stopped again."""
    the_role = Role(role)
    config = ctx.config
    try:
        find_role(config, the_role)
    except ConfigError as e:
        raise BadConfig("\n".join(e.lines())) from None
    for warning in config.warnings:
        click.echo(f"{config.source}: warning: {warning}", err=True)
    running = {n: _daemon_pid(config, n) for n in DAEMONS[the_role]}
    if all(running.values()):
        already = ", ".join(f"{n} (pid {p})" for n, p in running.items())
        raise FailoverError(f"already running: {already}; `failover stop {role}` stops them")
    ensure_private_dir(config.STATE_DIR)
    os.makedirs(config.LOG_DIR, exist_ok=True)
    if foreground:
        if any(running.values()):
            raise FailoverError(f"some daemons run detached: {running}; stop them before --foreground")
        _run_foreground(ctx, config, the_role)
        return
    launched: list[Launch] = []
    try:
        for name in DAEMONS[the_role]:
            if running[name]:
                click.echo(f"{name} already running (pid {running[name]})")
                continue
            out = os.path.join(config.LOG_DIR, f"{name}.out")
            launched.append(spawn(name, _command(ctx, name, False), config.base_dir, out))
            pid = _wait_started(launched)
            click.echo(f"{name} started (pid {pid}), log {config.LOG_DIR}/{name}.log")
    except KeyboardInterrupt:
        stop_launched(launched)  # an interrupted start leaves nothing half-started behind
        raise


def _run_foreground(ctx: Context, config: Config, role: Role) -> None:
    launched: list[Launch] = []
    signalled: set[int] = set()
    stopping = False

    def stop_all(signum: int = signal.SIGTERM, frame: object = None) -> None:
        nonlocal stopping
        stopping = True
        for launch in launched:
            p = launch.proc
            # once each: a second SIGTERM during the child's interpreter shutdown kills it uncleanly
            if p.poll() is None and p.pid not in signalled:
                signalled.add(p.pid)
                p.send_signal(signal.SIGTERM)

    # Handlers first: Ctrl-C while the daemons start still stops them all, without a traceback.
    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGINT, stop_all)
    for name in DAEMONS[role]:
        if stopping:
            break
        launched.append(spawn(name, _command(ctx, name, True), config.base_dir, None))
        try:
            _wait_started(launched)
        except FailoverError:
            if not stopping:
                raise  # _wait_started stopped the others
    while not stopping and all(launch.proc.poll() is None for launch in launched):
        time.sleep(0.1)
    stop_all()
    codes = [launch.proc.wait() for launch in launched]
    if any(codes):
        raise FailoverError(f"a daemon exited: {dict(zip(DAEMONS[role], codes, strict=False))}")


def _daemon_pid(config: Config, name: str) -> int | None:
    """The running daemon's pid (always > 1), or None; a pid that cannot be known is an error."""
    try:
        return running_pid(pid_path(config, name))
    except PidUnknown as e:
        raise FailoverError(f"{name}: {e}") from None


@main.command()
@role_argument
@pass_context
def stop(ctx: Context, role: str) -> None:
    """Stop this host's daemons. The service itself keeps its state (it is not stopped)."""
    config = ctx.config
    for name in reversed(DAEMONS[Role(role)]):
        pid = _daemon_pid(config, name)
        if not pid:
            click.echo(f"{name}: not running")
            continue
        try:
            signal_daemon(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass  # it exited between the lock check and the signal
        except PidUnknown as e:
            raise FailoverError(f"{name}: {e}") from None
        end = time.monotonic() + 10
        while _daemon_pid(config, name) and time.monotonic() < end:
            time.sleep(0.02)
        if _daemon_pid(config, name):
            raise FailoverError(f"{name} (pid {pid}) did not stop within 10 s")
        click.echo(f"{name} stopped (pid {pid})")


# ---------------------------------------------------------------------------------------------- operator tools


@main.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Replace an existing secret.")
def keygen(path: str, force: bool) -> None:
    """Write a new shared secret (mode 0600). Copy the same file to both hosts."""
    if os.path.exists(path) and not force:
        raise FailoverError(f"{path} exists; use --force to replace it (then copy it to the other host)")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    os.chmod(path, 0o600)
    click.echo(f"wrote a new secret to {path} (mode 0600); copy it to the other host with the same mode")


@main.command("confirm-fenced")
@click.option("--term", type=int, help="The term the slave is FENCING in (default: its current term).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_context
def confirm_fenced(ctx: Context, term: int | None, yes: bool) -> None:
    """On the slave: you made sure the master serves no one; let the slave start the service."""
    config = ctx.config
    if ctx.role() is not Role.SLAVE:
        raise FailoverError("confirm-fenced runs on the slave")
    if not yes:
        click.confirm(
            "Is the master powered off or cut off from its clients (or its agents and its service stopped)? "
            "A stopped service alone is not enough: lhcd may restart it",
            abort=True,
        )
    request = ConfirmFenced(term)
    try:  # rhcd decides within fence_wait(); the margin covers the socket
        answer = parse_local_answer(
            local_call(
                socket_path(config, "rhcd"), local_request(request), config.fence_wait() + config.CONTROL_TIMEOUT
            ),
            request,
        )
    except (ChannelError, ProtocolError) as e:
        raise FailoverError(f"rhcd does not answer: {e}") from None
    if not isinstance(answer, OperatorAnswer):
        raise FailoverError(f"rhcd refused: {answer}")
    click.echo(f"slave is {answer.state} in term {answer.term}: {answer.message}")


@main.command("fence-self")
@click.option("--term", type=int, required=True, help="The term the slave claimed.")
@pass_context
def fence_self(ctx: Context, term: int) -> None:
    """On the master (run by the slave over SSH): stop the service for TERM and verify it is down.
    Prints the answer as JSON; exit 0 when the service is verified down."""
    import logging

    from agents.master.lhcd import fence_self as run_fence_self

    if ctx.role() is not Role.MASTER:
        raise FailoverError("fence-self runs on the master")
    logging.basicConfig(level=logging.INFO, format="fence-self %(levelname)s %(message)s", stream=sys.stderr)
    answer = run_fence_self(ctx.config, term, logging.getLogger("fence-self"))
    click.echo(json.dumps(answer))
    if not answer.get("ok"):
        sys.exit(1)


@main.command()
@click.option(
    "--profile",
    type=click.Choice(["fast", "default"]),
    default="fast",
    show_default=True,
    help="Timing profile of the pair.",
)
@click.option("--builtin", is_flag=True, help="Use the built-in POP3 responder even if Dovecot is installed.")
@click.option("--keep", is_flag=True, help="Leave the agents, servers and files in place afterwards.")
def demo(profile: str, builtin: bool, keep: bool) -> None:
    """Both agents on loopback, a client polling, then the master's POP3 service is killed."""
    from failover.demo import run_demo

    sys.exit(run_demo(profile, "builtin" if builtin else None, keep))


# The operator's controls live in their own module; importing it registers its commands.
from failover import operations, sync_commands  # noqa: E402, F401

if __name__ == "__main__":
    # Run as `python -m failover.cli`, this file is `__main__`; the operations module registered
    # its commands on the imported `failover.cli.main`, so that is the group to run.
    from failover.cli import main as registered

    registered()

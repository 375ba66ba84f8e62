"""`failover start` and `failover stop`: this host's daemons (master: socketserver + lhcd; slave:
socketserver2 + rhcd), and the starter's side of readiness.

`start` spawns each daemon with a readiness pipe and waits for its word before the next: it says
`READY <pid>` on the pipe once it serves, or `FAILED <reason>` before it exits (failover.daemon
explains why a pipe and not a file). The end of the pipe without a word means it died without
saying why: the reason is then the last line it wrote to its .out file. One that says nothing
within the timeout is stopped. Either way the starter gets one line to print, and stops what
this command started. `stop` signals each running daemon and waits for its pid lock to go.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click

from failover.cli.context import BadConfig, CommandError, Context, pass_context, role_argument
from failover.config import Config, ConfigError, find_role
from failover.daemon import (
    DAEMONS,
    LOG_MAX_BYTES,
    MODULES,
    READY_FD_ENV,
    PidUnknown,
    pid_path,
    running_pid,
    signal_daemon,
)
from failover.errors import FailoverError
from failover.machine import Role
from failover.state import ensure_private_dir

READY_TIMEOUT = 30.0  # seconds for a daemon to become ready: an interpreter start on a loaded host, with room
STOP_GRACE = 10.0  # seconds a daemon gets to exit on SIGTERM before SIGKILL
EXIT_WAIT = 5.0  # seconds to wait for the exit code of a daemon that said FAILED or closed its pipe


class StartFailed(FailoverError):
    """A daemon did not become ready; the message is one line that says why."""


@dataclass
class Launch:
    name: str
    proc: subprocess.Popen[bytes]
    ready_fd: int  # the read end of the readiness pipe (closed once the daemon's word is read)
    out_path: str | None  # where a detached daemon's stdout and stderr go (None: the terminal)
    out_offset: int  # the .out file's size before this start: what the daemon wrote comes after


def spawn(name: str, command: list[str], cwd: str, out_path: str | None) -> Launch:
    """Start one daemon with a readiness pipe; detached (its own session, output to `out_path`)
    unless `out_path` is None (foreground: it shares the terminal and the starter's session)."""
    read_end, write_end = os.pipe()  # both non-inheritable; pass_fds hands the write end to the daemon alone
    env = dict(os.environ, **{READY_FD_ENV: str(write_end)})
    try:
        if out_path is None:
            proc = subprocess.Popen(command, cwd=cwd, env=env, pass_fds=(write_end,))
            offset = 0
        else:
            _rotate_out(out_path)
            with open(out_path, "ab") as out:
                offset = out.tell()
                proc = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=cwd,
                    env=env,
                    pass_fds=(write_end,),
                    start_new_session=True,
                )
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)  # ours must go, or the pipe would never reach its end when the daemon dies
    return Launch(name, proc, read_end, out_path, offset)


def _rotate_out(path: str) -> None:
    """Keep one older .out: it only gets the daemons' own lines (their logs rotate by themselves),
    but it must not grow over years of restarts."""
    with contextlib.suppress(FileNotFoundError):
        if os.path.getsize(path) > LOG_MAX_BYTES:
            os.replace(path, f"{path}.1")


def wait_ready(launch: Launch, timeout: float = READY_TIMEOUT) -> int:
    """The daemon's pid once it said READY. Raises StartFailed (one line) when it said FAILED,
    died, or was not ready within `timeout` seconds; in the last case it is stopped first."""
    deadline = time.monotonic() + timeout
    data = b""
    try:
        while b"\n" not in data:
            left = deadline - time.monotonic()
            if left <= 0:
                stop_launched([launch])
                raise StartFailed(f"{launch.name} was not ready within {timeout:g} s: stopped it (see its log)")
            readable, _, _ = select.select([launch.ready_fd], [], [], left)
            if not readable:
                continue
            chunk = os.read(launch.ready_fd, 4096)
            if not chunk:
                break  # the daemon closed the pipe: it exited (or is exiting) without READY
            data += chunk
    finally:
        os.close(launch.ready_fd)
    word, _, rest = data.split(b"\n")[0].decode(errors="replace").strip().partition(" ")
    if word == "READY":
        return launch.proc.pid
    try:
        code: int | str = launch.proc.wait(EXIT_WAIT)
    except subprocess.TimeoutExpired:
        stop_launched([launch])  # it closed its pipe without a word and lingers: not a daemon to keep
        code = "stopped"
    reason = rest if word == "FAILED" else _last_line(launch) or "it gave no reason"
    raise StartFailed(f"{launch.name} did not start (exit {code}): {reason}")


def _last_line(launch: Launch) -> str:
    """The last line a detached daemon wrote in this start (a traceback's last line says what)."""
    if launch.out_path is None:
        return ""  # a foreground daemon wrote to the terminal: it is there to read
    try:
        with open(launch.out_path, "rb") as f:
            f.seek(launch.out_offset)
            text = f.read()[-4000:].decode(errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:500] if lines else ""


def stop_launched(launches: list[Launch], grace: float = STOP_GRACE) -> list[str]:
    """SIGTERM to each daemon still running (the last started first), SIGKILL after `grace`
    seconds; returns "NAME (pid N)" for each one that was running. Signals only processes that
    this starter spawned and has not reaped, so a pid cannot have been reused."""
    stopped = []
    for launch in reversed(launches):
        if launch.proc.poll() is None:
            stopped.append(f"{launch.name} (pid {launch.proc.pid})")
            launch.proc.send_signal(signal.SIGTERM)
    end = time.monotonic() + grace
    for launch in launches:
        try:
            launch.proc.wait(max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            launch.proc.kill()
            launch.proc.wait()
    return stopped


# ---------------------------------------------------------------------------------------------- the commands


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
        raise CommandError(f"{e}{undone}") from None


@click.command()
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
        raise CommandError(f"already running: {already}; `failover stop {role}` stops them")
    ensure_private_dir(config.STATE_DIR)
    os.makedirs(config.LOG_DIR, exist_ok=True)
    if foreground:
        if any(running.values()):
            raise CommandError(f"some daemons run detached: {running}; stop them before --foreground")
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
        except CommandError:
            if not stopping:
                raise  # _wait_started stopped the others
    while not stopping and all(launch.proc.poll() is None for launch in launched):
        time.sleep(0.1)
    stop_all()
    codes = [launch.proc.wait() for launch in launched]
    if any(codes):
        raise CommandError(f"a daemon exited: {dict(zip(DAEMONS[role], codes, strict=False))}")


def _daemon_pid(config: Config, name: str) -> int | None:
    """The running daemon's pid (always > 1), or None; a pid that cannot be known is an error."""
    try:
        return running_pid(pid_path(config, name))
    except PidUnknown as e:
        raise CommandError(f"{name}: {e}") from None


@click.command()
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
            raise CommandError(f"{name}: {e}") from None
        end = time.monotonic() + 10
        while _daemon_pid(config, name) and time.monotonic() < end:
            time.sleep(0.02)
        if _daemon_pid(config, name):
            raise CommandError(f"{name} (pid {pid}) did not stop within 10 s")
        click.echo(f"{name} stopped (pid {pid})")

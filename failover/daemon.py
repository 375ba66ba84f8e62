"""What every daemon needs: one copy only (a locked pid file), logs, a clean stop on SIGTERM.

The pid file is held with flock for the daemon's whole life, so "is it running?" is answered by
trying the lock, never by trusting a number in a file (a stale pid may belong to another
process by now). The kernel drops the lock when the process dies, even on kill -9.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from failover.channel import ChannelError, ControlServer, Handler, local_call
from failover.config import Config, ConfigError, find_role, load
from failover.machine import Role
from failover.protocol import Message, OperatorAnswer, OperatorCommand, Refused
from failover.state import ensure_private_dir

DAEMONS: dict[Role, tuple[str, ...]] = {
    # started in this order (the control server first, as the Perl start.sh did)
    Role.MASTER: ("socketserver", "lhcd"),
    Role.SLAVE: ("socketserver2", "rhcd"),
}
MODULES = {
    "socketserver": "agents.master.socketserver",
    "lhcd": "agents.master.lhcd",
    "socketserver2": "agents.slave.socketserver2",
    "rhcd": "agents.slave.rhcd",
}


class AlreadyRunning(Exception):
    pass


def pid_path(config: Config, name: str) -> str:
    return os.path.join(config.STATE_DIR, f"{name}.pid")


def socket_path(config: Config, name: str) -> str:
    """The local RPC socket of lhcd or rhcd."""
    return os.path.join(config.STATE_DIR, f"{name}.sock")


class PidLock:
    """Hold `path` locked while the daemon lives; refuse to start if another copy holds it."""

    def __init__(self, path: str, name: str) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(self.fd, 32).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            raise AlreadyRunning(f"{name} is already running (pid {other}, {path})") from None
        os.ftruncate(self.fd, 0)
        os.write(self.fd, f"{os.getpid()}\n".encode())

    def release(self) -> None:
        os.close(self.fd)


class PidUnknown(Exception):
    """A daemon holds its pid lock but its pid file names no valid pid: it cannot be signalled."""


PID_WRITE_WAIT = 1.0  # the holder writes its pid right after taking the lock: this covers that gap


def _valid_pid(text: bytes) -> int | None:
    """The pid in a pid file's text, only if it can be a daemon's (> 1: kill(-1) or kill(0)
    would signal every process or a whole group, and pid 1 is init)."""
    try:
        pid = int(text.split()[0])
    except (ValueError, IndexError):
        return None
    return pid if pid > 1 else None


def running_pid(path: str) -> int | None:
    """The pid of the daemon holding this pid file, or None when none holds it. The pid is
    always > 1; a holder whose pid stays unreadable raises PidUnknown rather than giving a
    number that a caller could pass to os.kill."""
    end = time.monotonic() + PID_WRITE_WAIT
    while True:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = os.read(fd, 32)
            else:
                return None  # nobody holds it
        finally:
            os.close(fd)
        pid = _valid_pid(text)
        if pid is not None:
            return pid
        if time.monotonic() >= end:
            raise PidUnknown(f"{path} is locked by a running daemon but names no valid pid ({text[:20]!r})")
        time.sleep(0.01)


def signal_daemon(pid: int, sig: int) -> None:
    """Send `sig` to one daemon process. Refuses what is not one process of another program:
    pid <= 1 (every process, our group, init) and our own pid."""
    if pid <= 1 or pid == os.getpid():
        raise PidUnknown(f"refusing to send signal {sig} to pid {pid}")
    os.kill(pid, sig)


def setup_logging(config: Config, name: str, role: Role, foreground: bool) -> logging.Logger:
    """One line per event: wall time, daemon[pid], role@host, then the message."""
    os.makedirs(config.LOG_DIR, mode=0o755, exist_ok=True)
    fmt = logging.Formatter(
        f"%(asctime)s.%(msecs)03d {name}[%(process)d] {role.value}@{config.host_of(role)} %(levelname)s %(message)s",
        "%Y-%m-%dT%H:%M:%S",
    )
    root = logging.getLogger()
    root.handlers.clear()
    handler: logging.Handler = logging.FileHandler(os.path.join(config.LOG_DIR, f"{name}.log"))
    handler.setFormatter(fmt)
    root.addHandler(handler)
    if foreground:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(fmt)
        root.addHandler(stream)
    root.setLevel(logging.INFO)
    return logging.getLogger(name)


def daemon_main(name: str, role: Role, run: Callable[[Config, threading.Event, logging.Logger], None]) -> int:
    """The command line of one daemon: --config PATH [--foreground]. Exit 2 on a bad config,
    1 when another copy runs, 0 after a clean stop (SIGTERM or SIGINT)."""
    parser = argparse.ArgumentParser(prog=name)
    parser.add_argument("--config", default=os.environ.get("FAILOVER_CONFIG", "failover_config.py"))
    parser.add_argument("--foreground", action="store_true", help="also log to stderr")
    args = parser.parse_args()
    try:
        config = load(args.config)
        find_role(config, role)
    except ConfigError as e:
        print("\n".join(e.lines()), file=sys.stderr)
        return 2
    ensure_private_dir(config.STATE_DIR)
    try:
        lock = PidLock(pid_path(config, name), name)
    except AlreadyRunning as e:
        print(f"{name}: {e}", file=sys.stderr)
        return 1
    log = setup_logging(config, name, role, args.foreground)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        log.info("stopping on %s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info(
        "started (config %s, state %s, pid %d on %s)",
        Path(args.config).resolve(),
        config.STATE_DIR,
        os.getpid(),
        socket.gethostname(),
    )
    try:
        run(config, stop, log)
    except Exception:
        log.exception("%s failed", name)
        return 1
    finally:
        lock.release()
    log.info("stopped")
    return 0


def forward_operator(config: Config, role: Role, message: OperatorCommand, peer: str, log: logging.Logger) -> Message:
    """Hand an operator's command to this host's agent and return its answer."""
    agent = "lhcd" if role is Role.MASTER else "rhcd"
    log.warning("operator command %s from %s (by %s)", message.action, peer, message.by)
    timeout = config.SHUTDOWN_ACK_TIMEOUT + config.CONTROL_TIMEOUT
    try:
        answer = local_call(socket_path(config, agent), message.body(), timeout=timeout)
        return OperatorAnswer(
            bool(answer.get("ok")), str(answer.get("message", "")), str(answer["state"]), int(answer["term"])
        )
    except (ChannelError, KeyError, ValueError, TypeError) as e:
        return Refused(f"{agent} on the {role} cannot take {message.action!r}: {e}")


def serve_control(config: Config, role: Role, handler: Handler, stop: threading.Event, log: logging.Logger) -> None:
    """Run this role's control server (socketserver / socketserver2) until `stop` is set."""
    server = ControlServer(
        config.host_of(role),
        config.monitor_port_of(role),
        config.read_secret(),
        handler,
        idle_timeout=config.CONTROL_TIMEOUT,
    )
    log.info("listening on %s:%d", *server.address)
    server.start()
    stop.wait()
    server.close()

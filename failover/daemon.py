"""What every daemon needs: one copy only (a locked pid file), logs, a clean stop on SIGTERM,
and a word to whoever started it: ready, or why not.

The pid file is held with flock for the daemon's whole life, so "is it running?" is answered by
trying the lock, never by trusting a number in a file (a stale pid may belong to another
process by now). The kernel drops the lock when the process dies, even on kill -9.

Readiness goes over a pipe, not a file. `failover start` creates a pipe per daemon and passes
its write end as the file descriptor named in FAILOVER_READY_FD (the s6 "notification-fd"
scheme; systemd's sd_notify is the same idea over a socket). The daemon writes one line on it,
`READY <pid>` once it serves or `FAILED <reason>` before it exits, and closes it. A pipe needs no
pid or nonce to tell this start's daemon from an earlier one (nothing of it outlives the start,
so nothing can be stale), and the kernel closes it when the daemon dies however it dies, so the
starter learns of a death at once (end of file) instead of polling a file and a pid. Under
systemd (Type=notify, failover.units) the daemon also says READY=1 on NOTIFY_SOCKET
(failover.watchdog); started by hand, it finds neither and tells no one.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import logging.handlers
import os
import signal
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from failover import respawn, watchdog
from failover.channel import ChannelError, ControlServer, Handler, local_call
from failover.config import Config, ConfigError, find_role, load
from failover.errors import FailoverError
from failover.machine import Role
from failover.protocol import (
    Message,
    OperatorCommand,
    ProtocolError,
    Refused,
    local_request,
    parse_local_answer,
)
from failover.sanitize import LogFormatter
from failover.state import StateError, ensure_private_dir
from failover.supervise import DaemonFailed, Supervisor

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


class AlreadyRunning(FailoverError):
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
        if self.fd >= 0:  # once: the respawn releases it just before it replaces the process
            os.close(self.fd)
            self.fd = -1


class PidUnknown(FailoverError):
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


LOCKS = "/proc/locks"  # where Linux lists every lock with its holder's pid


def lock_holder(st: os.stat_result) -> int | None:
    """The pid that holds a flock on the file `st` describes, as the kernel reports it (Linux's
    /proc/locks), or None when it cannot tell. Unlike the pid file's text, this cannot be the pid
    of a previous holder: a new daemon holds the lock a moment before it rewrites the file."""
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open(LOCKS) as f:
            for line in f:
                fields = line.split()  # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"
                if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == wanted:
                    return _valid_pid(fields[4].encode())
    except OSError:
        pass
    return None


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
                holder = lock_holder(os.fstat(fd))
                if holder is not None:
                    return holder  # the kernel's word: no stale pid from the file
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


LOG_MAX_BYTES = 10 * 2**20  # a daemon's log is rotated at this size ...
LOG_BACKUPS = 5  # ... keeping NAME.log.1 .. NAME.log.5 (the oldest is dropped)


def setup_logging(
    config: Config,
    name: str,
    role: Role,
    foreground: bool,
    max_bytes: int = LOG_MAX_BYTES,
    backups: int = LOG_BACKUPS,
) -> logging.Logger:
    """One line per event: wall time, daemon[pid], role@host, then the message. The log file is
    rotated by size, so a daemon that runs for years (or logs a failure in a loop) cannot fill
    LOG_DIR."""
    os.makedirs(config.LOG_DIR, mode=0o755, exist_ok=True)
    # LogFormatter: a reason or a peer's detail with a newline cannot forge a record of its own
    fmt = LogFormatter(
        f"%(asctime)s.%(msecs)03d {name}[%(process)d] {role.value}@{config.host_of(role)} %(levelname)s %(message)s",
        "%Y-%m-%dT%H:%M:%S",
    )
    root = logging.getLogger()
    root.handlers.clear()
    handler: logging.Handler = logging.handlers.RotatingFileHandler(
        os.path.join(config.LOG_DIR, f"{name}.log"), maxBytes=max_bytes, backupCount=backups
    )
    handler.setFormatter(fmt)
    root.addHandler(handler)
    if foreground:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(fmt)
        root.addHandler(stream)
    root.setLevel(logging.INFO)
    return logging.getLogger(name)


# ---------------------------------------------------------------------------------------------- readiness

READY_FD_ENV = "FAILOVER_READY_FD"
_ready_lock = threading.Lock()
_ready_fd: int | None = None  # the pipe to the starter, until READY or FAILED is written on it


def _take_ready_fd() -> int | None:
    """The readiness pipe passed by `failover start`, if any. The variable is removed so that the
    scripts this daemon runs do not see a number that means nothing to them, and the descriptor
    is made non-inheritable so that no child keeps the pipe open after this daemon died."""
    value = os.environ.pop(READY_FD_ENV, None)
    if not value:
        return None
    try:
        fd = int(value)
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return None  # a stale number naming some other file: never write into that
        os.set_inheritable(fd, False)
    except (ValueError, OSError):
        return None  # not a descriptor of ours: there is no one to tell
    return fd


def _tell_starter(line: str) -> None:
    global _ready_fd
    with _ready_lock:
        fd, _ready_fd = _ready_fd, None
    if fd is None:
        return  # already told, or not started by `failover start`
    try:
        # one write of at most PIPE_BUF bytes: the starter reads the line whole
        os.write(fd, (" ".join(line.split())[:2000] + "\n").encode(errors="replace"))
    except OSError:
        pass  # the starter is gone (Ctrl-C): nobody is waiting for the answer
    finally:
        os.close(fd)


def notify_ready() -> None:
    """Tell `failover start` that this daemon serves (lhcd/rhcd: the state is loaded, the local
    socket listens, the loop runs; socketserver(2): it listens), and systemd when it runs this
    daemon. The pipe hears it once (a no-op later); systemd takes a repeated READY=1 as no news."""
    _tell_starter(f"READY {os.getpid()}")
    watchdog.notify("READY=1")


def notify_failed(reason: str) -> None:
    """Tell `failover start` why this daemon exits before it was ready (one line)."""
    _tell_starter(f"FAILED {reason}")


def _give_up(name: str, reason: str, code: int, log: logging.Logger | None = None) -> int:
    """Exit `code` with one line that says why, in the log, on stderr, and to the starter."""
    if log is not None:
        log.error("%s", reason)
    print(f"{name}: {reason}", file=sys.stderr)
    notify_failed(f"{name}: {reason}")
    return code


def daemon_main(name: str, role: Role, run: Callable[[Config, threading.Event, logging.Logger], None]) -> int:
    """The command line of one daemon: --config PATH [--foreground]. Exit 0 after a clean stop
    (SIGTERM or SIGINT); 2 on a bad config or state file, with one line that names the file, the
    key and the problem; 1 when another copy runs or the daemon failed (a vital thread, the
    decision loop, anything unexpected: the traceback is in the log, one line on stderr)."""
    global _ready_fd
    _ready_fd = _take_ready_fd()
    parser = argparse.ArgumentParser(prog=name)
    parser.add_argument("--config", default=os.environ.get("FAILOVER_CONFIG", "failover_config.py"))
    parser.add_argument("--foreground", action="store_true", help="also log to stderr")
    args = parser.parse_args()
    try:
        config = load(args.config)
        find_role(config, role)
    except ConfigError as e:
        print("\n".join(e.lines()), file=sys.stderr)
        notify_failed(f"{name}: " + "; ".join(e.lines()))
        return 2
    try:
        ensure_private_dir(config.STATE_DIR)
        lock = PidLock(pid_path(config, name), name)
    except AlreadyRunning as e:
        return _give_up(name, str(e), 1)
    except OSError as e:
        return _give_up(name, f"{config.source}: STATE_DIR: {config.STATE_DIR}: {e.strerror or e}", 2)
    try:
        log = setup_logging(config, name, role, args.foreground)
    except OSError as e:
        lock.release()
        return _give_up(name, f"{config.source}: LOG_DIR: {config.LOG_DIR}: {e.strerror or e}", 2)
    stop = threading.Event()
    signalled = threading.Event()  # a stop asked for (not a failure): it also cancels a respawn

    def on_signal(signum: int, frame: object) -> None:
        log.info("stopping on %s", signal.Signals(signum).name)
        signalled.set()
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
    except (StateError, ConfigError) as e:
        # the operator must fix a file: its name, the key and the problem say how; a traceback would not
        lock.release()
        return _give_up(name, " ".join(str(e).split()), 2, log)
    except DaemonFailed as e:
        if e.__cause__ is not None:  # the decision loop raised: its traceback is the story
            log.error("%s", e, exc_info=e.__cause__)
        return _failed(name, f"failed: {e}", signalled, lock, log)
    except Exception as e:
        log.exception("%s failed", name)
        reason = f"failed: {type(e).__name__}: {e} (the traceback is in the log)"
        return _failed(name, reason, signalled, lock, log)
    lock.release()
    log.info("stopped")
    return 0


def _failed(name: str, reason: str, signalled: threading.Event, lock: PidLock, log: logging.Logger) -> int:
    """A run-time failure: say why, then respawn as a fresh process (failover.respawn) unless a
    service manager does that, the respawn budget is spent, or a stop signal comes meanwhile."""
    code = _give_up(name, reason, 1, log)
    delay = None if signalled.is_set() else respawn.plan(log, name)
    if delay is not None:
        respawn.respawn(signalled, delay, lock.release)  # returns only when a stop signal cancelled it
        log.info("stopped while waiting to respawn")
    lock.release()
    return code


def forward_operator(config: Config, role: Role, message: OperatorCommand, peer: str, log: logging.Logger) -> Message:
    """Hand an operator's command to this host's agent and return its answer."""
    agent = "lhcd" if role is Role.MASTER else "rhcd"
    log.warning("operator command %s from %s (by %s)", message.action, peer, message.by)
    timeout = config.SHUTDOWN_ACK_TIMEOUT + config.CONTROL_TIMEOUT
    try:
        return parse_local_answer(
            local_call(socket_path(config, agent), local_request(message, peer), timeout), message
        )
    except (ChannelError, ProtocolError) as e:
        return Refused(f"{agent} on the {role} cannot take {message.action!r}: {e}")


def serve_control(config: Config, role: Role, handler: Handler, stop: threading.Event, log: logging.Logger) -> None:
    """Run this role's control server (socketserver / socketserver2) until `stop` is set. Its
    accept loop runs under a Supervisor: restarted if it raises, and the daemon exits (raises
    DaemonFailed) if it keeps failing, rather than holding its lock without serving."""
    server = ControlServer(
        config.host_of(role),
        config.monitor_port_of(role),
        config.read_secret(),
        handler,
        idle_timeout=config.CONTROL_TIMEOUT,
        # slots kept for the other host: a flood of strangers cannot crowd out the failover
        preferred_peers=[config.host_of(role.peer)],
    )
    log.info("listening on %s:%d", *server.address)
    guard = Supervisor(stop, log)
    guard.start("control-server", lambda _stop: server.serve_forever(), vital=True)
    notify_ready()  # the socket listens (bound in ControlServer()); connections wait in its backlog
    stop.wait()
    server.close()
    guard.check()

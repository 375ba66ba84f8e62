"""`failover start`'s side of readiness: spawn a daemon with a readiness pipe, wait for its word.

A daemon says `READY <pid>` on the pipe once it serves, or `FAILED <reason>` before it exits
(failover.daemon explains why a pipe and not a file). The end of the pipe without a word means
it died without saying why: the reason is then the last line it wrote to its .out file. One that
says nothing within the timeout is stopped. Either way the starter gets one line to print.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time
from dataclasses import dataclass

from failover.daemon import LOG_MAX_BYTES, READY_FD_ENV

READY_TIMEOUT = 30.0  # seconds for a daemon to become ready: an interpreter start on a loaded host, with room
STOP_GRACE = 10.0  # seconds a daemon gets to exit on SIGTERM before SIGKILL
EXIT_WAIT = 5.0  # seconds to wait for the exit code of a daemon that said FAILED or closed its pipe


class StartFailed(Exception):
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
                stop([launch])
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
        stop([launch])  # it closed its pipe without a word and lingers: not a daemon to keep
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


def stop(launches: list[Launch], grace: float = STOP_GRACE) -> list[str]:
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

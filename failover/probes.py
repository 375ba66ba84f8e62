"""Probes of a service: POP3 (greeting, optional USER/PASS/STAT), TCP, a command, a process.

Every probe has one overall deadline on the monotonic clock and returns a ProbeOutcome; none
raises. `refused` marks the one failure that proves the port is closed (connection refused), as
opposed to a timeout, which may be a hung service that still holds its port.
"""

from __future__ import annotations

import errno
import socket
import time
from dataclasses import dataclass

import psutil

from failover.errors import FailoverError
from failover.scripts import run_script


@dataclass(frozen=True)
class ProbeOutcome:
    ok: bool
    detail: str
    latency: float
    refused: bool = False


class _Failed(FailoverError):
    pass


def _readline(sock: socket.socket, end: float) -> str:
    data = b""
    while not data.endswith(b"\n"):
        left = end - time.monotonic()
        if left <= 0:
            raise _Failed("timed out waiting for the server")
        sock.settimeout(left)
        chunk = sock.recv(512)
        if not chunk:
            raise _Failed("connection closed by the server")
        data += chunk
        if len(data) > 4096:
            raise _Failed("answer line too long")
    return data.decode(errors="replace").strip()


def _expect_ok(sock: socket.socket, end: float, what: str) -> str:
    line = _readline(sock, end)
    if not line.startswith("+OK"):
        raise _Failed(f"{what}: {line[:120]!r}")
    return line


def _connect(host: str, port: int, end: float) -> socket.socket:
    left = end - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return socket.create_connection((host, port), timeout=left)


def pop3_probe(
    host: str, port: int, timeout: float, user: str | None = None, password: str | None = None
) -> ProbeOutcome:
    """A POP3 greeting (and a login + STAT when a user is given), all within `timeout`."""
    start = time.monotonic()
    end = start + timeout
    try:
        with _connect(host, port, end) as sock:
            greeting = _expect_ok(sock, end, "greeting")
            detail = greeting[:80]
            if user is not None:
                sock.sendall(f"USER {user}\r\n".encode())
                _expect_ok(sock, end, "USER")
                sock.sendall(f"PASS {password}\r\n".encode())
                _expect_ok(sock, end, "PASS")
                sock.sendall(b"STAT\r\n")
                detail = f"{greeting[:60]}; {_expect_ok(sock, end, 'STAT')}"
            sock.sendall(b"QUIT\r\n")
            return ProbeOutcome(True, detail, time.monotonic() - start)
    except _Failed as e:
        return ProbeOutcome(False, str(e), time.monotonic() - start)
    except ConnectionRefusedError:
        return ProbeOutcome(False, f"connection refused by {host}:{port}", time.monotonic() - start, refused=True)
    except TimeoutError:
        return ProbeOutcome(False, f"no answer from {host}:{port} within {timeout:g} s", time.monotonic() - start)
    except OSError as e:
        refused = e.errno == errno.ECONNREFUSED
        return ProbeOutcome(False, f"{host}:{port}: {e.strerror or e}", time.monotonic() - start, refused=refused)


def tcp_probe(host: str, port: int, timeout: float) -> ProbeOutcome:
    start = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return ProbeOutcome(True, f"{host}:{port} accepts connections", time.monotonic() - start)
    except ConnectionRefusedError:
        return ProbeOutcome(False, f"connection refused by {host}:{port}", time.monotonic() - start, refused=True)
    except OSError as e:
        return ProbeOutcome(False, f"{host}:{port}: {e.strerror or e}", time.monotonic() - start)


def command_probe(command: str, timeout: float, cwd: str) -> ProbeOutcome:
    """An operator's check command: exit 0 means healthy."""
    result = run_script(command, timeout, cwd)
    return ProbeOutcome(result.ok, result.summary(), result.duration)


def process_alive(pidfile: str) -> tuple[bool, str]:
    """Whether the process named by a pid file runs (a zombie counts as dead)."""
    try:
        with open(pidfile) as f:
            pid = int(f.read().split()[0])
    except FileNotFoundError:
        return False, f"no pid file {pidfile}"
    except (OSError, ValueError, IndexError) as e:
        return False, f"unreadable pid file {pidfile}: {e}"
    try:
        status = psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        return False, f"process {pid} from {pidfile} is gone"
    except psutil.Error as e:
        return False, f"process {pid}: {e}"
    if status == psutil.STATUS_ZOMBIE:
        return False, f"process {pid} from {pidfile} is a zombie (dead)"
    return True, f"process {pid} runs ({status})"

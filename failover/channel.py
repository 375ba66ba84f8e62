"""The socket side of failover.protocol: connect, serve, and a local RPC, with timeouts everywhere.

- `request()` sends one authenticated message over a fresh TCP connection and returns the
  authenticated reply; the whole exchange (connect, handshake, reply) fits in `timeout` seconds.
- `ControlServer` accepts connections, authenticates each request and hands it to a handler; a
  refused line is logged with the peer and the reason, and the connection is closed. It never
  reaches the handler.
- `local_call()` / `LocalServer`: JSON lines over a Unix socket between the daemons of one host
  (socketserver -> lhcd, socketserver2 -> rhcd, the CLI -> rhcd). The socket lives in the
  0700 state directory and is itself 0600, so the file system is the authentication.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from failover.protocol import (
    MAX_LINE,
    NONCE_BYTES,
    ClientSession,
    LineBuffer,
    Message,
    ProtocolError,
    ServerSession,
)

log = logging.getLogger("failover.channel")
MAX_CONNECTIONS = 32


class ChannelError(Exception):
    """The peer could not be reached or did not answer in time."""


class _Deadline:
    def __init__(self, timeout: float) -> None:
        self.end = time.monotonic() + timeout

    def left(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise ChannelError("timed out")
        return left


def _read_line(sock: socket.socket, buffer: LineBuffer, pending: list[bytes], deadline: _Deadline | None) -> bytes:
    """The next line; raises ChannelError on EOF or timeout, ProtocolError on an oversized line."""
    while not pending:
        if deadline is not None:
            sock.settimeout(deadline.left())
        try:
            data = sock.recv(65536)
        except TimeoutError:
            raise ChannelError("timed out waiting for the peer") from None
        except OSError as e:
            raise ChannelError(f"connection error: {e}") from None
        if not data:
            raise ChannelError("the peer closed the connection")
        pending.extend(buffer.feed(data))
    return pending.pop(0)


def request(host: str, port: int, secret: bytes, message: Message, timeout: float) -> Message:
    """One authenticated request and its authenticated reply, all within `timeout` seconds."""
    deadline = _Deadline(timeout)
    session = ClientSession(secret, secrets.token_bytes(NONCE_BYTES))
    try:
        sock = socket.create_connection((host, port), timeout=deadline.left())
    except ChannelError:
        raise
    except OSError as e:
        raise ChannelError(f"cannot connect to {host}:{port}: {e.strerror or e}") from None
    with sock:
        buffer, pending = LineBuffer(), list[bytes]()
        try:
            hello = session.receive_greeting(_read_line(sock, buffer, pending, deadline))
            sock.settimeout(deadline.left())
            sock.sendall(hello + session.request(message))
            return session.receive_reply(_read_line(sock, buffer, pending, deadline))
        except OSError as e:
            raise ChannelError(f"connection to {host}:{port} failed: {e}") from None


Handler = Callable[[Message, str], Message]


class ControlServer:
    """Serves authenticated requests on host:port; `handler(message, peer)` returns the reply."""

    def __init__(self, host: str, port: int, secret: bytes, handler: Handler, idle_timeout: float = 30.0) -> None:
        self.secret, self.handler, self.idle_timeout = secret, handler, idle_timeout
        self.sock = socket.create_server((host, port), reuse_port=False)
        self.address: tuple[str, int] = self.sock.getsockname()[:2]
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._closed = threading.Event()

    def serve_forever(self) -> None:
        while not self._closed.is_set():
            try:
                conn, addr = self.sock.accept()
            except OSError:
                if self._closed.is_set():
                    return
                raise
            if not self._slots.acquire(blocking=False):
                log.warning("refused connection from %s: %d connections already open", addr[0], MAX_CONNECTIONS)
                conn.close()
                continue
            threading.Thread(target=self._serve_one, args=(conn, f"{addr[0]}:{addr[1]}"), daemon=True).start()

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="control-server", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()

    def _serve_one(self, conn: socket.socket, peer: str) -> None:
        session = ServerSession(self.secret, secrets.token_bytes(NONCE_BYTES))
        buffer, pending = LineBuffer(), list[bytes]()
        with conn:  # log inside, so the refusal is logged before the peer sees the close
            try:
                conn.settimeout(self.idle_timeout)
                conn.sendall(session.greeting())
                session.receive_hello(_read_line(conn, buffer, pending, _Deadline(self.idle_timeout)))
                while True:
                    line = _read_line(conn, buffer, pending, _Deadline(self.idle_timeout))
                    message = session.receive_request(line)
                    reply = self.handler(message, peer)
                    conn.settimeout(self.idle_timeout)
                    conn.sendall(session.reply(reply))
            except ProtocolError as e:
                log.warning("refused message from %s: %s", peer, e)
            except ChannelError:
                pass  # the peer went away or idled out: nothing to act on
            except OSError as e:
                log.info("connection from %s ended: %s", peer, e)
            except Exception:
                log.exception("error while serving %s", peer)
            finally:
                self._slots.release()


# --------------------------------------------------------------------------------------------
# Local RPC between the daemons of one host


def local_call(path: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Send one JSON object to the daemon listening on `path` and return its JSON answer."""
    deadline = _Deadline(timeout)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with sock:
        try:
            sock.settimeout(deadline.left())
            sock.connect(path)
            sock.sendall(json.dumps(body).encode() + b"\n")
            line = _read_line(sock, LineBuffer(), [], deadline)
        except OSError as e:
            raise ChannelError(f"cannot reach the local daemon at {path}: {e.strerror or e}") from None
    try:
        answer = json.loads(line)
    except ValueError:
        raise ChannelError(f"the local daemon at {path} sent an invalid answer") from None
    if not isinstance(answer, dict):
        raise ChannelError(f"the local daemon at {path} sent an invalid answer")
    return answer


LocalHandler = Callable[[dict[str, Any]], dict[str, Any]]


class LocalServer:
    """Serves `handler(request) -> answer` on a Unix socket that only the owner may open."""

    def __init__(self, path: str, handler: LocalHandler) -> None:
        self.path, self.handler = path, handler
        if os.path.exists(path):
            os.unlink(path)  # a stale socket of a killed daemon (the pid lock proves none runs)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            self.sock.bind(path)
        finally:
            os.umask(old_umask)
        self.sock.listen(16)
        self._closed = threading.Event()

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._accept, name="local-server", daemon=True)
        thread.start()
        return thread

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve_one, args=(conn,), daemon=True).start()

    def _serve_one(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(10.0)
                line = _read_line(conn, LineBuffer(), [], _Deadline(10.0))
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise ValueError("not an object")
                answer = self.handler(request)
                conn.settimeout(10.0)
                conn.sendall(json.dumps(answer).encode()[:MAX_LINE] + b"\n")
            except (ChannelError, ProtocolError, ValueError, OSError) as e:
                log.warning("local request refused: %s", e)

    def close(self) -> None:
        self._closed.set()
        self.sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)

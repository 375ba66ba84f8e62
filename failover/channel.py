"""The socket side of failover.protocol: connect, serve, and a local RPC, with timeouts everywhere.

- `request()` sends one authenticated message over a fresh TCP connection and returns the
  authenticated reply; the whole exchange (connect, handshake, reply) fits in `timeout` seconds.
- `ControlServer` accepts connections, authenticates each request and hands it to a handler; a
  refused line is logged with the peer and the reason, and the connection is closed. It never
  reaches the handler.
- `local_call()` / `LocalServer`: JSON lines over a Unix socket between the daemons of one host
  (socketserver -> lhcd, socketserver2 -> rhcd, the CLI -> rhcd). The socket lives in the
  0700 state directory and is itself 0600, so the file system is the authentication.

Anyone who can reach the control port can open connections without the secret, so the server
bounds what they cost (issue 10): at most MAX_CONNECTIONS at once, MAX_PER_ADDRESS from one
address, and RESERVED_FOR_PREFERRED of them only for the preferred peers (the other host of the
pair). A connection must send its hello and a valid authenticated request within
`hello_timeout` (min(idle_timeout, 1 s): a legitimate client sends both at once); only then may
it idle up to `idle_timeout` between requests. When the server is full, a preferred peer's new
connection evicts the oldest unauthenticated one, a stranger's first, so SHUTDOWN_YOUR_SERVICE
gets through a flood. Refusals, cuts, bad messages and accept() errors are counted
(`counters()`) and logged through a RateLimitedLog: a flood costs about a line per second per
kind, not a line per connection. No error, of one connection or of accept() itself (EMFILE),
ends the accepting thread.

Threads, not a selector loop: a connection is served by one of MAX_CONNECTIONS worker threads,
started with the server, which keeps the blocking handler (SHUTDOWN_YOUR_SERVICE runs scripts
for seconds) simple. A fixed pool rather than a thread per connection: 500 idle connections cost
no more than 32 threads (the rest are refused at accept(), and the admitted ones are cut after
`hello_timeout`), and a connect-and-close flood does not pay a thread start per connection. An
evicted connection's worker is free again as soon as its recv() returns.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from failover.errors import FailoverError
from failover.protocol import (
    MAX_LINE,
    NONCE_BYTES,
    ClientSession,
    LineBuffer,
    Message,
    ProtocolError,
    ServerSession,
)
from failover.ratelimit import RateLimitedLog

log = logging.getLogger("failover.channel")
MAX_CONNECTIONS = 32  # open at once, all peers together: each one holds a thread
MAX_PER_ADDRESS = 8  # open at once from one address that is not a preferred peer
RESERVED_FOR_PREFERRED = 8  # of MAX_CONNECTIONS, only preferred peers may take (if there are any)
HELLO_TIMEOUT = 1.0  # the most an unauthenticated connection gets for its hello and first request
LISTEN_BACKLOG = 4096  # a flood must not fill the kernel's queue: the peer's SYN would be dropped (capped by somaxconn)
LOG_BURST = 5  # lines of one kind written at once before one per second (RateLimitedLog)
LOCAL_CONNECTIONS = 16  # local requests served at once (each waits for its answer in a thread)
ACCEPT_BACKOFF = (0.05, 1.0)  # after a failed accept(), doubling: it fails again at once otherwise


def _after_accept_error(
    error: OSError, backoff: float, closed: threading.Event, limited: RateLimitedLog, what: str
) -> float:
    """Both servers' answer to a failed accept() (EMFILE and the like leave the connection
    queued, so retrying at once would spin): log it rate-limited, wait, return the next backoff."""
    backoff = min(max(2 * backoff, ACCEPT_BACKOFF[0]), ACCEPT_BACKOFF[1])
    limited.log("accept error", logging.ERROR, "%s accept() failed: %s; retrying in %.2f s", what, error, backoff)
    closed.wait(backoff)
    return backoff


ACCEPT_WAKEUP = 1.0  # the accept loop wakes this often to write held-back log counts
COUNTERS = (
    "accepted",
    "refused_full",  # no slot left (for a stranger: only the preferred peers' slots were left)
    "refused_address",  # MAX_PER_ADDRESS already open from that address
    "evicted",  # unauthenticated, closed to make room for a preferred peer
    "hello_timeout",  # no hello and authenticated request within hello_timeout
    "idle_timeout",  # authenticated, then idle for idle_timeout
    "bad_message",  # a refused line (bad MAC, malformed, oversized)
    "closed_early",  # the peer closed before an authenticated request
    "accept_error",  # accept() itself failed (EMFILE, ENFILE, ENOBUFS)
)


class ChannelError(FailoverError):
    """The peer could not be reached or did not answer in time."""


class ChannelTimeout(ChannelError):
    """The peer did not answer in time."""


class _Deadline:
    def __init__(self, timeout: float) -> None:
        self.end = time.monotonic() + timeout

    def left(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise ChannelTimeout("timed out")
        return left


def _read_line(sock: socket.socket, buffer: LineBuffer, pending: list[bytes], deadline: _Deadline | None) -> bytes:
    """The next line; raises ChannelError on EOF or timeout, ProtocolError on an oversized line."""
    while not pending:
        if deadline is not None:
            sock.settimeout(deadline.left())
        try:
            data = sock.recv(65536)
        except TimeoutError:
            raise ChannelTimeout("timed out waiting for the peer") from None
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


def _normal(address: str) -> str:
    """An IPv4 peer of a dual-stack socket shows as ::ffff:a.b.c.d; compare it as a.b.c.d."""
    return address.removeprefix("::ffff:") if "." in address else address


def resolve_addresses(hosts: Iterable[str]) -> frozenset[str]:
    """Every address the host names or addresses resolve to (once, at start); a name that does
    not resolve is logged and left out, so a DNS failure only costs the kept slots."""
    found: set[str] = set()
    for host in hosts:
        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except OSError as e:
            log.warning("preferred peer %s does not resolve (%s): no connections kept for it", host, e)
            continue
        found.update(_normal(str(info[4][0])) for info in infos)
    return frozenset(found)


@dataclass(eq=False)
class _Connection:
    sock: socket.socket
    address: str  # the peer's address, normalized
    peer: str  # address:port, for the log and the handler
    preferred: bool
    authenticated: bool = False  # has sent a valid authenticated request: may idle, never evicted
    evicted: bool = False


class ControlServer:
    """Serves authenticated requests on host:port; `handler(message, peer)` returns the reply.

    `preferred_peers`: host names or addresses (the other host of the pair) whose connections
    may use the kept slots and evict an unauthenticated connection when the server is full."""

    def __init__(
        self,
        host: str,
        port: int,
        secret: bytes,
        handler: Handler,
        idle_timeout: float = 30.0,
        preferred_peers: Iterable[str] = (),
        hello_timeout: float | None = None,
    ) -> None:
        self.secret, self.handler, self.idle_timeout = secret, handler, idle_timeout
        self.hello_timeout = min(idle_timeout, HELLO_TIMEOUT) if hello_timeout is None else hello_timeout
        self.preferred = resolve_addresses(preferred_peers)
        self.sock = socket.create_server((host, port), reuse_port=False, backlog=LISTEN_BACKLOG)
        self.sock.settimeout(ACCEPT_WAKEUP)
        self.address: tuple[str, int] = self.sock.getsockname()[:2]
        self._lock = threading.Lock()  # guards _open and _counts
        self._open: list[_Connection] = []  # oldest first
        self._counts = dict.fromkeys(COUNTERS, 0)
        self._log = RateLimitedLog(log, interval=1.0, burst=LOG_BURST)
        self._closed = threading.Event()
        self._work: queue.SimpleQueue[_Connection | None] = queue.SimpleQueue()  # admitted, for the workers

    def counters(self) -> dict[str, int]:
        """What happened to the connections so far, by kind (COUNTERS), and how many are open."""
        with self._lock:
            return {**self._counts, "open": len(self._open)}

    def _count(self, kind: str) -> None:
        with self._lock:
            self._counts[kind] += 1

    def serve_forever(self) -> None:
        """Accept until close(). No error, of one connection or of accept() itself, ends it: a
        dead accept loop in a live daemon would hold the lock and answer no one."""
        workers = [
            threading.Thread(target=self._worker, name=f"control-conn-{i}", daemon=True) for i in range(MAX_CONNECTIONS)
        ]
        for worker in workers:
            worker.start()
        try:
            self._accept_loop()
        finally:
            for _ in workers:
                self._work.put(None)

    def _accept_loop(self) -> None:
        backoff = 0.0
        while not self._closed.is_set():
            self._log.flush()
            try:
                conn, addr = self.sock.accept()
            except TimeoutError:
                continue  # a wakeup to flush the log
            except OSError as e:
                if self._closed.is_set():
                    return
                self._count("accept_error")
                backoff = _after_accept_error(e, backoff, self._closed, self._log, "control")
                continue
            backoff = 0.0
            try:
                self._admit(conn, str(addr[0]), int(addr[1]))
            except Exception:  # a bug: it costs that connection only
                log.exception("cannot serve a connection from %s", addr[0])
                with self._lock:
                    self._open = [c for c in self._open if c.sock is not conn]
                conn.close()

    def _worker(self) -> None:
        while (conn := self._work.get()) is not None:
            self._serve_one(conn)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="control-server", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()

    def _room(self, address: str, preferred: bool) -> tuple[str | None, _Connection | None]:
        """Under the lock: (None, a connection to evict or None) if this one may be served, else
        (the refusal's counter, None)."""
        if len(self._open) >= MAX_CONNECTIONS:
            waiting = [c for c in self._open if not c.authenticated]
            victim = next((c for c in waiting if not c.preferred), waiting[0] if waiting else None)
            return (None, victim) if preferred and victim is not None else ("refused_full", None)
        if preferred:
            return None, None
        strangers = sum(not c.preferred for c in self._open)
        if self.preferred and strangers >= MAX_CONNECTIONS - RESERVED_FOR_PREFERRED:
            return "refused_full", None
        if sum(c.address == address for c in self._open) >= MAX_PER_ADDRESS:
            return "refused_address", None
        return None, None

    def _admit(self, sock: socket.socket, host: str, port: int) -> None:
        address = _normal(host)
        conn = _Connection(sock, address, f"{host}:{port}", address in self.preferred)
        with self._lock:
            refusal, victim = self._room(address, conn.preferred)
            if refusal is not None:
                self._counts[refusal] += 1
                open_now = len(self._open)
            else:
                self._counts["accepted"] += 1
                self._open.append(conn)
                if victim is not None:
                    self._counts["evicted"] += 1
                    victim.evicted = True
                    self._open.remove(victim)
                    # under the lock: its thread closes the socket only after taking it out of
                    # _open, so this never shuts down a reused descriptor
                    with contextlib.suppress(OSError):
                        victim.sock.shutdown(socket.SHUT_RDWR)
        if refusal is not None:
            if refusal == "refused_address":
                why = f"{MAX_PER_ADDRESS} already open from that address"
            else:
                why = f"{open_now} connections open" + (
                    "" if open_now >= MAX_CONNECTIONS else ", the rest kept for the peer"
                )
            self._log.log("refused", logging.WARNING, "refused connection from %s: %s", host, why)
            sock.close()
            return
        if victim is not None:
            why = f"{MAX_CONNECTIONS} connections open"
            self._log.log(
                "evicted", logging.WARNING, "evicted unauthenticated %s for %s: %s", victim.peer, conn.peer, why
            )
        self._work.put(conn)

    def _forget(self, conn: _Connection) -> None:
        with self._lock:
            if conn in self._open:
                self._open.remove(conn)
        conn.sock.close()  # after leaving _open: see _admit

    def _authenticate(self, conn: _Connection) -> bool:
        """Mark `conn` authenticated, unless it was evicted meanwhile (then it must not act)."""
        with self._lock:
            conn.authenticated = not conn.evicted
            return conn.authenticated

    def _serve_one(self, conn: _Connection) -> None:
        sock, peer = conn.sock, conn.peer
        session = ServerSession(self.secret, secrets.token_bytes(NONCE_BYTES))
        buffer, pending = LineBuffer(), list[bytes]()
        # one deadline for the greeting, the hello and the first request: trickling a byte at a
        # time (slowloris) must not extend it
        deadline = _Deadline(self.hello_timeout)
        try:  # log inside, so the refusal is logged before the peer sees the close
            sock.settimeout(deadline.left())
            sock.sendall(session.greeting())
            session.receive_hello(_read_line(sock, buffer, pending, deadline))
            while True:
                message = session.receive_request(_read_line(sock, buffer, pending, deadline))
                if not conn.authenticated and not self._authenticate(conn):
                    return  # evicted while the request came in: its answer could not be sent
                reply = self.handler(message, peer)
                sock.settimeout(self.idle_timeout)
                sock.sendall(session.reply(reply))
                deadline = _Deadline(self.idle_timeout)
        except ProtocolError as e:
            self._count("bad_message")
            self._log.log("bad message", logging.WARNING, "refused message from %s: %s", peer, e)
        except (ChannelTimeout, TimeoutError):
            if conn.authenticated:
                self._count("idle_timeout")
                self._log.log(
                    "cut", logging.INFO, "closed idle connection from %s after %.1f s", peer, self.idle_timeout
                )
            elif not conn.evicted:
                self._count("hello_timeout")
                self._log.log(
                    "cut",
                    logging.WARNING,
                    "cut connection from %s: no hello and authenticated request within %.1f s",
                    peer,
                    self.hello_timeout,
                )
        except ChannelError:
            if not conn.authenticated and not conn.evicted:
                self._count("closed_early")  # the peer went away: nothing to act on
        except OSError as e:
            if not conn.evicted:
                self._log.log("ended", logging.INFO, "connection from %s ended: %s", peer, e)
        except Exception:
            log.exception("error while serving %s", peer)
        finally:
            self._forget(conn)


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
        self._slots = threading.BoundedSemaphore(LOCAL_CONNECTIONS)
        self._log = RateLimitedLog(log, interval=1.0, burst=LOG_BURST)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._accept, name="local-server", daemon=True)
        thread.start()
        return thread

    def _accept(self) -> None:
        """Accept until closed; an accept() error must not end the daemon's local socket."""
        backoff = 0.0
        while not self._closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError as e:
                if self._closed.is_set():
                    return
                backoff = _after_accept_error(e, backoff, self._closed, self._log, "local")
                continue
            backoff = 0.0
            if not self._slots.acquire(blocking=False):  # at most LOCAL_CONNECTIONS threads at once
                self._log.log("refused", logging.WARNING, "local request refused: %d already open", LOCAL_CONNECTIONS)
                conn.close()
                continue
            threading.Thread(target=self._serve_one, args=(conn,), daemon=True).start()

    def _serve_one(self, conn: socket.socket) -> None:
        try:
            self._serve(conn)
        finally:
            self._slots.release()

    def _serve(self, conn: socket.socket) -> None:
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

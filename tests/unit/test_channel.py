"""failover/channel.py over real loopback sockets: refused input is logged and never handled."""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import failover.channel as channel
from failover.channel import MAX_CONNECTIONS, ChannelError, ControlServer, LocalServer, local_call, request
from failover.protocol import (
    MAX_LINE,
    Ack,
    ClientSession,
    LineBuffer,
    Message,
    ShutdownYourService,
    StatusRequest,
)

SECRET = b"0123456789abcdef0123456789abcdef"


@pytest.fixture
def server() -> Iterator[tuple[ControlServer, list[Message]]]:
    handled: list[Message] = []

    def handler(message: Message, peer: str) -> Message:
        handled.append(message)
        assert isinstance(message, ShutdownYourService)
        return Ack(message.term, True, f"from {peer.split(':')[0]}")

    srv = ControlServer("127.0.0.1", 0, SECRET, handler, idle_timeout=2.0)
    srv.start()
    yield srv, handled
    srv.close()


def raw(srv: ControlServer) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(srv.address, timeout=5)
    greeting = sock.recv(4096)
    return sock, greeting


def wait_closed(sock: socket.socket) -> bytes:
    sock.settimeout(5)
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def test_request_round_trip(server: tuple[ControlServer, list[Message]]) -> None:
    srv, handled = server
    reply = request(*srv.address, SECRET, ShutdownYourService(term=2, reason="test"), timeout=5)
    assert reply == Ack(2, True, "from 127.0.0.1")
    assert handled == [ShutdownYourService(term=2, reason="test")]


def test_wrong_secret_is_refused_logged_and_not_handled(
    server: tuple[ControlServer, list[Message]], caplog: pytest.LogCaptureFixture
) -> None:
    srv, handled = server
    caplog.set_level(logging.WARNING, "failover.channel")
    with pytest.raises(ChannelError, match="closed"):
        request(*srv.address, b"x" * 32, ShutdownYourService(term=2), timeout=5)
    assert handled == []
    assert any(
        "refused message from 127.0.0.1" in r.getMessage() and "bad MAC" in r.getMessage() for r in caplog.records
    )


def test_replayed_line_is_refused_on_a_new_connection(
    server: tuple[ControlServer, list[Message]], caplog: pytest.LogCaptureFixture
) -> None:
    srv, handled = server
    caplog.set_level(logging.WARNING, "failover.channel")
    # record a genuine exchange as an eavesdropper would see it
    sock, greeting = raw(srv)
    session = ClientSession(SECRET, b"\x05" * 32)
    hello = session.receive_greeting(greeting)
    line = session.request(ShutdownYourService(term=4))
    sock.sendall(hello + line)
    assert b"ACK" in sock.recv(4096)
    sock.close()
    # replay the same hello and request on a new connection: the server's challenge differs
    sock, _ = raw(srv)
    sock.sendall(hello + line)
    assert wait_closed(sock) == b""
    assert handled == [ShutdownYourService(term=4)]
    assert any("bad MAC" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "payload",
    [
        b"not json at all\n",
        b'{"seq": 1}\n',
        b"x" * (MAX_LINE + 10),
        b'{"seq":1,"body":{"type":"SHUTDOWN_YOUR_SERVICE","term":1,"reason":""},"mac":"' + b"0" * 64 + b'"}\n',
    ],
    ids=["garbage", "missing-fields", "oversized", "forged-mac"],
)
def test_malformed_input_after_a_valid_hello_is_refused(
    server: tuple[ControlServer, list[Message]], caplog: pytest.LogCaptureFixture, payload: bytes
) -> None:
    srv, handled = server
    caplog.set_level(logging.WARNING, "failover.channel")
    sock, greeting = raw(srv)
    sock.sendall(ClientSession(SECRET, b"\x06" * 32).receive_greeting(greeting) + payload)
    assert wait_closed(sock) == b""
    sock.close()
    assert handled == []
    assert any("refused message from" in r.getMessage() for r in caplog.records)


def test_connection_refused_and_silent_peer_time_out_quickly() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ChannelError, match="cannot connect"):
        request("127.0.0.1", port, SECRET, StatusRequest(), timeout=2)
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (backlog) but never says anything
    start = time.monotonic()
    with pytest.raises(ChannelError, match="timed out"):
        request("127.0.0.1", silent.getsockname()[1], SECRET, StatusRequest(), timeout=0.5)
    assert time.monotonic() - start < 3
    silent.close()


def test_local_rpc_round_trip_and_socket_mode(tmp_path: Path) -> None:
    path = str(tmp_path / "d.sock")
    srv = LocalServer(path, lambda req: {"echo": req, "pid": os.getpid()})
    srv.start()
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert local_call(path, {"type": "PING"}, timeout=5) == {"echo": {"type": "PING"}, "pid": os.getpid()}
    finally:
        srv.close()
    with pytest.raises(ChannelError, match="cannot reach the local daemon"):
        local_call(path, {"type": "PING"}, timeout=1)


def test_local_server_survives_bad_requests(tmp_path: Path) -> None:
    path = str(tmp_path / "d.sock")
    srv = LocalServer(path, lambda req: {"ok": True})
    srv.start()
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(path)
            s.sendall(b"[1,2]\n")
            assert s.recv(100) == b""
        assert local_call(path, {}, timeout=5) == {"ok": True}
    finally:
        srv.close()


class Client:
    """An authenticated connection that stays open between requests (the CLI's request() closes)."""

    def __init__(self, address: tuple[str, int], source: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection(address, timeout=10, source_address=(source, 0))
        self.session = ClientSession(SECRET, os.urandom(32))
        self.buffer, self.pending = LineBuffer(), list[bytes]()
        self.hello = self.session.receive_greeting(self._line())

    def _line(self) -> bytes:
        while not self.pending:
            data = self.sock.recv(65536)
            assert data, "the server closed the connection"
            self.pending.extend(self.buffer.feed(data))
        return self.pending.pop(0)

    def ask(self, message: Message) -> Message:
        self.sock.sendall(self.hello + self.session.request(message))
        self.hello = b""
        return self.session.receive_reply(self._line())


def ack_handler(message: Message, peer: str) -> Message:
    assert isinstance(message, ShutdownYourService)
    return Ack(message.term, True, "ok")


def connect_from(srv: ControlServer, source: str) -> tuple[socket.socket, bytes]:
    """A connection from `source` (any 127.x address is this machine) and what the server said first."""
    sock = socket.create_connection(srv.address, timeout=10, source_address=(source, 0))
    return sock, sock.recv(4096)


def closed_within(sock: socket.socket, timeout: float) -> float | None:
    """Seconds until the server closed `sock` (EOF or reset), None if still open after `timeout`."""
    start = time.monotonic()
    sock.settimeout(max(0.01, timeout))
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return None
    except OSError:
        pass  # reset: closed as well
    return time.monotonic() - start


def test_connections_beyond_the_limits_are_closed_and_the_server_recovers() -> None:
    """One address gets MAX_PER_ADDRESS connections, all addresses together MAX_CONNECTIONS."""
    srv = ControlServer("127.0.0.1", 0, SECRET, ack_handler, idle_timeout=30.0, hello_timeout=30.0)
    srv.start()
    try:
        per = channel.MAX_PER_ADDRESS
        one = [connect_from(srv, "127.0.0.1") for _ in range(per + 3)]
        assert all(a.startswith(b'{"challenge"') for _, a in one[:per])
        assert [a for _, a in one[per:]] == [b""] * 3
        many = [connect_from(srv, f"127.0.1.{i}") for i in range(MAX_CONNECTIONS + 5)]
        served = [a for _, a in many if a.startswith(b'{"challenge"')]
        assert len(served) == MAX_CONNECTIONS - per  # no preferred peers: no slots kept back
        assert srv.counters()["refused_address"] == 3 and srv.counters()["refused_full"] == per + 5
        for s, _ in one + many:
            s.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                assert request(*srv.address, SECRET, ShutdownYourService(term=9), timeout=5) == Ack(9, True, "ok")
                break
            except ChannelError:  # closed ones not yet noticed: their slots are free within moments
                time.sleep(0.05)
        else:
            raise AssertionError("the server did not recover")
    finally:
        srv.close()


def test_an_unauthenticated_connection_is_cut_within_the_short_deadline(caplog: pytest.LogCaptureFixture) -> None:
    """Silent or trickling one byte at a time (slowloris): cut after min(idle_timeout, 1 s), not 30 s."""
    caplog.set_level(logging.INFO, "failover.channel")
    srv = ControlServer("127.0.0.1", 0, SECRET, ack_handler, idle_timeout=30.0)
    srv.start()
    try:
        silent, _ = connect_from(srv, "127.0.0.1")
        slow, _ = connect_from(srv, "127.0.0.1")
        start = time.monotonic()
        slow.settimeout(0.2)
        cut_slow = None
        while cut_slow is None and time.monotonic() - start < 15:
            try:
                slow.send(b"{")
                if slow.recv(4096) == b"":
                    cut_slow = time.monotonic() - start
            except TimeoutError:
                pass
            except OSError:
                cut_slow = time.monotonic() - start
        cut_silent = closed_within(silent, 15 - (time.monotonic() - start))
        assert cut_slow is not None and cut_silent is not None, "an unauthenticated connection was held"
        print(f"cut after {cut_slow:.2f} s (trickling) and within {cut_silent:.2f} s more (silent)")
        assert srv.counters()["hello_timeout"] == 2
        assert any("no hello and authenticated request within 1.0 s" in r.getMessage() for r in caplog.records)
    finally:
        srv.close()


def test_an_authenticated_connection_may_idle_up_to_the_idle_timeout() -> None:
    srv = ControlServer("127.0.0.1", 0, SECRET, ack_handler, idle_timeout=20.0)
    srv.start()
    try:
        client = Client(srv.address)
        assert client.ask(ShutdownYourService(term=1)) == Ack(1, True, "ok")
        unauthenticated, _ = connect_from(srv, "127.0.0.1")
        idle = time.monotonic()
        assert closed_within(unauthenticated, 15) is not None  # about 1 s
        assert time.monotonic() - idle > 0.9  # the authenticated one has idled past that too
        assert client.ask(ShutdownYourService(term=2)) == Ack(2, True, "ok")
    finally:
        srv.close()


def test_the_preferred_peer_evicts_the_oldest_unauthenticated_connection_when_full(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "failover.channel")
    srv = ControlServer(
        "127.0.0.1", 0, SECRET, ack_handler, idle_timeout=30.0, hello_timeout=30.0, preferred_peers=["127.0.0.1"]
    )
    srv.start()
    try:
        authenticated = Client(srv.address)  # the oldest of all, but authenticated: never evicted
        assert authenticated.ask(ShutdownYourService(term=1)) == Ack(1, True, "ok")
        others = MAX_CONNECTIONS - channel.RESERVED_FOR_PREFERRED
        strangers = [connect_from(srv, f"127.0.2.{i}") for i in range(others)]
        assert all(a.startswith(b'{"challenge"') for _, a in strangers)
        assert connect_from(srv, "127.0.2.200")[1] == b""  # only the kept slots are left
        peers = [connect_from(srv, "127.0.0.1") for _ in range(MAX_CONNECTIONS - others - 1)]
        assert all(a.startswith(b'{"challenge"') for _, a in peers)  # the peer may take them
        assert connect_from(srv, "127.0.2.201")[1] == b""  # full
        # full: the peer's request evicts the oldest unauthenticated connection (a stranger's)
        assert request(*srv.address, SECRET, ShutdownYourService(term=2), timeout=5) == Ack(2, True, "ok")
        assert closed_within(strangers[0][0], 5) is not None
        assert closed_within(strangers[1][0], 0.2) is None and closed_within(peers[0][0], 0.2) is None
        assert authenticated.ask(ShutdownYourService(term=3)) == Ack(3, True, "ok")
        counters = srv.counters()
        assert counters["evicted"] == 1 and counters["refused_full"] == 2
        assert any("evicted" in r.getMessage() and "127.0.2.0" in r.getMessage() for r in caplog.records)
    finally:
        srv.close()


def test_a_flood_costs_one_log_line_per_second_per_kind(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "failover.channel")
    srv = ControlServer("127.0.0.1", 0, SECRET, ack_handler, idle_timeout=2.0)
    srv.start()
    try:
        start = time.monotonic()
        flood = [socket.create_connection(srv.address, timeout=10) for _ in range(300)]
        for _ in range(40):
            sock, greeting = connect_from(srv, "127.0.0.3")
            sock.sendall(ClientSession(SECRET, os.urandom(32)).receive_greeting(greeting) + b"garbage\n")
            assert closed_within(sock, 10) is not None
            sock.close()
        seconds = time.monotonic() - start
        for sock in flood:
            sock.close()
        counters = srv.counters()
        assert counters["bad_message"] == 40
        # the 300 came from one address: all but MAX_PER_ADDRESS refused (and as many again per
        # second the burst took, the admitted ones being cut after a second)
        assert counters["refused_address"] >= 300 - channel.MAX_PER_ADDRESS * (2 + int(seconds))
        refused = [r for r in caplog.records if "refused connection" in r.getMessage()]
        bad = [r for r in caplog.records if "refused message" in r.getMessage()]
        print(f"{seconds:.2f} s: {len(refused)} lines for {counters['refused_address']} refusals, {len(bad)} for 40")
        burst = channel.LOG_BURST
        assert len(refused) <= burst + seconds + 1 and len(bad) <= burst + seconds + 1
        # the flood stopped: within a few seconds one line says how many were held back
        end = time.monotonic() + 10
        while time.monotonic() < end and not any(
            "more in the last" in r.getMessage() and "bad message" in r.getMessage() for r in caplog.records
        ):
            time.sleep(0.1)
        assert any("bad message" in r.getMessage() and "more in the last" in r.getMessage() for r in caplog.records)
    finally:
        srv.close()


EMFILE_SERVER = """
import json, logging, os, resource, sys
from failover.channel import ControlServer
from failover.protocol import Ack

logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
srv = ControlServer("127.0.0.1", 0, SECRET, lambda m, p: Ack(m.term, True, "ok"), idle_timeout=5.0)
srv.start()
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(int(fd) for fd in os.listdir("/proc/self/fd")) + 1, hard))
hogs = []
while True:  # every descriptor below the limit taken: accept() fails with EMFILE
    try:
        hogs.append(os.open("/dev/null", os.O_RDONLY))
    except OSError:
        break
print(srv.address[1], flush=True)
sys.stdin.readline()  # the test connected and waited: accept() has failed for a while
for fd in hogs:
    os.close(fd)
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
sys.stdin.readline()
print(json.dumps(srv.counters()), flush=True)
"""


def test_an_accept_error_is_logged_rate_limited_and_the_server_goes_on(tmp_path: Path) -> None:
    """EMFILE from accept() (no descriptor left) must not end the control server's thread."""
    code = textwrap.dedent(EMFILE_SERVER).replace("SECRET", repr(SECRET))
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        port = int(proc.stdout.readline())
        waiting = socket.create_connection(("127.0.0.1", port), timeout=10)  # queued, not accepted
        time.sleep(1.5)
        proc.stdin.write("descriptors free again\n")
        proc.stdin.flush()
        assert waiting.recv(4096).startswith(b'{"challenge"')
        assert request("127.0.0.1", port, SECRET, ShutdownYourService(term=5), timeout=10) == Ack(5, True, "ok")
        proc.stdin.write("done\n")
        proc.stdin.flush()
        counters = json.loads(proc.stdout.readline())
        _, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
        proc.wait()
    lines = [line for line in err.splitlines() if "accept" in line]
    assert counters["accept_error"] >= 2, err
    assert 1 <= len(lines) <= channel.LOG_BURST + 3, err
    assert "Too many open files" in lines[0] and "Traceback" not in err

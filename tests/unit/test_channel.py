"""failover/channel.py over real loopback sockets: refused input is logged and never handled."""

from __future__ import annotations

import logging
import os
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from failover.channel import MAX_CONNECTIONS, ChannelError, ControlServer, LocalServer, local_call, request
from failover.protocol import MAX_LINE, Ack, ClientSession, Message, ShutdownYourService, StatusRequest

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


def test_connections_beyond_the_limit_are_closed_and_the_server_recovers(
    server: tuple[ControlServer, list[Message]],
) -> None:
    srv, _ = server
    socks = [socket.create_connection(srv.address, timeout=5) for _ in range(MAX_CONNECTIONS + 3)]
    answers = [s.recv(4096) for s in socks]
    assert all(a.startswith(b'{"challenge"') for a in answers[:MAX_CONNECTIONS])
    assert answers[MAX_CONNECTIONS:] == [b""] * 3
    for s in socks:
        s.close()
    time.sleep(0.2)
    assert request(*srv.address, SECRET, ShutdownYourService(term=9), timeout=5) == Ack(9, True, "from 127.0.0.1")

"""End to end: hostile input on the path between the hosts never stops a later failover.

The review's first finding: a fake server on the slave's control port (anyone on the path, or
any local user while socketserver2 is down: the port is unprivileged) answered heartbeats with
`"mac": "\\u00e9"`; lhcd's heartbeat thread died on the TypeError, heartbeats never resumed
after the real socketserver2 came back, and a kill -9 of the master's Dovecot gave no failover.
"""

from __future__ import annotations

import json
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from failover.lab.pair import LoopbackPair
from failover.machine import Role

MakePair = Callable[..., LoopbackPair]
M, S = Role.MASTER, Role.SLAVE


class FakeControlServer:
    """Listens on a control port and answers every request with a reply whose MAC is not hex."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_server(("127.0.0.1", port))
        self.sock.settimeout(0.2)
        self.answered = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    conn.sendall(json.dumps({"challenge": secrets.token_hex(32), "v": 1}).encode() + b"\n")
                    received = b""
                    while received.count(b"\n") < 2:  # the hello, then the request
                        data = conn.recv(65536)
                        if not data:
                            break
                        received += data
                    body = {"type": "HEARTBEAT_REPLY", "term": 0, "state": "STANDBY"}
                    conn.sendall(json.dumps({"seq": 1, "body": body, "mac": "\u00e9"}).encode() + b"\n")
                    self.answered += 1
                except OSError:
                    continue

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def heartbeat_time(pair: LoopbackPair) -> str | None:
    try:
        status = json.loads(Path(pair.dir, "state", "rhcd.status.json").read_text())
    except (OSError, ValueError):
        return None
    value = status.get("observations", {}).get("heartbeat_time")
    return str(value) if value else None


def test_a_reply_with_a_non_hex_mac_does_not_silence_the_master(make_pair: MakePair) -> None:
    pair = make_pair()
    pair.kill_daemon("socketserver2")
    fake = FakeControlServer(pair.monitor_ports[S])
    try:
        end = time.monotonic() + 20
        while fake.answered < 3 and time.monotonic() < end:
            time.sleep(0.05)
        assert fake.answered >= 3, f"lhcd sent no heartbeat to the fake server\n{pair.logs()}"
    finally:
        fake.close()
    assert "malformed seq or mac" in Path(pair.dir, "log", "lhcd.log").read_text()

    before = heartbeat_time(pair)
    pair.start_agents(S)  # socketserver2 again (rhcd still runs)
    end = time.monotonic() + 20
    while heartbeat_time(pair) == before and time.monotonic() < end:
        time.sleep(0.05)
    assert heartbeat_time(pair) != before, f"heartbeats did not resume\n{pair.logs()}"

    pair.pop3[M].kill(signal.SIGKILL)
    pair.wait_for(S, "ACTIVE", timeout=30)
    pair.wait_for(M, "INACTIVE", timeout=10)


def test_a_newline_in_an_operator_reason_forges_no_log_or_status_line(make_pair: MakePair) -> None:
    pair = make_pair()
    forged = "2026-12-01T00:00:00.000 lhcd[1] master@127.0.0.1 WARNING FORGED"
    held = pair.failover("hold", "--reason", f"kernel update\n{forged}\x1b[2J\x07")
    assert held.returncode == 0, held.stdout + held.stderr
    status = pair.failover("status")
    assert status.returncode == 0, status.stdout + status.stderr
    for text in (status.stdout, *(Path(pair.dir, "log", f"{n}.log").read_text() for n in ("lhcd", "rhcd"))):
        assert "FORGED" in text  # the reason is shown, escaped ...
        assert not any(line.startswith(forged) for line in text.splitlines())  # ... on no line of its own
        assert "\x1b" not in text and "\x07" not in text
    released = pair.failover("release")
    assert released.returncode == 0, released.stdout + released.stderr


def test_the_master_says_so_when_the_slaves_rhcd_does_not_run(make_pair: MakePair) -> None:
    # socketserver2 answers heartbeats from the state file while rhcd is down: the master must
    # not take that for a slave that watches it.
    pair = make_pair()
    pair.kill_daemon("rhcd")
    log = Path(pair.dir, "log", "lhcd.log")
    end = time.monotonic() + 20
    while "rhcd does not run: nothing would fail over" not in log.read_text() and time.monotonic() < end:
        time.sleep(0.1)
    assert "rhcd does not run: nothing would fail over" in log.read_text(), pair.logs()
    end = time.monotonic() + 20  # the status file is refreshed about once a second
    while "THE SLAVE'S rhcd DOES NOT RUN" not in (status := pair.failover("status")).stdout:
        assert time.monotonic() < end, status.stdout + status.stderr
        time.sleep(0.2)
    pair.start_agents(S)
    end = time.monotonic() + 20
    while "the slave's rhcd watches again" not in log.read_text() and time.monotonic() < end:
        time.sleep(0.1)
    assert "the slave's rhcd watches again" in log.read_text()

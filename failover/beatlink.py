"""The UDP heartbeat stream's sockets: lhcd and rhcd each send a datagram every BEAT_INTERVAL
and take the peer's (failover/heartbeat.py is the codec, the replay window and the lease's
argument; this module only moves bytes and counts).

Each end binds UDP on its own control port's number (MONITOR_PORT on the master,
MONITOR_PORT_SLAVE on the slave: the TCP control servers keep their TCP ports) and sends from
that socket, so the peer can check the source address and port. Contact is a datagram the
window accepts that says its sender hears us (failover.machine.lease.heard): with 20 a second,
a lossy or slow link still gives contact many times over before HEARTBEAT_TIMEOUT, where one
lost SYN of a TCP heartbeat cost a second. One thread per end sends and receives (`run`).

Bad datagrams (wrong source, size, magic, version, MAC, fields, replays, reflections, a new
sender not yet proven) are dropped, counted by kind and logged at most once per second per kind.
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable

from failover.config import Config
from failover.errors import FailoverError
from failover.heartbeat import (
    SIZE,
    Beat,
    DatagramError,
    Received,
    Stream,
    decode,
    encode,
    stream_key,
)
from failover.machine import Condition, NodeState, Role, State
from failover.machine.lease import grants_lease
from failover.ratelimit import RateLimitedLog

RECEIVE_WAKEUP = 0.5  # seconds: the longest wait in the socket (the stop flag is looked at between)
REPORT_EVERY = 0.1  # seconds: at most this stale is the contact the slave's decision loop knows of
MASTER_REPORT_EVERY = 0.5  # the master's, at most a quarter of ISOLATION_TIMEOUT
DROP_KINDS = ("address", "size", "magic", "version", "mac", "field", "reflected", "replayed", "unknown-sender")


class StreamError(FailoverError):
    """The stream's socket cannot be set up (a port in use, an address that is not this host's)."""


def _address(host: str, port: int) -> tuple[str, int]:
    """The first IPv4 address of `host` (the stream, like the pair's addresses, is IPv4)."""
    info = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_DGRAM)
    address = info[0][4]
    return str(address[0]), int(address[1])


class BeatLink:
    """One end of the stream. `node()` gives the agent's current state (read for each datagram);
    `on_beat(received, now)` is called for every accepted datagram, from the receiver thread."""

    def __init__(
        self,
        config: Config,
        role: Role,
        secret: bytes,
        log: logging.Logger,
        node: Callable[[], NodeState],
        on_beat: Callable[[Received, float], None],
    ) -> None:
        self.config, self.role, self.log, self.node, self.on_beat = config, role, log, node, on_beat
        self.key = stream_key(secret)
        self.stream = Stream(role, secrets.token_bytes(8), fresh=config.LEASE_TIME)
        self.started = time.monotonic()  # our predecessor granted nothing after this
        own = (config.host_of(role), config.monitor_port_of(role))
        try:
            self.peer = _address(config.host_of(role.peer), config.monitor_port_of(role.peer))
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind(_address(*own))
        except OSError as e:
            raise StreamError(
                f"heartbeat stream: cannot bind UDP {own[0]}:{own[1]} or resolve the {role.peer} "
                f"{config.host_of(role.peer)} ({e}); the stream needs the control port's number free for UDP"
            ) from e
        self._lock = threading.Lock()  # the Stream is not thread-safe: sender and receiver share it
        self._drops = RateLimitedLog(log, interval=1.0, burst=3)
        self._send_errors = RateLimitedLog(log, interval=10.0, burst=1)  # a link down: one line per 10 s
        self.counts: dict[str, int] = {"sent": 0, "received": 0, "send-error": 0, "receive-error": 0}
        self.counts |= dict.fromkeys(DROP_KINDS, 0)
        self.last_received: float | None = None  # monotonic
        self.rtt: float | None = None  # seconds from our send to the peer's acknowledgement, the newest
        # report_due(): what the last reported datagram said, and when
        # The slave judges silence from these reports, to 20 % of HEARTBEAT_TIMEOUT; the master
        # only keeps contact for its isolation rule (news, such as a claim, always goes at once).
        if role is Role.SLAVE:
            self.report_every = min(REPORT_EVERY, config.HEARTBEAT_TIMEOUT / 5)
        else:
            self.report_every = min(MASTER_REPORT_EVERY, config.ISOLATION_TIMEOUT / 4)
        self._reported: tuple[int, State, Condition, bool] | None = None
        self._reported_at = 0.0
        self._last_health = (time.monotonic(), 0, 0, 0)  # when health() was last asked; sent, received, peer seq

    def close(self) -> None:
        self.sock.close()

    # ------------------------------------------------------------------ the loop

    def run(self, stop: threading.Event) -> None:
        """One thread sends and receives: a datagram every BEAT_INTERVAL on a fixed schedule (a
        late one is not made up for), and the peer's as they come, waiting in the socket itself
        (a thread wakeup costs more than the datagram: one thread, no Event in between). The
        slave answers a datagram of the master at once when its own last one is half an interval
        old or more: the master's lease is renewed a beat sooner, and the slave's schedule follows
        the master's, so it wakes once per exchange instead of twice. The master answers at once
        too, but only the first datagram after a gap."""
        interval = self.config.BEAT_INTERVAL
        echo = self.role is Role.SLAVE
        due = time.monotonic()
        last_sent = -interval
        while not stop.is_set():
            now = time.monotonic()
            if now >= due:
                self.send_one()
                due = due + interval if due + interval > now else now + interval  # a late one is not made up for
                last_sent = now
                continue
            self.sock.settimeout(min(due - now, RECEIVE_WAKEUP))
            try:
                data, source = self.sock.recvfrom(SIZE + 1)  # one byte more: an oversized one shows
            except TimeoutError:
                self._drops.flush()
                continue
            except OSError as e:
                if stop.is_set():
                    return
                self._drop("receive-error", str(e))
                stop.wait(0.05)
                continue
            now = time.monotonic()
            previous = self.last_received
            taken = self.take(data, (str(source[0]), int(source[1])), now)
            # after a gap either end answers at once: the peer learns a beat sooner that it is
            # heard again (contact is two-way), so a short flap costs the flap, not a beat more
            after_gap = previous is None or now - previous > 2 * interval
            if (echo or after_gap) and taken is not None and now - last_sent >= interval / 2:
                self.send_one()
                last_sent, due = now, now + interval

    def send_one(self) -> None:
        node = self.node()
        condition = node.condition if self.role is Role.MASTER else Condition.UNKNOWN
        # The state is read again AFTER the acknowledgement was chosen (heartbeat.py, point 2): a
        # slave that has claimed by then grants nothing, whatever the beat acknowledges.
        with self._lock:
            beat = self.stream.next_beat(
                time.monotonic(),
                node.term,
                node.state,
                condition,
                lambda: grants_lease(self.node(), self.stream.peer_silent, self.config.HEARTBEAT_TIMEOUT),
            )
        try:
            self.sock.sendto(encode(self.key, beat), self.peer)
            self.counts["sent"] += 1
        except OSError as e:  # no route (a link down): the peer's silence tells the rest
            self.counts["send-error"] += 1
            self._send_errors.log("send-error", logging.WARNING, "heartbeat datagram to %s:%d: %s", *self.peer, e)

    # ------------------------------------------------------------------ receiving

    def take(self, data: bytes, source: tuple[str, int], now: float) -> Received | None:
        """Judge one datagram; the accepted one is handed to on_beat."""
        if source != self.peer:
            self._drop("address", f"a datagram from {source[0]}:{source[1]}, not the {self.role.peer}")
            return None
        try:
            beat = decode(self.key, data)
            with self._lock:
                received = self.stream.receive(beat, now, self.node().term)
        except DatagramError as e:
            self._drop(e.kind, str(e))
            return None
        self.counts["received"] += 1
        self.last_received = now
        if received.acked_sent_at is not None:
            self.rtt = now - received.acked_sent_at
        self.on_beat(received, now)
        return received

    def peer_silent(self) -> float:
        """How long the peer, in its newest datagram, said it had heard nothing from us."""
        with self._lock:
            return self.stream.peer_silent

    def granted_receipt(self) -> float:
        """When we accepted the newest beat we acknowledged with a grant (heartbeat.py's g),
        else when this link was made: a predecessor's grants all came before."""
        with self._lock:
            granted = self.stream.granted_at
        return self.started if granted is None else granted

    def report_due(self, beat: Beat, now: float) -> bool:
        """Whether this datagram should reach the decision loop: what it says changed, or the
        last one reported is REPORT_EVERY old. Contact is still counted to within REPORT_EVERY,
        and the loop takes a few events a second instead of one per datagram (its cost). Whether
        the peer hears us is news too: the first datagram after a gap says the peer heard nothing
        during it, and the next, which says it hears us again, must not wait REPORT_EVERY."""
        deaf = beat.silent > 2 * self.config.BEAT_INTERVAL
        said = (beat.term, beat.state, beat.condition, deaf)
        if said == self._reported and now - self._reported_at < self.report_every:
            return False
        self._reported, self._reported_at = said, now
        return True

    def _drop(self, kind: str, detail: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        # a restarted peer is unproven for one round trip: expected, not a warning
        level = logging.INFO if kind == "unknown-sender" else logging.WARNING
        self._drops.log(kind, level, "heartbeat datagram dropped (%s): %s", kind, detail)

    # ------------------------------------------------------------------ status

    def health(self, now: float) -> dict[str, object]:
        """For status (flat values: a status file holds no nested records): datagrams per second
        each way since the last call, the loss on the way here, what was dropped by kind, how long
        the newest acknowledgement took (a round trip plus the peer's wait for its next datagram),
        how long since the last datagram was accepted."""
        sent, received = self.counts["sent"], self.counts["received"]
        with self._lock:
            peer_seq = self.stream.peer_seq
        then, sent_then, received_then, seq_then = self._last_health
        self._last_health = (now, sent, received, peer_seq)
        span = now - then
        # loss on the way here: the peer numbered (peer_seq - seq_then) datagrams, we took fewer
        numbered = peer_seq - seq_then
        loss = round(max(0.0, 1 - (received - received_then) / numbered), 3) if 0 < numbered else None
        dropped = {k: self.counts[k] for k in DROP_KINDS if self.counts[k]}
        return {
            "stream_sent_per_s": round((sent - sent_then) / span, 1) if span > 0 else None,
            "stream_received_per_s": round((received - received_then) / span, 1) if span > 0 else None,
            "stream_received": received,
            "stream_loss": loss,
            "stream_dropped": ", ".join(f"{k} {n}" for k, n in dropped.items()) or "none",
            "stream_ack_ms": None if self.rtt is None else round(self.rtt * 1000, 1),
            "stream_silent_s": None if self.last_received is None else round(now - self.last_received, 3),
        }

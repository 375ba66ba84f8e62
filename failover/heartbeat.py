"""The UDP heartbeat stream between lhcd and rhcd, sans I/O: the datagram, its key, replay
protection, and the lease arithmetic. Nothing here reads a socket or a clock: callers pass bytes
and monotonic readings.

The datagram (network byte order, 79 bytes, far under one MTU, so never fragmented):

    magic "FOHB" | version u8 | sender role u8 | sender id 8 bytes | seq u64 | term u32 |
    state u8 | condition u8 | acked sender id 8 bytes | acked seq u64 | flags u8 |
    silent ms u16 | HMAC-SHA256 32

- The HMAC key is derived from SECRET_FILE with its own purpose label, so it never equals a key
  of the TCP control channel, and a datagram can never pass for a control message or back.
- The sender id is random per start of a daemon; the sequence number strictly increases. The
  receiver drops anything not newer than what it holds from that sender id (a replay, a
  duplicate, a reordered datagram), and anything claiming to come from its own role (a reflection).
- A new sender id (the peer restarted) is believed only when its datagram acknowledges one of
  our own recent datagrams (it proves that the sender hears us now: a recording cannot, since our
  sender id is new at every start and our recent sequence numbers were never recorded), or
  carries a term newer than ours. Until then its datagrams are only echoed (acknowledged), which
  completes that handshake one interval later.
- Each datagram acknowledges the newest sequence number it holds from the peer: the master
  learns which of its heartbeats the slave received, which is what its lease is built on. An
  acknowledgement renews the lease only when its datagram carries GRANTS_LEASE: the slave sets
  it only while it watches and the master hears it (`failover.machine.lease.grants_lease`),
  never once it has claimed a term, so no acknowledgement sent after the claim can extend the
  master's lease.
- "silent ms" says how long the sender has accepted nothing from the peer (65535: a minute or
  more, or never). Contact is two-way: the slave counts a datagram of the master as contact
  only from the moment the master last heard the slave (`failover.machine.lease.heard`), so a one-way cut either
  way is a loss of contact, and the same failover follows as for a cut link.

The lease (used only with a LOAD_BALANCER: it is the arbiter that both hosts can ask). Write
L = LEASE_TIME, B = the load balancer's lease (`LeaseTimes.lb_lease`), H = HARD_STOP_TIMEOUT,
m = the margin (the master's guard's scheduling slack), rho = the bound on how far either
host's monotonic clock rate may differ from real time (DRIFT), and W(x) = (x + H + m) x
(1 + rho) / (1 - rho) (`takeover_wait`).

1. The master renews its lease in two ways only, each from a moment called its base:
   a. a datagram of the slave that carries GRANTS_LEASE acknowledges one of the master's
      heartbeats: the base is the master's own send time of that heartbeat; the lease then
      runs to base + L;
   b. a read of the load balancer, begun at the base, shows the master's server not in MAINT:
      the lease runs to base + B (B is short: the master asks every B / 4 while it needs to).
   (A new lhcd also starts with a lease of B from its start, revoked by its first read of the
   load balancer if that shows MAINT; its base, the start, is before f like a read's, or it
   heard the load balancer's MAINT: failover/lease_guard.py says why that exception is needed.)
   When the lease ends (`lease_end`), the master's guard kills the service hard (within m of
   the end) and verifies it down within H. In real time the service is down
   within (x + H + m) / (1 - rho) after a base that gave x.
2. The slave, when it claims a term (real moment k), stops granting: no datagram it sends from
   then on carries GRANTS_LEASE (the sender reads the slave's state after it has computed the
   acknowledgement, so an acknowledgement sent after k names a heartbeat received before k).
   (An operator's switchover grants on until its ACK timeout, k being then, so that the master's
   graceful stop is not cut short; it fences at the load balancer only after that, or on the ACK.)
   The stream keeps g: its own receive time of the newest heartbeat it acknowledged with
   GRANTS_LEASE (a daemon that granted nothing yet takes its own start: its predecessor's
   grants all came before). The slave then fences the master at the load balancer, confirmed at
   the real moment f > k, and reads g after that.
3. A granted acknowledgement names a heartbeat that was sent before the slave received it,
   hence before g, whatever the loss, delay, duplication, reordering or one-way cut. A read of
   the load balancer that renewed was begun before f (one begun after f shows MAINT).
4. The slave starts without an ACK only when its own clock has passed both g + W(L) and f + W(B)
   (`failover.machine.lease.service_down_at`; g and f as its own readings taken at or after those moments). By 1 and 3,
   the master's service is down by then.
So the service never runs on both hosts, under any network fault, provided the clock rates stay
within rho and the master's guard runs within m of its lease's end. A master that loses the
slave keeps its lease through the load balancer, so a dead slave never stops it. A master that
reaches neither loses its lease and stops: then the slave starts only if it can fence at the
load balancer. As the slave fences about HEARTBEAT_TIMEOUT (D) after its last contact, and
B = L - D (when that is at least L / 4), f + W(B) comes about when g + W(L) does: a cut master
fails over about W(L) after its last datagram (plus how late the fence comes past D), not after
the fence plus a full lease.
`failover check` shows W(L) and W(B) with the configured numbers.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass

from failover.errors import FailoverError
from failover.machine.model import MAX_TERM, Condition, Role, State

MAGIC = b"FOHB"
VERSION = 2  # 2: the silent ms field
SENDER_BYTES = 8
_HEAD = struct.Struct("!4sBB8sQIBB8sQBH")
MAC_BYTES = 32
SIZE = _HEAD.size + MAC_BYTES
KEY_LABEL = b"failover heartbeat stream v1"
GRANTS_LEASE = 0x01  # flags: this datagram's acknowledgement renews the master's lease
SILENT_MAX_MS = 65535  # "silent ms" saturates: a minute or more, or nothing accepted yet
FRESH_ACKS = 1024  # how many of our own recent send times are kept (RTT, lease, handshake)

# Codes on the wire, written out so that reordering an enum never changes the protocol.
ROLE_CODES = {Role.MASTER: 1, Role.SLAVE: 2}
STATE_CODES = {
    State.ACTIVE: 1,
    State.STOPPING: 2,
    State.INACTIVE: 3,
    State.STANDBY: 4,
    State.SUSPECT: 5,
    State.FAILING_OVER: 6,
    State.FENCING: 7,
    State.STARTING: 8,
    State.FAILED: 9,
    State.PREPARING: 10,
    State.RESTARTING: 11,
    State.MAINTENANCE: 12,
}
CONDITION_CODES = {
    Condition.UNKNOWN: 0,
    Condition.UP: 1,
    Condition.RESTARTING: 2,
    Condition.FAILED: 3,
    Condition.STOPPED: 4,
    Condition.AGENTS_STOPPED: 5,
}
_ROLES = {v: k for k, v in ROLE_CODES.items()}
_STATES = {v: k for k, v in STATE_CODES.items()}
_CONDITIONS = {v: k for k, v in CONDITION_CODES.items()}


class DatagramError(FailoverError):
    """A datagram that is dropped. `kind` names the reason for counting and rate-limited logs:
    size, magic, version, mac, field, reflected, replayed, unknown-sender, stale-term."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def stream_key(secret: bytes) -> bytes:
    """The stream's HMAC key: the shared secret under its own purpose label."""
    return hmac.new(secret, KEY_LABEL, hashlib.sha256).digest()


@dataclass(frozen=True)
class Beat:
    """One heartbeat datagram's content."""

    role: Role  # the sender's role
    sender: bytes  # random per start of the sender
    seq: int
    term: int
    state: State
    condition: Condition
    acked_sender: bytes  # the peer's sender id this acknowledges (zeros: none yet)
    acked_seq: int
    flags: int = 0
    silent_ms: int = 0  # how long the sender had accepted nothing from the peer

    def __post_init__(self) -> None:
        if len(self.sender) != SENDER_BYTES or len(self.acked_sender) != SENDER_BYTES:
            raise ValueError(f"sender ids have {SENDER_BYTES} bytes")
        if not (0 <= self.seq < 2**64 and 0 <= self.acked_seq < 2**64):
            raise ValueError("sequence numbers are unsigned 64-bit")
        if not 0 <= self.term <= MAX_TERM:
            raise ValueError(f"term must be within 0..{MAX_TERM}")
        if not 0 <= self.flags < 256:
            raise ValueError("flags is one byte")
        if not 0 <= self.silent_ms <= SILENT_MAX_MS:
            raise ValueError("silent ms is unsigned 16-bit")

    @property
    def silent(self) -> float:
        """Seconds the sender had heard nothing from us; SILENT_MAX_MS (a minute or more, or
        never) is infinite, so that no HEARTBEAT_TIMEOUT takes it for contact."""
        return math.inf if self.silent_ms == SILENT_MAX_MS else self.silent_ms / 1000


def encode(key: bytes, beat: Beat) -> bytes:
    head = _HEAD.pack(
        MAGIC,
        VERSION,
        ROLE_CODES[beat.role],
        beat.sender,
        beat.seq,
        beat.term,
        STATE_CODES[beat.state],
        CONDITION_CODES[beat.condition],
        beat.acked_sender,
        beat.acked_seq,
        beat.flags,
        beat.silent_ms,
    )
    return head + hmac.new(key, head, hashlib.sha256).digest()


def decode(key: bytes, data: bytes) -> Beat:
    """The authenticated content of a datagram; DatagramError for anything else."""
    if len(data) >= 5 and data[:4] == MAGIC and data[4] != VERSION:  # a peer of another version
        raise DatagramError("version", f"version {data[4]}, not {VERSION}: the peer runs another failover")
    if len(data) != SIZE:
        raise DatagramError("size", f"{len(data)} bytes, not {SIZE}")
    head, mac = data[: _HEAD.size], data[_HEAD.size :]
    if head[:4] != MAGIC:
        raise DatagramError("magic", "not a heartbeat datagram")
    if not hmac.compare_digest(mac, hmac.new(key, head, hashlib.sha256).digest()):
        raise DatagramError("mac", "bad MAC: forged, altered, or signed with another secret")
    _, _, role, sender, seq, term, state, condition, acked_sender, acked_seq, flags, silent = _HEAD.unpack(head)
    if role not in _ROLES or state not in _STATES or condition not in _CONDITIONS or term > MAX_TERM:
        raise DatagramError("field", f"unknown role {role}, state {state}, condition {condition} or term {term}")
    return Beat(
        _ROLES[role], sender, seq, term, _STATES[state], _CONDITIONS[condition], acked_sender, acked_seq, flags, silent
    )


@dataclass(frozen=True)
class Received:
    """What one accepted datagram tells: the peer's beat, and when we had sent the datagram of
    ours it acknowledges (None: it acknowledges nothing we still know), for the lease and RTT."""

    beat: Beat
    acked_sent_at: float | None


class Stream:
    """One end of the stream: numbers our datagrams, remembers their send times, and judges the
    peer's (replay window and handshake, see the module docstring). Not thread-safe: one owner."""

    def __init__(self, role: Role, sender: bytes, fresh: float) -> None:
        """`fresh`: how recent (seconds) a datagram of ours must be for the peer's acknowledgement
        of it to prove that a new sender id hears us now (LEASE_TIME: a recording younger than
        that says nothing older than the lease itself)."""
        if len(sender) != SENDER_BYTES or sender == bytes(SENDER_BYTES):
            raise ValueError(f"a sender id is {SENDER_BYTES} random bytes, not zeros")
        self.role, self.sender, self.fresh = role, sender, fresh
        self._seq = 0
        self._sent: dict[int, float] = {}  # our seq -> monotonic send time (the newest FRESH_ACKS)
        self.peer_sender: bytes | None = None  # the believed sender id of the peer
        self.peer_seq = 0  # the newest seq accepted from it
        self.peer_seq_at: float | None = None  # when we accepted it (monotonic)
        self.peer_silent = math.inf  # what its newest datagram said of its silence (nothing yet: never)
        self.granted_at: float | None = None  # when we accepted the newest beat we acknowledged with a grant
        self._candidate: tuple[bytes, int] | None = None  # a new sender id we echo but do not believe yet

    def next_beat(
        self, now: float, term: int, state: State, condition: Condition, grant: Callable[[], bool] = lambda: False
    ) -> Beat:
        """Our next datagram's content; `now` is remembered as its send time. `grant()`, asked
        AFTER the acknowledgement is chosen (point 2 above): whether this acknowledgement renews
        the peer's lease (the slave, while it watches and has claimed nothing); a grant of the
        believed peer's beat is remembered in `granted_at` (point 2's g)."""
        self._seq += 1
        self._sent[self._seq] = now
        self._sent.pop(self._seq - FRESH_ACKS, None)
        acked_sender, acked_seq = self._acknowledged()
        flags = 0
        if grant():
            flags = GRANTS_LEASE
            if acked_sender == self.peer_sender and acked_seq == self.peer_seq:
                self.granted_at = self.peer_seq_at
            elif self._candidate is not None:  # echoing a newcomer: what it acknowledges came by now
                self.granted_at = now
        if self.peer_seq_at is None:
            silent_ms = SILENT_MAX_MS
        else:
            silent_ms = min(SILENT_MAX_MS, max(0, round((now - self.peer_seq_at) * 1000)))
        return Beat(
            self.role, self.sender, self._seq, term, state, condition, acked_sender, acked_seq, flags, silent_ms
        )

    def _acknowledged(self) -> tuple[bytes, int]:
        if self._candidate is not None:  # echo the newcomer so that it can prove it hears us
            return self._candidate
        if self.peer_sender is not None:
            return self.peer_sender, self.peer_seq
        return bytes(SENDER_BYTES), 0

    def sent_at(self, seq: int) -> float | None:
        return self._sent.get(seq)

    def receive(self, beat: Beat, now: float, known_term: int) -> Received:
        """Judge an authenticated beat received at `now`; DatagramError when it must be dropped."""
        if beat.role is self.role:
            raise DatagramError("reflected", f"a datagram from our own role {beat.role}")
        acked = self._sent.get(beat.acked_seq) if beat.acked_sender == self.sender else None
        if beat.sender != self.peer_sender:
            proves = acked is not None and now - acked <= self.fresh
            if not (proves or beat.term > known_term):
                if self._candidate is None or beat.seq > self._candidate[1] or beat.sender != self._candidate[0]:
                    self._candidate = (beat.sender, beat.seq)
                raise DatagramError("unknown-sender", "a new sender id, not yet proven fresh: echoing it")
            self.peer_sender = beat.sender
        elif beat.seq <= self.peer_seq:
            raise DatagramError("replayed", f"seq {beat.seq} is not newer than {self.peer_seq}")
        # accepted: a candidate that never proved itself (a stale or replayed datagram of an
        # earlier start) must not keep taking the acknowledgements from the believed peer
        self.peer_seq, self._candidate = beat.seq, None
        self.peer_seq_at, self.peer_silent = now, beat.silent
        return Received(beat, acked)


# --------------------------------------------------------------------------------------------
# The lease arithmetic (see the module docstring for the argument)


@dataclass(frozen=True)
class LeaseTimes:
    """LEASE_TIME, HARD_STOP_TIMEOUT, the load balancer's lease, the clock-rate bound and the
    scheduling margin (seconds). `for_config` derives the last three."""

    lease: float
    hard_stop: float
    lb_lease: float = 0.0  # 0: the lease itself
    drift: float = 0.01  # rho: each monotonic clock within 1 % of real time
    margin: float = 0.1  # the master's guard acts within this of its lease's end (slack included)

    def __post_init__(self) -> None:
        if not (self.lease > 0 and self.hard_stop > 0 and 0 <= self.drift < 0.5 and self.margin >= 0):
            raise ValueError(f"bad lease times {self}")
        if not 0 <= self.lb_lease <= self.lease:
            raise ValueError(f"the load balancer's lease must be within 0..LEASE_TIME, got {self.lb_lease}")
        if self.lb_lease == 0:
            object.__setattr__(self, "lb_lease", self.lease)

    @classmethod
    def for_config(cls, lease: float, hard_stop: float, heartbeat_timeout: float) -> LeaseTimes:
        """B = LEASE_TIME - HEARTBEAT_TIMEOUT (the slave fences no sooner after its last contact,
        so a longer B would only delay its start), at least a quarter of LEASE_TIME; the margin
        (the guard thread wakes at the lease's end: the margin is its wakeup's lateness) a
        twentieth of LEASE_TIME, within 0.02..0.1 s."""
        margin = min(0.1, max(0.02, lease / 20))
        return cls(lease, hard_stop, max(lease - heartbeat_timeout, lease / 4), margin=margin)


def lease_end(base: float, times: LeaseTimes, by_load_balancer: bool = False) -> float:
    """Master: the monotonic time its lease ends, given a renewal's base (the send time of the
    newest acknowledged heartbeat, or the start of a read of the load balancer)."""
    return base + (times.lb_lease if by_load_balancer else times.lease)


def takeover_wait(times: LeaseTimes, by_load_balancer: bool = False) -> float:
    """Slave: W(L), or W(B) for the load balancer: how long after its last grant (after the load
    balancer confirmed the master's server MAINT) it must wait to start without an ACK."""
    held = times.lb_lease if by_load_balancer else times.lease
    return (held + times.hard_stop + times.margin) * (1 + times.drift) / (1 - times.drift)

"""failover/heartbeat.py: the datagram codec, the replay window, sender-id changes, the lease."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from failover.heartbeat import (
    SIZE,
    Beat,
    DatagramError,
    LeaseTimes,
    Stream,
    decode,
    encode,
    lease_end,
    stream_key,
    takeover_at,
    takeover_wait,
)
from failover.machine.model import MAX_TERM, Condition, Role, State

SECRET = b"0123456789abcdef0123456789abcdef"
KEY = stream_key(SECRET)
M, S = Role.MASTER, Role.SLAVE


def beat(**kw: object) -> Beat:
    fields: dict[str, object] = dict(
        role=M,
        sender=b"m" * 8,
        seq=1,
        term=3,
        state=State.ACTIVE,
        condition=Condition.UP,
        acked_sender=bytes(8),
        acked_seq=0,
    )
    return Beat(**{**fields, **kw})  # type: ignore[arg-type]


def test_round_trip_and_size() -> None:
    b = beat(seq=2**64 - 1, term=MAX_TERM, acked_sender=b"s" * 8, acked_seq=7)
    data = encode(KEY, b)
    assert len(data) == SIZE < 512
    assert decode(KEY, data) == b


def test_the_stream_key_is_not_the_secret_nor_a_control_key() -> None:
    assert KEY != SECRET and KEY != hmac.new(SECRET, b"failover-v1|", hashlib.sha256).digest()
    assert len(KEY) == 32


@pytest.mark.parametrize(
    ("damage", "kind"),
    [
        (lambda d: d[:-1], "size"),
        (lambda d: d + b"x", "size"),
        (lambda d: b"XXXX" + d[4:], "magic"),
        (lambda d: d[:10] + bytes([d[10] ^ 1]) + d[11:], "mac"),
        (lambda d: d[:-1] + bytes([d[-1] ^ 1]), "mac"),
    ],
)
def test_damaged_datagrams_are_refused_by_kind(damage: object, kind: str) -> None:
    with pytest.raises(DatagramError) as e:
        decode(KEY, damage(encode(KEY, beat())))  # type: ignore[operator]
    assert e.value.kind == kind


def test_another_secret_is_refused() -> None:
    with pytest.raises(DatagramError) as e:
        decode(stream_key(b"x" * 32), encode(KEY, beat()))
    assert e.value.kind == "mac"


def test_a_signed_datagram_with_an_unknown_code_is_refused() -> None:
    head = bytearray(encode(KEY, beat())[:-32])
    head[4] = 2  # version
    with pytest.raises(DatagramError, match="version"):
        decode(KEY, bytes(head) + hmac.new(KEY, bytes(head), hashlib.sha256).digest())
    head[4] = 1
    head[26] = 99  # the state code: after magic 4, version 1, role 1, sender 8, seq 8, term 4
    with pytest.raises(DatagramError) as e:
        decode(KEY, bytes(head) + hmac.new(KEY, bytes(head), hashlib.sha256).digest())
    assert e.value.kind == "field"


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_fuzz_any_bytes_are_refused_with_a_datagram_error(data: bytes) -> None:
    with pytest.raises(DatagramError):
        decode(KEY, data)


@settings(max_examples=300)
@given(st.binary(min_size=SIZE - 32, max_size=SIZE - 32))
def test_fuzz_any_signed_head_decodes_or_is_refused_by_field(head: bytes) -> None:
    data = head + hmac.new(KEY, head, hashlib.sha256).digest()
    try:
        b = decode(KEY, data)
    except DatagramError as e:
        assert e.kind in ("magic", "version", "field")
        return
    assert encode(KEY, b) == data


# ---------------------------------------------------------------------------- the stream


def handshake(master: Stream, slave: Stream, now: float = 1.0) -> None:
    """Both ends exchange datagrams until each believes the other."""
    for _ in range(3):
        for a, b in ((master, slave), (slave, master)):
            with contextlib.suppress(DatagramError):  # the first ones are only echoed
                b.receive(a.next_beat(now, 0, State.ACTIVE if a.role is M else State.STANDBY, Condition.UP), now, 0)
    assert master.peer_sender == slave.sender and slave.peer_sender == master.sender


def test_two_fresh_ends_believe_each_other_after_one_echo() -> None:
    master, slave = Stream(M, b"m" * 8, fresh=1.0), Stream(S, b"s" * 8, fresh=1.0)
    first = master.next_beat(0.0, 0, State.ACTIVE, Condition.UP)
    with pytest.raises(DatagramError) as e:
        slave.receive(first, 0.0, 0)
    assert e.value.kind == "unknown-sender"
    echo = slave.next_beat(0.1, 0, State.STANDBY, Condition.UNKNOWN)
    assert (echo.acked_sender, echo.acked_seq) == (b"m" * 8, 1)  # the slave echoes the newcomer
    got = master.receive(echo, 0.1, 0)  # the echo proves the slave hears the master now
    assert master.peer_sender == b"s" * 8 and got.acked_sent_at == 0.0
    slave.receive(master.next_beat(0.2, 0, State.ACTIVE, Condition.UP), 0.2, 0)
    assert slave.peer_sender == b"m" * 8


def test_replayed_duplicated_and_reordered_datagrams_are_dropped() -> None:
    master, slave = Stream(M, b"m" * 8, fresh=1.0), Stream(S, b"s" * 8, fresh=1.0)
    handshake(master, slave)
    old, new = (master.next_beat(2.0, 0, State.ACTIVE, Condition.UP) for _ in range(2))
    slave.receive(new, 2.0, 0)
    for dropped in (old, new):
        with pytest.raises(DatagramError) as e:
            slave.receive(dropped, 2.1, 0)
        assert e.value.kind == "replayed"


def test_a_reflected_datagram_is_dropped() -> None:
    master = Stream(M, b"m" * 8, fresh=1.0)
    with pytest.raises(DatagramError) as e:
        master.receive(master.next_beat(0, 0, State.ACTIVE, Condition.UP), 0, 0)
    assert e.value.kind == "reflected"


def test_a_recording_of_a_peer_before_our_restart_is_never_believed() -> None:
    master, slave = Stream(M, b"m" * 8, fresh=1.0), Stream(S, b"s" * 8, fresh=1.0)
    handshake(master, slave)
    recorded = slave.next_beat(1.5, 0, State.STANDBY, Condition.UNKNOWN)
    restarted = Stream(M, b"M" * 8, fresh=1.0)  # a new sender id at every start
    restarted.next_beat(2.0, 0, State.ACTIVE, Condition.UP)
    with pytest.raises(DatagramError) as e:
        restarted.receive(recorded, 2.0, 0)
    assert e.value.kind == "unknown-sender" and restarted.peer_sender is None


def test_a_recording_of_the_peers_earlier_run_is_believed_only_while_fresh() -> None:
    master, slave = Stream(M, b"m" * 8, fresh=1.0), Stream(S, b"s" * 8, fresh=1.0)
    handshake(master, slave, now=1.0)
    recorded = slave.next_beat(1.0, 0, State.STANDBY, Condition.UNKNOWN)  # acks a master beat of t=1.0
    with pytest.raises(DatagramError) as e:
        master.receive(dataclasses.replace(recorded, sender=b"X" * 8), 5.0, 0)  # 4 s later: stale proof
    assert e.value.kind == "unknown-sender"


def test_a_new_sender_with_a_newer_term_is_believed_at_once() -> None:
    master = Stream(M, b"m" * 8, fresh=1.0)
    claim = Beat(S, b"s" * 8, 1, 4, State.FAILING_OVER, Condition.UNKNOWN, bytes(8), 0)
    assert master.receive(claim, 1.0, known_term=3).beat.term == 4
    assert master.peer_sender == b"s" * 8


def test_acknowledgements_give_the_send_time_of_the_acked_datagram() -> None:
    master, slave = Stream(M, b"m" * 8, fresh=1.0), Stream(S, b"s" * 8, fresh=1.0)
    handshake(master, slave, now=1.0)
    sent = [master.next_beat(2.0 + i / 10, 0, State.ACTIVE, Condition.UP) for i in range(3)]
    slave.receive(sent[1], 2.15, 0)  # sent[0] lost, sent[2] still in flight
    got = master.receive(slave.next_beat(2.2, 0, State.STANDBY, Condition.UNKNOWN), 2.25, 0)
    assert got.acked_sent_at == pytest.approx(2.1)


@settings(max_examples=300)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 5)), max_size=60))
def test_fuzz_the_receiver_never_accepts_an_old_or_repeated_seq(plan: list[tuple[bool, int]]) -> None:
    """Whatever mix of new, lost, duplicated and reordered datagrams: each seq is accepted at
    most once, and accepted seqs strictly increase."""
    master, slave = Stream(M, b"m" * 8, fresh=100.0), Stream(S, b"s" * 8, fresh=100.0)
    handshake(master, slave)
    sent: list[Beat] = []
    accepted: list[int] = []
    for send_new, back in plan:
        if send_new or not sent:
            sent.append(master.next_beat(1.0, 0, State.ACTIVE, Condition.UP))
        candidate = sent[-1 - min(back, len(sent) - 1)]
        try:
            accepted.append(slave.receive(candidate, 1.0, 0).beat.seq)
        except DatagramError as e:
            assert e.kind == "replayed"
    assert accepted == sorted(set(accepted))


# ---------------------------------------------------------------------------- the lease


def test_lease_arithmetic() -> None:
    times = LeaseTimes(lease=0.6, hard_stop=0.15, drift=0.01, margin=0.05)
    assert lease_end(10.0, times) == pytest.approx(10.6)
    assert takeover_wait(times) == pytest.approx(0.8 * 1.01 / 0.99)
    assert takeover_at(20.0, times) == pytest.approx(20.0 + takeover_wait(times))
    with pytest.raises(ValueError):
        LeaseTimes(lease=0, hard_stop=1)


@settings(max_examples=500)
@given(
    lease=st.floats(0.1, 30),
    hard_stop=st.floats(0.01, 10),
    drift=st.floats(0, 0.05),
    sent=st.floats(0, 1e6),
    delay=st.floats(0, 10),
    master_rate=st.floats(-1, 1),
    slave_rate=st.floats(-1, 1),
)
def test_the_slave_never_starts_before_the_master_stopped(
    lease: float, hard_stop: float, drift: float, sent: float, delay: float, master_rate: float, slave_rate: float
) -> None:
    """The docstring's argument in numbers: for any delay of the acknowledged heartbeat and any
    clock rates within the drift bound, the slave's start (real time) comes after the master's
    service is down (real time)."""
    times = LeaseTimes(lease, hard_stop, drift, margin=0.0)
    m_rate, s_rate = 1 + master_rate * drift, 1 + slave_rate * drift  # clock seconds per real second
    fenced = sent + delay  # real time: the lease's base comes before the fence's confirmation
    master_down = sent + (lease + hard_stop) / m_rate  # its clock runs lease + hard_stop
    slave_starts = fenced + takeover_wait(times) / s_rate
    assert slave_starts >= master_down - 1e-9 * max(1.0, sent)

"""failover/heartbeat.py: the datagram codec, the replay window, sender-id changes, the lease."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from failover.heartbeat import (
    GRANTS_LEASE,
    MAGIC,
    SILENT_MAX_MS,
    SIZE,
    VERSION,
    Beat,
    DatagramError,
    LeaseTimes,
    Stream,
    decode,
    encode,
    lease_end,
    stream_key,
    takeover_wait,
)
from failover.machine.lease import service_down_at
from failover.machine.model import MAX_TERM, Condition, Policy, Role, State

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
    b = beat(seq=2**64 - 1, term=MAX_TERM, acked_sender=b"s" * 8, acked_seq=7, flags=GRANTS_LEASE, silent_ms=1234)
    data = encode(KEY, b)
    assert len(data) == SIZE == 79 and data[4] == VERSION == 2  # 47 bytes of head, 32 of MAC
    assert decode(KEY, data) == b and decode(KEY, data).silent == pytest.approx(1.234)


@pytest.mark.parametrize("silent_ms", [0, 1, 999, SILENT_MAX_MS - 1, SILENT_MAX_MS])
def test_silent_ms_survives_the_wire_to_its_saturation(silent_ms: int) -> None:
    got = decode(KEY, encode(KEY, beat(silent_ms=silent_ms)))
    # the saturated value means "a minute or more, or never": no timeout may take it for contact
    assert got.silent_ms == silent_ms and got.silent == (math.inf if silent_ms == SILENT_MAX_MS else silent_ms / 1000)


@pytest.mark.parametrize("silent_ms", [-1, SILENT_MAX_MS + 1])
def test_silent_ms_beyond_16_bits_is_refused(silent_ms: int) -> None:
    with pytest.raises(ValueError, match="silent"):
        beat(silent_ms=silent_ms)


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
    head[4] = VERSION + 1
    with pytest.raises(DatagramError) as e:
        decode(KEY, bytes(head) + hmac.new(KEY, bytes(head), hashlib.sha256).digest())
    assert e.value.kind == "version"
    head[4] = VERSION
    head[26] = 99  # the state code: after magic 4, version 1, role 1, sender 8, seq 8, term 4
    with pytest.raises(DatagramError) as e:
        decode(KEY, bytes(head) + hmac.new(KEY, bytes(head), hashlib.sha256).digest())
    assert e.value.kind == "field"


def version_1(key: bytes = KEY) -> bytes:
    """A datagram of the previous version: no silent ms, 76 bytes, signed with our key."""
    head = struct.pack("!4sBB8sQIBB8sQB", MAGIC, 1, 1, b"m" * 8, 5, 3, 1, 1, b"s" * 8, 4, GRANTS_LEASE)
    return head + hmac.new(key, head, hashlib.sha256).digest()


def test_a_peer_of_the_previous_version_is_refused_as_a_version_not_a_size() -> None:
    old = version_1()
    assert len(old) == SIZE - 2
    for data in (old, version_1(stream_key(b"x" * 32)), old[:5], old + bytes(10)):  # whatever it is signed with
        with pytest.raises(DatagramError) as e:
            decode(KEY, data)
        assert e.value.kind == "version" and "version 1" in str(e.value)


def test_our_version_in_the_wrong_size_is_refused_by_size() -> None:
    data = encode(KEY, beat())
    for damaged in (data[:5], data[:-2], data + b"xy"):
        with pytest.raises(DatagramError) as e:
            decode(KEY, damaged)
        assert e.value.kind == "size"
    with pytest.raises(DatagramError) as e:
        decode(KEY, MAGIC)  # too short to carry a version at all
    assert e.value.kind == "size"


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


def test_silent_ms_says_how_long_we_accepted_nothing_from_the_peer() -> None:
    master, slave = Stream(M, b"m" * 8, fresh=100.0), Stream(S, b"s" * 8, fresh=100.0)
    assert master.next_beat(0.0, 0, State.ACTIVE, Condition.UP).silent_ms == SILENT_MAX_MS  # nothing yet
    handshake(master, slave, now=1.0)
    slave.receive(master.next_beat(2.0, 0, State.ACTIVE, Condition.UP), 2.0, 0)
    master.receive(slave.next_beat(2.0, 0, State.STANDBY, Condition.UNKNOWN), 2.0, 0)  # accepted at 2.0
    said = [master.next_beat(now, 0, State.ACTIVE, Condition.UP).silent_ms for now in (2.0, 3.2344, 67.535, 67.536)]
    assert said == [0, 1234, SILENT_MAX_MS, SILENT_MAX_MS]  # saturated from 65.535 s on
    assert master.next_beat(1e6, 0, State.ACTIVE, Condition.UP).silent_ms == SILENT_MAX_MS
    assert master.next_beat(1.5, 0, State.ACTIVE, Condition.UP).silent_ms == 0  # a reading before it: never negative


def test_granted_at_is_the_receive_time_of_the_beat_acknowledged_with_a_grant() -> None:
    master, slave = Stream(M, b"m" * 8, fresh=100.0), Stream(S, b"s" * 8, fresh=100.0)
    handshake(master, slave, now=1.0)
    assert slave.granted_at is None  # the handshake granted nothing
    slave.receive(master.next_beat(2.0, 0, State.ACTIVE, Condition.UP), 2.05, 0)
    plain = slave.next_beat(2.1, 0, State.STANDBY, Condition.UNKNOWN, grant=lambda: False)
    assert plain.flags == 0 and slave.granted_at is None
    granted = slave.next_beat(2.2, 0, State.STANDBY, Condition.UNKNOWN, grant=lambda: True)
    assert granted.flags == GRANTS_LEASE and slave.granted_at == 2.05  # its receipt, not our send time
    slave.receive(master.next_beat(2.3, 0, State.ACTIVE, Condition.UP), 2.35, 0)
    slave.next_beat(2.4, 0, State.FAILING_OVER, Condition.UNKNOWN, grant=lambda: False)  # claimed: no grant
    assert slave.granted_at == 2.05
    assert master.receive(plain, 2.5, 0).acked_sent_at == 2.0  # the plain one acknowledges too, renewing nothing


def test_granting_while_echoing_a_restarted_peer_records_the_echo_itself() -> None:
    """A newcomer's beat is not believed yet, so its receipt is not kept: the echo's own time is
    taken (what the newcomer acknowledges was received by then)."""
    master, slave = Stream(M, b"m" * 8, fresh=100.0), Stream(S, b"s" * 8, fresh=100.0)
    handshake(master, slave, now=1.0)
    restarted = Stream(M, b"n" * 8, fresh=100.0)
    with pytest.raises(DatagramError):
        slave.receive(restarted.next_beat(2.0, 0, State.ACTIVE, Condition.UP), 2.05, 0)
    echo = slave.next_beat(2.2, 0, State.STANDBY, Condition.UNKNOWN, grant=lambda: True)
    assert (echo.acked_sender, echo.acked_seq) == (b"n" * 8, 1) and echo.flags == GRANTS_LEASE
    assert slave.granted_at == 2.2
    assert restarted.receive(echo, 2.25, 0).acked_sent_at == 2.0  # the new master renews from it


def test_peer_silent_follows_the_peers_newest_accepted_datagram() -> None:
    master, slave = Stream(M, b"m" * 8, fresh=100.0), Stream(S, b"s" * 8, fresh=100.0)
    assert slave.peer_silent == math.inf and slave.peer_seq_at is None  # heard nothing yet
    handshake(master, slave, now=1.0)
    older, newer = (
        dataclasses.replace(master.next_beat(2.0, 0, State.ACTIVE, Condition.UP), silent_ms=ms) for ms in (700, 40)
    )
    slave.receive(newer, 2.1, 0)
    assert slave.peer_silent == pytest.approx(0.04) and slave.peer_seq_at == 2.1
    for dropped in (older, newer):  # reordered, replayed: not what the master says now
        with pytest.raises(DatagramError):
            slave.receive(dropped, 2.2, 0)
    assert slave.peer_silent == pytest.approx(0.04) and slave.peer_seq_at == 2.1
    stranger = Stream(M, b"x" * 8, fresh=100.0).next_beat(2.3, 0, State.ACTIVE, Condition.UP)  # silent: never
    with pytest.raises(DatagramError):
        slave.receive(stranger, 2.3, 0)  # an unproven sender id says nothing of the master we believe
    assert slave.peer_silent == pytest.approx(0.04)
    slave.receive(dataclasses.replace(master.next_beat(2.4, 0, State.ACTIVE, Condition.UP), silent_ms=900), 2.45, 0)
    assert slave.peer_silent == pytest.approx(0.9) and slave.peer_seq_at == 2.45


# ---------------------------------------------------------------------------- the lease


def test_lease_arithmetic() -> None:
    times = LeaseTimes(lease=0.6, hard_stop=0.15, lb_lease=0.2, drift=0.01, margin=0.05)
    assert lease_end(10.0, times) == pytest.approx(10.6)
    assert lease_end(10.0, times, by_load_balancer=True) == pytest.approx(10.2)
    assert takeover_wait(times) == pytest.approx(0.8 * 1.01 / 0.99)
    assert takeover_wait(times, by_load_balancer=True) == pytest.approx(0.4 * 1.01 / 0.99)
    assert LeaseTimes(lease=0.6, hard_stop=0.15).lb_lease == 0.6  # 0: the lease itself
    with pytest.raises(ValueError):
        LeaseTimes(lease=0, hard_stop=1)
    with pytest.raises(ValueError, match="load balancer"):
        LeaseTimes(lease=0.6, hard_stop=0.15, lb_lease=0.7)  # longer than the lease


@pytest.mark.parametrize(
    ("lease", "timeout", "lb_lease", "margin"),
    [
        (1.5, 1.0, 0.5, 0.075),  # the shipped defaults: B = L - D
        (1.0, 0.9, 0.25, 0.05),  # L - D = 0.1 is under L / 4
        (4.0, 5.0, 1.0, 0.1),  # D > L: a quarter; the margin at most 0.1
        (0.2, 0.05, 0.15, 0.02),  # the margin at least 0.02
    ],
)
def test_the_configs_lease_times(lease: float, timeout: float, lb_lease: float, margin: float) -> None:
    times = LeaseTimes.for_config(lease, 0.5, timeout)
    assert (times.lease, times.hard_stop, times.drift) == (lease, 0.5, 0.01)
    assert times.lb_lease == pytest.approx(lb_lease) and times.margin == pytest.approx(margin)


def test_the_service_is_down_after_both_waits() -> None:
    p = Policy(takeover_wait=2.0, lb_takeover_wait=1.0)
    assert service_down_at(p, fenced=10.0, granted=9.5) == 11.5  # the last grant's wait is the later one
    assert service_down_at(p, fenced=10.0, granted=8.0) == 11.0  # the fence's
    assert service_down_at(p, fenced=10.0, granted=None) == 12.0  # unknown: taken as the fence itself
    assert service_down_at(p, fenced=10.0, granted=10.5) == 12.0  # never later than the fence
    with pytest.raises(ValueError):
        Policy(takeover_wait=2.0)  # both waits, or neither


@settings(max_examples=500)
@given(
    lease=st.floats(0.1, 30),
    lb_share=st.floats(0.01, 1),
    hard_stop=st.floats(0.01, 10),
    drift=st.floats(0, 0.05),
    sent=st.floats(0, 1e6),
    delay=st.floats(0, 10),
    grant_to_fence=st.floats(0, 10),
    read_before_fence=st.floats(0, 10),
    master_rate=st.floats(-1, 1),
    slave_rate=st.floats(-1, 1),
)
def test_the_slave_never_starts_before_the_master_stopped(
    lease: float,
    lb_share: float,
    hard_stop: float,
    drift: float,
    sent: float,
    delay: float,
    grant_to_fence: float,
    read_before_fence: float,
    master_rate: float,
    slave_rate: float,
) -> None:
    """The docstring's argument in numbers: for any delay of the acknowledged heartbeat (sent at
    `sent`, received at g), any fence after g, any read of the load balancer begun before the
    fence, and any clock rates within the drift bound, the slave's start (real time) comes after
    the master's service is down (real time) from either base."""
    times = LeaseTimes(lease, hard_stop, lease * lb_share, drift, margin=0.0)
    m_rate, s_rate = 1 + master_rate * drift, 1 + slave_rate * drift  # clock seconds per real second
    granted = sent + delay  # real: the slave received the heartbeat it acknowledged with its last grant
    fenced = granted + grant_to_fence  # real: the claim stopped the grants, then the fence
    read = fenced - read_before_fence  # real: the master's last read of the load balancer that renewed
    master_down = max(sent + (lease + hard_stop) / m_rate, read + (times.lb_lease + hard_stop) / m_rate)
    policy = Policy(takeover_wait=takeover_wait(times), lb_takeover_wait=takeover_wait(times, by_load_balancer=True))
    slave_starts = service_down_at(policy, fenced * s_rate, granted * s_rate) / s_rate  # its clock: s_rate x real
    assert slave_starts >= master_down - 1e-9 * max(1.0, sent)

"""The lease argument of failover/heartbeat.py's docstring, checked by a discrete-event simulation.

Real time is the simulation's time; each host reads a monotonic clock offset + rate x real time
with its rate within [1 - rho, 1 + rho]. The master and the slave each send a real heartbeat
datagram (failover.heartbeat: Stream, encode, decode, the replay window and the handshake, the
silence each datagram reports) every interval of their own clock; each datagram may be lost,
duplicated or delayed arbitrarily (so reordered); one-way cuts and full partitions drop whatever
is sent in them, and a stall holds what is sent in it until a release (so a granted datagram sent
before the claim may arrive after the fence, the later ones behind it, and pass the replay
window). The slave grants as `grants_lease` says, from the state it reads AFTER computing the
acknowledgement (point 2, as failover/beatlink.py does) and the silence the master's newest
datagram reported (Stream.peer_silent), with a drawn HEARTBEAT_TIMEOUT; it claims at the real
moment k, from when the state it reads is not granting. The load balancer confirms MAINT at
f > k; the slave reads its clock at or after f (fenced_at), then the stream's g (Stream.granted_at,
or its own start when it granted nothing), and starts at service_down_at: max(g + W(L),
fenced_at + W(B)) on its clock. The master renews its lease from granted acknowledgements
(lease_end: base + L) and from load-balancer reads begun before f (such a read may still show
"not MAINT": base + B, B drawn <= L); its guard looks every `check` <= m of its clock and kills
the service, down at most H later. The property: the master's service is down by the time the
slave starts. Broken variants show that the checker can fail.

The startup grace (lease_until = the master's clock at real time 0 + L) is modelled with both
daemons starting at real time 0: its base is the slave's start, which is the g of a slave that
granted nothing, so point 3 covers it and the claim may come at any moment, even during the
grace. Not modelled: a master whose first start comes after the slave's g and before f (a start
lease of L from then is covered neither by g + W(L) nor by f + W(B)).
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import pytest
from hypothesis import HealthCheck, event, given, settings, target
from hypothesis import strategies as st

from failover.heartbeat import (
    GRANTS_LEASE,
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
from failover.machine import Condition, NodeState, Policy, Role, State
from failover.machine.lease import expired, grants_lease, service_down_at

SLACK = 1e-9  # seconds of real time: float rounding, nothing more
KEY = stream_key(b"the lease property's secret")
MASTER_ID, SLAVE_ID = b"M" * 8, b"S" * 8
TO_SLAVE, TO_MASTER = "to-slave", "to-master"
MAX_SENDS = 100  # per direction: the interval is drawn so that the run needs no more
Delays = tuple[float, ...]  # one datagram's fate: the delay of each copy delivered (empty: lost)


@dataclass(frozen=True)
class Clock:
    """A host's monotonic clock, as a function of real time."""

    offset: float
    rate: float

    def at(self, t: float) -> float:
        return self.offset + self.rate * t

    def when(self, reading: float) -> float:
        """The real moment this clock shows `reading`."""
        return (reading - self.offset) / self.rate


@dataclass(frozen=True)
class Scenario:
    """One run: the parameters, the network's fate for every datagram, the claim and the fence."""

    times: LeaseTimes
    heartbeat_timeout: float  # the slave's: it stops granting once the master says it heard nothing for half
    interval: float  # both senders, on their own clocks
    master_clock: Clock
    slave_clock: Clock
    master_phase: float  # first send, on the sender's clock after its reading at real time 0
    slave_phase: float
    claim: float  # k, real
    fenced: float  # f > k, real: the load balancer confirms the master's server MAINT
    fence_read: float  # the slave reads its clock (fenced_at), then g, this long after f, real
    read_lag: float  # slave: real time from computing the acknowledgement to reading its state and sending
    check: float  # the guard's period on the master's clock, <= margin
    guard_phase: float  # its first look, on the master's clock after its reading at real time 0
    kill: float  # master's clock from the guard's kill to the service down, <= H
    to_slave: tuple[Delays, ...]  # the fate of the master's n-th datagram
    to_master: tuple[Delays, ...]
    cuts: tuple[tuple[str, float, float], ...]  # (direction, start, end) in real time
    stalls: tuple[tuple[str, float, float, float], ...]  # (direction, start, end, release) in real time
    lb_reads: tuple[tuple[float, float], ...]  # the master's reads: (begun at, took) in real time
    # Broken on purpose, each in its own way (the defaults are the protocol):
    grant_wait: float | None = None  # the slave's wait after g (None: takeover_wait(times), W(L))
    lb_wait: float | None = None  # after fenced_at (None: takeover_wait(times, by_load_balancer=True), W(B))
    grant_always: bool = False  # the slave grants after its claim too
    grant_read: float | None = None  # the real moment the slave reads g (None: right after fenced_at)
    lb_renews_lease: bool = False  # the master renews a load-balancer read with L, not B
    start_as_grant: bool = True  # False: a slave that granted nothing waits only W(B) after the fence

    def waits(self) -> tuple[float, float]:
        """The slave's waits after g and after fenced_at: W(L) and W(B) unless broken."""
        wait = takeover_wait(self.times) if self.grant_wait is None else self.grant_wait
        lb_wait = takeover_wait(self.times, by_load_balancer=True) if self.lb_wait is None else self.lb_wait
        return wait, lb_wait

    def policy(self) -> Policy:
        wait, lb_wait = self.waits()
        return Policy(heartbeat_timeout=self.heartbeat_timeout, takeover_wait=wait, lb_takeover_wait=lb_wait)


@dataclass
class Outcome:
    slave_start: float = math.inf  # real; known once the slave has read fenced_at and g
    master_down: float = math.inf  # real; inf: still running when the slave starts
    fenced_at: float | None = None  # the slave's readings (its clock)
    granted: float | None = None  # g as the slave took it (its start when it granted nothing)
    ack_renewals: int = 0
    last_lease: str = "the grace"  # what set the lease that ended: the grace, an acknowledgement, a read

    @property
    def violated(self) -> bool:
        return self.master_down > self.slave_start + SLACK


class Simulation:
    """The event loop: a heap of (real time, order, action); nothing reads a real clock."""

    def __init__(self, sc: Scenario) -> None:
        self.sc = sc
        self.out = Outcome()
        self.policy = sc.policy()
        self.g_taken = False  # the slave has read Stream.granted_at (after fenced_at, unless broken)
        self.g_value: float | None = None
        self.master = Stream(Role.MASTER, MASTER_ID, fresh=sc.times.lease)
        self.slave = Stream(Role.SLAVE, SLAVE_ID, fresh=sc.times.lease)
        self.lease_until = sc.master_clock.at(0.0) + sc.times.lease  # the startup grace (base: real 0)
        self.generation = 0  # of the guard's next look: a renewal moves it, older looks are void
        self.heap: list[tuple[float, int, Callable[[float], None]]] = []
        self.order = 0

    def at(self, t: float, action: Callable[[float], None]) -> None:
        self.order += 1
        heapq.heappush(self.heap, (t, self.order, action))

    def run(self) -> Outcome:
        """Until the slave starts, or its start is known and the master's service is down."""
        sc, mc, scl = self.sc, self.sc.master_clock, self.sc.slave_clock
        self.at(mc.when(mc.at(0.0) + sc.master_phase), partial(self.master_sends, 0))
        self.at(scl.when(scl.at(0.0) + sc.slave_phase), partial(self.slave_computes, 0))
        for begun, took in sc.lb_reads:
            self.at(begun + took, partial(self.lb_read_done, begun))
        self.schedule_guard(0.0)
        read = sc.fenced + sc.fence_read
        self.at(read, self.slave_reads_fence)
        self.at(read if sc.grant_read is None else sc.grant_read, self.slave_reads_grant)
        out = self.out
        while self.heap and self.heap[0][0] <= out.slave_start + SLACK:
            if math.isfinite(out.master_down) and math.isfinite(out.slave_start):
                break
            t, _, action = heapq.heappop(self.heap)
            action(t)
        return out

    # ------------------------------------------------------------------ the network

    def cut(self, direction: str, sent: float) -> bool:
        """A cut drops what is sent while it lasts (a partition is a cut both ways); what is in
        flight already arrives (losing it too is a loss of its own)."""
        return any(d == direction and a <= sent <= b for d, a, b in self.sc.cuts)

    def held(self, direction: str, sent: float) -> float:
        """A stall holds what is sent while it lasts until its release (0: not held)."""
        return max((r for d, a, b, r in self.sc.stalls if d == direction and a <= sent <= b), default=0.0)

    def transmit(self, direction: str, n: int, sent: float, data: bytes) -> None:
        fates = self.sc.to_slave if direction == TO_SLAVE else self.sc.to_master
        receive = self.slave_receives if direction == TO_SLAVE else self.master_receives
        if self.cut(direction, sent):
            return
        for delay in fates[n] if n < len(fates) else ():
            self.at(max(sent, self.held(direction, sent)) + delay, partial(receive, data))

    # ------------------------------------------------------------------ the master

    def master_sends(self, n: int, t: float) -> None:
        """Its datagram says how long it has heard nothing from the slave (silent_ms)."""
        mc = self.sc.master_clock
        beat = self.master.next_beat(mc.at(t), 1, State.ACTIVE, Condition.UP)
        self.transmit(TO_SLAVE, n, t, encode(KEY, beat))
        self.at(
            mc.when(mc.at(0.0) + self.sc.master_phase + (n + 1) * self.sc.interval), partial(self.master_sends, n + 1)
        )

    def master_receives(self, data: bytes, t: float) -> None:
        """Renewal (a): a granted acknowledgement of one of our heartbeats, from its send time."""
        try:
            got = self.master.receive(decode(KEY, data), self.sc.master_clock.at(t), 1)
        except DatagramError:
            return
        if got.beat.flags & GRANTS_LEASE and got.acked_sent_at is not None:
            self.out.ack_renewals += 1
            self.renew(t, lease_end(got.acked_sent_at, self.sc.times), "an acknowledgement")

    def lb_read_done(self, begun: float, t: float) -> None:
        """Renewal (b): a read begun before f may show "not MAINT" (worst case: it does), and
        renews for B from its beginning; one begun at or after f shows MAINT and renews nothing."""
        if begun < self.sc.fenced:
            base = self.sc.master_clock.at(begun)
            self.renew(t, lease_end(base, self.sc.times, by_load_balancer=not self.sc.lb_renews_lease), "a read")

    def renew(self, t: float, until: float, by: str) -> None:
        if until > self.lease_until and math.isinf(self.out.master_down):  # the guard killed: stopped for good
            self.lease_until, self.out.last_lease = until, by
            self.schedule_guard(t)

    def schedule_guard(self, t: float, after: int = 0) -> None:
        """The guard's first look at or after both now and lease_until (looks in between see an
        unexpired lease: computing that one look spares simulating the others)."""
        sc = self.sc
        first = sc.master_clock.at(0.0) + sc.guard_phase
        due = max(self.lease_until, sc.master_clock.at(t))
        j = max(after, math.ceil((due - first) / sc.check))
        self.generation += 1
        reading = first + j * sc.check
        self.at(sc.master_clock.when(reading), partial(self.guard_looks, self.generation, j, reading))

    def guard_looks(self, generation: int, j: int, reading: float, t: float) -> None:
        if generation != self.generation or math.isfinite(self.out.master_down):
            return  # a void look, or the service is down already (the master stopped for good)
        if expired(self.lease_until, reading):
            self.out.master_down = self.sc.master_clock.when(reading + self.sc.kill)
        else:  # rounding put the look a hair before the end: the next one
            self.schedule_guard(t, after=j + 1)

    # ------------------------------------------------------------------ the slave

    def slave_node(self, t: float) -> NodeState:
        claimed = t >= self.sc.claim
        return NodeState(Role.SLAVE, State.FAILING_OVER if claimed else State.STANDBY, term=2 if claimed else 1)

    def slave_computes(self, n: int, t: float) -> None:
        """Point 2: the acknowledgement is computed now (inside next_beat, from what was received
        before t); the state that decides the grant is read `read_lag` later, with the silence
        the master's newest datagram reported, then it is sent."""
        sc, node = self.sc, self.slave_node(t)
        read = t + sc.read_lag
        grant = sc.grant_always or grants_lease(self.slave_node(read), self.slave.peer_silent, sc.heartbeat_timeout)
        beat: Beat = self.slave.next_beat(
            sc.slave_clock.at(t), node.term, node.state, Condition.UNKNOWN, grant=lambda: grant
        )
        self.transmit(TO_MASTER, n, read, encode(KEY, beat))
        scl = sc.slave_clock
        self.at(scl.when(scl.at(0.0) + sc.slave_phase + (n + 1) * sc.interval), partial(self.slave_computes, n + 1))

    def slave_receives(self, data: bytes, t: float) -> None:
        with contextlib.suppress(DatagramError):  # a replay, a reordered one, an unproven sender
            self.slave.receive(decode(KEY, data), self.sc.slave_clock.at(t), self.slave_node(t).term)

    def slave_reads_fence(self, t: float) -> None:
        self.out.fenced_at = self.sc.slave_clock.at(t)
        self.slave_start()

    def slave_reads_grant(self, t: float) -> None:
        self.g_taken, self.g_value = True, self.slave.granted_at
        self.slave_start()

    def slave_start(self) -> None:
        """Point 4, once both readings are taken: g is its start when it granted nothing."""
        sc, out = self.sc, self.out
        if out.fenced_at is None or not self.g_taken:
            return
        granted = self.g_value
        if granted is None and sc.start_as_grant:
            granted = sc.slave_clock.at(0.0)
        out.granted = granted
        if granted is None:  # broken: nothing but the load balancer's bound
            start = out.fenced_at + sc.waits()[1]
        else:
            start = service_down_at(self.policy, out.fenced_at, granted)
        out.slave_start = sc.slave_clock.when(start)


def simulate(sc: Scenario) -> Outcome:
    return Simulation(sc).run()


# ---------------------------------------------------------------------- the strategies


def fates(draw: st.DrawFn, count: int, near: float, far: float) -> tuple[Delays, ...]:
    """`count` datagrams' fates: a loss level for the run, then three bytes per datagram (one draw
    of bytes: fast to generate and to mutate): lost, one copy or two; each copy delayed by up to
    `near` (jitter), or for one datagram in 16 its first copy by up to `far` (the whole run)."""
    loss = draw(st.integers(0, 9))
    raw = draw(st.binary(min_size=3 * count, max_size=3 * count))

    def fate(code: int, first: int, second: int) -> Delays:
        one = first / 255 * (far if code >= 240 else near)
        return () if code % 20 < loss else (one,) if code % 20 < 19 else (one, second / 255 * near)

    return tuple(fate(*raw[i : i + 3]) for i in range(0, 3 * count, 3))


def windows(
    draw: st.DrawFn, end: float, lease: float, most: int, start: st.SearchStrategy[float] | None = None
) -> list[tuple[float, float]]:
    """Up to `most` real-time windows: anywhere (or from `start`), mostly up to 1.5 x L long,
    sometimes the whole run."""
    length = st.one_of(st.floats(0, 1.5 * lease), st.floats(0, end))
    begins = st.floats(0, end) if start is None else st.one_of(st.floats(0, end), start)
    pairs = draw(st.lists(st.tuples(begins, length), max_size=most))
    return [(a, a + length) for a, length in pairs]


def clock(draw: st.DrawFn, drift: float) -> Clock:
    return Clock(draw(st.floats(0, 1e4)), 1 + drift * draw(st.floats(-1, 1)))


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    lease, hard = draw(st.floats(0.2, 5)), draw(st.floats(0.05, 2))
    drift, margin = draw(st.floats(0, 0.05)), draw(st.floats(0.01, 0.2))
    wait = takeover_wait(LeaseTimes(lease, hard, drift=drift, margin=margin))  # W(L): B does not change it
    master_clock, slave_clock = clock(draw, drift), clock(draw, drift)
    top = min(0.3, lease / 2) * 0.999  # interval < L / 2
    longest = 3.25 * lease + wait / (1 - drift)  # the latest start, claim <= 2 L
    interval = draw(st.floats(min(max(0.01, longest * (1 + drift) / MAX_SENDS), top), top))
    # the slave's HEARTBEAT_TIMEOUT (it grants only while the master said it heard it within half
    # of it), and B: as the config derives it from that, or anything up to L
    timeout = draw(st.floats(interval, 2 * lease))
    lb_lease = draw(
        st.one_of(st.just(LeaseTimes.for_config(lease, hard, timeout).lb_lease), st.floats(lease / 20, lease))
    )
    times = LeaseTimes(lease, hard, lb_lease, drift, margin)
    slave_phase, read_lag = draw(st.floats(0, interval)), draw(st.floats(0, interval))
    # the claim: anywhere (the grace included), after the grace, or just after a slave's state read
    # (its datagram grants; the next one does not)
    tick = slave_clock.when(slave_clock.at(0.0) + slave_phase + draw(st.integers(0, 200)) * interval)
    after_read = st.floats(0, 1e-3).map(lambda u: min(2 * lease, tick + read_lag + u))
    claim = draw(st.one_of(st.floats(0, 2 * lease), st.floats(lease, 2 * lease), after_read))
    fenced = claim + draw(st.one_of(st.floats(1e-6, lease), st.floats(1e-6, 1e-3)))
    fence_read = draw(st.one_of(st.just(0.0), st.floats(0, lease / 4)))  # the worst cases: often at the bounds
    end = fenced + fence_read + wait / slave_clock.rate  # the latest start: g is no later than fenced_at
    count = math.ceil(end * (1 + drift) / interval) + 2
    check = draw(st.one_of(st.just(margin), st.floats(margin / 100, margin)))
    one_way = [(TO_SLAVE, a, b) for a, b in windows(draw, end, lease, 2)] + [
        (TO_MASTER, a, b) for a, b in windows(draw, end, lease, 2)
    ]
    partitions = [(d, a, b) for a, b in windows(draw, end, lease, 1) for d in (TO_SLAVE, TO_MASTER)]
    near_claim = st.floats(max(0.0, claim - 2 * interval), claim + interval)
    stalled = [
        (d, a, b, b + draw(st.floats(0, lease)))
        for d in (TO_SLAVE, TO_MASTER)
        for a, b in windows(draw, end, lease, 1, near_claim)
    ]
    begun = st.one_of(st.floats(0, end), st.floats(0, interval).map(lambda u: max(0.0, fenced - u)))
    return Scenario(
        times=times,
        heartbeat_timeout=timeout,
        interval=interval,
        master_clock=master_clock,
        slave_clock=slave_clock,
        master_phase=draw(st.floats(0, interval)),
        slave_phase=slave_phase,
        claim=claim,
        fenced=fenced,
        fence_read=fence_read,
        read_lag=read_lag,
        check=check,
        guard_phase=draw(st.floats(0, check)),
        kill=draw(st.one_of(st.just(hard), st.floats(0, hard))),
        to_slave=fates(draw, count, draw(st.floats(0, 2 * interval)), end),
        to_master=fates(draw, count, draw(st.floats(0, 2 * interval)), end),
        cuts=tuple(one_way + partitions),
        stalls=tuple(stalled),
        lb_reads=tuple(draw(st.lists(st.tuples(begun, st.floats(0, 2 * lease)), max_size=4))),
    )


# ---------------------------------------------------------------------- the tests


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_the_masters_service_is_down_before_the_slave_starts(sc: Scenario) -> None:
    out = simulate(sc)
    # liveness: the slave that claimed starts, at most W(L) / (1 - rho) after the real moment of
    # its g and W(B) / (1 - rho) after that of its fenced_at, whichever is later; and its g was
    # taken before its claim (the claim stopped the grants: nothing later can push its start out)
    assert out.granted is not None and out.fenced_at is not None and math.isfinite(out.slave_start)
    rho, (wait, lb_wait) = sc.times.drift, sc.waits()
    granted, fenced_at = sc.slave_clock.when(out.granted), sc.slave_clock.when(out.fenced_at)
    assert granted <= sc.claim + SLACK and fenced_at >= sc.fenced - SLACK
    assert out.slave_start <= max(granted + wait / (1 - rho), fenced_at + lb_wait / (1 - rho)) + SLACK
    assert not out.violated, f"the master's service runs until {out.master_down}, the slave starts at {out.slave_start}"
    event("the master's service still ran at f" if out.master_down > sc.fenced else "it was down before f")
    event(f"the last lease came from {out.last_lease}")
    event("the slave waited out its last grant" if out.granted + wait > out.fenced_at + lb_wait else "the fence")
    # per source of the last lease: drive each kind of renewal towards the tightest case
    target(out.master_down - out.slave_start, label=f"down minus start, last lease from {out.last_lease}")


def steady(**broken: object) -> Scenario:
    """No loss, 2 ms each way, exact clocks, L = 1, B = 0.25, H = 0.5, m = 0.1 (W(L) = 1.6,
    W(B) = 0.85), HEARTBEAT_TIMEOUT 0.5: the master beats every 100 ms and the slave answers each
    one, granting from 0.3 s (once the master says it hears it) until it claims at 3.05 s;
    f = 3.1 s. The last grant (3.0 s) names the master's heartbeat of 2.9 s, received at 2.902 s
    (g): its lease ends at 3.9 s, the guard looks at 3.95 s, down at 4.45 s; the slave starts at
    max(g + W(L), f + W(B)) = max(4.502, 3.95) = 4.502 s."""
    sc = Scenario(
        times=LeaseTimes(1.0, 0.5, 0.25, 0.0, 0.1),
        heartbeat_timeout=0.5,
        interval=0.1,
        master_clock=Clock(100.0, 1.0),
        slave_clock=Clock(200.0, 1.0),
        master_phase=0.0,
        slave_phase=0.0,
        claim=3.05,
        fenced=3.1,
        fence_read=0.0,
        read_lag=0.0,
        check=0.1,
        guard_phase=0.05,
        kill=0.5,
        to_slave=((0.002,),) * 100,
        to_master=((0.002,),) * 100,
        cuts=(),
        stalls=(),
        lb_reads=(),
    )
    return dataclasses.replace(sc, **broken)  # type: ignore[arg-type]


def test_the_steady_run_is_safe_and_the_last_grant_is_what_protects_it() -> None:
    out = simulate(steady())
    assert not out.violated
    assert out.ack_renewals > 20 and out.last_lease == "an acknowledgement"
    assert out.granted == pytest.approx(202.902) and out.fenced_at == pytest.approx(203.1)
    assert out.master_down == pytest.approx(4.45) and out.slave_start == pytest.approx(4.502)


def test_a_load_balancer_read_just_before_the_fence_renews_for_b_only() -> None:
    """While acknowledgements renew, a read (3.09 s + B = 3.34 s) does not lengthen the lease."""
    out = simulate(steady(lb_reads=((3.09, 0.005),)))
    assert not out.violated and out.master_down == pytest.approx(4.45) and out.last_lease == "an acknowledgement"


def cut_and_read(**broken: object) -> Scenario:
    """The way to the master is cut from 2.0 s (its last acknowledgement names its heartbeat of
    1.8 s: 2.8 s); it reads the load balancer at 2.7 s, 2.9 s and 3.09 s, just before f: the lease
    runs to 3.09 + B = 3.34 s, the guard looks at 3.35 s, down at 3.85 s; the slave (g = 2.102 s)
    starts at f + W(B) = 3.95 s."""
    reads = ((2.7, 0.005), (2.9, 0.005), (3.09, 0.005))
    return steady(cuts=((TO_MASTER, 2.0, 10.0),), lb_reads=reads, **broken)


def test_a_load_balancer_read_is_the_last_lease_when_the_acknowledgements_stop() -> None:
    out = simulate(cut_and_read())
    assert not out.violated and out.last_lease == "a read"
    assert out.master_down == pytest.approx(3.85) and out.slave_start == pytest.approx(3.95)


def test_a_master_that_renews_a_load_balancer_read_with_l_is_caught() -> None:
    out = simulate(cut_and_read(lb_renews_lease=True))
    assert out.violated and out.last_lease == "a read"  # its lease runs to 3.09 + L = 4.09 s
    assert math.isinf(out.master_down) and out.slave_start == pytest.approx(3.95)  # it still runs at 3.95 s


def test_a_slave_that_keeps_granting_after_its_claim_is_caught() -> None:
    out = simulate(steady(grant_always=True))
    assert out.violated and math.isinf(out.master_down)  # the master still runs when the slave starts


def test_a_slave_that_waits_w_b_after_its_last_grant_is_caught() -> None:
    out = simulate(steady(grant_wait=takeover_wait(steady().times, by_load_balancer=True)))
    assert out.violated and out.slave_start == pytest.approx(3.95)  # f + W(B): the grant's bound gave 3.752


def test_a_slave_that_reads_g_before_its_claim_stopped_the_grants_is_caught() -> None:
    out = simulate(steady(grant_read=2.95))  # before the grant of 3.0: g is 2.802, not 2.902
    assert out.violated and out.granted == pytest.approx(202.802) and out.slave_start == pytest.approx(4.402)


def test_a_wait_of_half_the_lease_is_caught() -> None:
    out = simulate(steady(grant_wait=0.5, lb_wait=0.5))
    assert out.violated and out.slave_start == pytest.approx(3.6)  # down at 4.45 s


def test_a_slave_that_granted_nothing_waits_from_its_own_start() -> None:
    """The master's datagrams never reach the slave: it grants nothing, and the grace (from real
    0, down at 1.55 s) is all the master has. The slave claims at 0.1 s, f = 0.2 s: it starts at
    max(its start + W(L), f + W(B)) = 1.6 s; one that took only f + W(B) (1.05 s) is caught."""
    cut = {"to_slave": ((),) * 100, "claim": 0.1, "fenced": 0.2}
    out = simulate(steady(**cut))
    assert not out.violated and out.ack_renewals == 0 and out.last_lease == "the grace"
    assert out.granted == 200.0 and out.master_down == pytest.approx(1.55) and out.slave_start == pytest.approx(1.6)
    broken = simulate(steady(**cut, start_as_grant=False))
    assert broken.violated and broken.slave_start == pytest.approx(1.05)


def test_a_slave_stops_granting_once_the_master_says_it_has_not_heard_it() -> None:
    """The way to the master is cut from 2.0 s: the master's datagrams say so (0.098 s of silence at
    2.0 s, 0.198 at 2.1, 0.298 at 2.2 >= HEARTBEAT_TIMEOUT / 2), so the slave's last grant
    (computed at 2.2 s) names the heartbeat of 2.1 s, received at 2.102 s; the master's lease is
    from the last acknowledgement it got (heartbeat 1.8 s: down at 2.8 + 0.05 + 0.5 = 3.35 s)."""
    out = simulate(steady(cuts=((TO_MASTER, 2.0, 10.0),)))
    assert not out.violated and out.granted == pytest.approx(202.102)
    assert out.master_down == pytest.approx(3.35) and out.slave_start == pytest.approx(3.95)  # f + W(B)

"""The lease argument of failover/heartbeat.py's docstring, checked by a discrete-event simulation.

Real time is the simulation's time; each host reads a monotonic clock offset + rate x real time
with its rate within [1 - rho, 1 + rho]. The master and the slave each send a real heartbeat
datagram (failover.heartbeat: Stream, encode, decode, the replay window and the handshake) every
interval of their own clock; each datagram may be lost, duplicated or delayed arbitrarily (so
reordered); one-way cuts and full partitions drop whatever is sent in them, and a stall holds
what is sent in it until a release (so a granted datagram sent before the claim may arrive after
the fence, the later ones behind it, and pass the replay window). The slave claims at the real
moment k: from then on the state it reads is not granting (it reads it AFTER computing the
acknowledgement, point 2, as failover/beatlink.py does). The load balancer confirms MAINT at
f > k; the slave reads its clock at or after f (fenced_at) and starts at fenced_at +
takeover_wait on its clock. The master renews its lease from granted acknowledgements
(lease_end) and from load-balancer reads begun before f (such a read may still show "not
MAINT"); its guard looks every `check` <= m of its clock and kills the service, down at most H
later. The property: the master's service is down by the time the slave starts. Broken variants
show that the checker can fail.

The startup grace (lease_until = the master's clock at real time 0 + L) is modelled honestly: its
base, real time 0, is before k < f like every other base, so point 3 covers it and the claim may
come at any moment, even during the grace.
"""

from __future__ import annotations

import contextlib
import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

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
from failover.machine import Condition, NodeState, Role, State
from failover.machine.lease import expired, grants_lease

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
    interval: float  # both senders, on their own clocks
    master_clock: Clock
    slave_clock: Clock
    master_phase: float  # first send, on the sender's clock after its reading at real time 0
    slave_phase: float
    claim: float  # k, real
    fenced: float  # f > k, real: the load balancer confirms the master's server MAINT
    fence_read: float  # the slave reads its clock (fenced_at) this long after f, real
    read_lag: float  # slave: real time from computing the acknowledgement to reading its state and sending
    check: float  # the guard's period on the master's clock, <= margin
    guard_phase: float  # its first look, on the master's clock after its reading at real time 0
    kill: float  # master's clock from the guard's kill to the service down, <= H
    to_slave: tuple[Delays, ...]  # the fate of the master's n-th datagram
    to_master: tuple[Delays, ...]
    cuts: tuple[tuple[str, float, float], ...]  # (direction, start, end) in real time
    stalls: tuple[tuple[str, float, float, float], ...]  # (direction, start, end, release) in real time
    lb_reads: tuple[tuple[float, float], ...]  # the master's reads: (begun at, took) in real time
    wait: float  # the slave's wait after fenced_at: takeover_wait(times) unless broken on purpose
    grant_always: bool = False  # broken on purpose: the slave grants after its claim too

    def slave_start(self) -> float:
        """The real moment the slave's clock reaches fenced_at + wait."""
        fenced_at = self.slave_clock.at(self.fenced + self.fence_read)
        return self.slave_clock.when(fenced_at + self.wait)


@dataclass
class Outcome:
    slave_start: float
    master_down: float = math.inf  # real; inf: still running when the slave starts
    ack_renewals: int = 0
    last_lease: str = "the grace"  # what set the lease that ended: the grace, an acknowledgement, a read

    @property
    def violated(self) -> bool:
        return self.master_down > self.slave_start + SLACK


class Simulation:
    """The event loop: a heap of (real time, order, action); nothing reads a real clock."""

    def __init__(self, sc: Scenario) -> None:
        self.sc = sc
        self.out = Outcome(sc.slave_start())
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
        """Until the slave starts or the master's service is down, whichever comes first."""
        mc, scl = self.sc.master_clock, self.sc.slave_clock
        self.at(mc.when(mc.at(0.0) + self.sc.master_phase), partial(self.master_sends, 0))
        self.at(scl.when(scl.at(0.0) + self.sc.slave_phase), partial(self.slave_computes, 0))
        for begun, took in self.sc.lb_reads:
            self.at(begun + took, partial(self.lb_read_done, begun))
        self.schedule_guard(0.0)
        while self.heap and self.heap[0][0] <= self.out.slave_start + SLACK and math.isinf(self.out.master_down):
            t, _, action = heapq.heappop(self.heap)
            action(t)
        return self.out

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
        """Renewal (b): a read begun before f may show "not MAINT" (worst case: it does); one begun
        at or after f shows MAINT and renews nothing."""
        if begun < self.sc.fenced:
            self.renew(t, self.sc.master_clock.at(begun) + self.sc.times.lease, "a load-balancer read")

    def renew(self, t: float, until: float, by: str) -> None:
        if until > self.lease_until:
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
        if generation != self.generation:
            return
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
        before t); the state that decides the grant is read `read_lag` later, then it is sent."""
        sc, node = self.sc, self.slave_node(t)
        read = t + sc.read_lag
        grant = sc.grant_always or grants_lease(self.slave_node(read))
        beat: Beat = self.slave.next_beat(
            sc.slave_clock.at(t), node.term, node.state, Condition.UNKNOWN, grant=lambda: grant
        )
        self.transmit(TO_MASTER, n, read, encode(KEY, beat))
        scl = sc.slave_clock
        self.at(scl.when(scl.at(0.0) + sc.slave_phase + (n + 1) * sc.interval), partial(self.slave_computes, n + 1))

    def slave_receives(self, data: bytes, t: float) -> None:
        with contextlib.suppress(DatagramError):  # a replay, a reordered one, an unproven sender
            self.slave.receive(decode(KEY, data), self.sc.slave_clock.at(t), self.slave_node(t).term)


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
    times = LeaseTimes(lease, hard, drift, margin)
    master_clock, slave_clock = clock(draw, drift), clock(draw, drift)
    top = min(0.3, lease / 2) * 0.999  # interval < L / 2
    longest = 3.25 * lease + takeover_wait(times) / (1 - drift)  # the latest start, claim <= 2 L
    interval = draw(st.floats(min(max(0.01, longest * (1 + drift) / MAX_SENDS), top), top))
    slave_phase, read_lag = draw(st.floats(0, interval)), draw(st.floats(0, interval))
    # the claim: anywhere (the grace included), after the grace, or just after a slave's state read
    # (its datagram grants; the next one does not)
    tick = slave_clock.when(slave_clock.at(0.0) + slave_phase + draw(st.integers(0, 200)) * interval)
    after_read = st.floats(0, 1e-3).map(lambda u: min(2 * lease, tick + read_lag + u))
    claim = draw(st.one_of(st.floats(0, 2 * lease), st.floats(lease, 2 * lease), after_read))
    fenced = claim + draw(st.one_of(st.floats(1e-6, lease), st.floats(1e-6, 1e-3)))
    fence_read = draw(st.one_of(st.just(0.0), st.floats(0, lease / 4)))  # the worst cases: often at the bounds
    end = fenced + fence_read + takeover_wait(times) / slave_clock.rate
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
        wait=takeover_wait(times),
    )


# ---------------------------------------------------------------------- the tests


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_the_masters_service_is_down_before_the_slave_starts(sc: Scenario) -> None:
    out = simulate(sc)
    # liveness: the slave that claimed starts, at most takeover_wait / (1 - rho) after its reading
    bound = sc.fenced + sc.fence_read + takeover_wait(sc.times) / (1 - sc.times.drift)
    assert math.isfinite(out.slave_start) and out.slave_start <= bound + SLACK
    assert not out.violated, f"the master's service runs until {out.master_down}, the slave starts at {out.slave_start}"
    event("the master's service still ran at f" if out.master_down > sc.fenced else "it was down before f")
    event(f"the last lease came from {out.last_lease}")
    # per source of the last lease: drive each kind of renewal towards the tightest case
    target(out.master_down - out.slave_start, label=f"down minus start, last lease from {out.last_lease}")


def steady(grant_always: bool = False, wait: float | None = None) -> Scenario:
    """No loss, 2 ms each way, exact clocks: the master beats every 100 ms and the slave answers
    each one until it claims at 3.05 s; f = 3.1 s. The last granted acknowledgement names the
    master's heartbeat of 2.9 s: its lease ends at 3.9 s, the guard looks at 3.95 s, down at 4.45 s;
    the slave starts at 3.1 + W = 4.7 s."""
    times = LeaseTimes(1.0, 0.5, 0.0, 0.1)
    return Scenario(
        times=times,
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
        wait=takeover_wait(times) if wait is None else wait,
        grant_always=grant_always,
    )


def test_the_steady_run_is_safe_and_the_lease_is_what_protects_it() -> None:
    out = simulate(steady())
    assert not out.violated
    assert out.ack_renewals > 20 and out.last_lease == "an acknowledgement" and out.master_down > steady().fenced
    assert abs(out.master_down - 4.45) < 1e-6 and abs(out.slave_start - 4.7) < 1e-6


def test_a_slave_that_keeps_granting_after_its_claim_is_caught() -> None:
    out = simulate(steady(grant_always=True))
    assert out.violated and math.isinf(out.master_down)  # the master still runs when the slave starts


def test_a_wait_of_half_the_lease_is_caught() -> None:
    out = simulate(steady(wait=0.5 * 1.0))
    assert out.violated and out.master_down > out.slave_start  # down at 4.45 s, the slave starts at 3.6 s

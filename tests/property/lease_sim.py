"""The machinery of tests/property/test_lease_protocol.py: a discrete-event simulation of the lease
argument of failover/heartbeat.py (points 1-4), with the master's lhcds as failover/lease_guard.py
starts and restarts them. Real heartbeat datagrams (failover.heartbeat's Stream, encode, decode)
cross a simulated network; clocks, the slave's grants, claim and start, the load balancer's fence,
and the master's renewals, lease file and guard are simulated in real time. Here: the clocks, the
scenario and its outcome, the simulator, and the hypothesis strategies that draw the scenarios;
the model is described in test_lease_protocol.py's docstring.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

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
from failover.lease_guard import PERSIST_EVERY
from failover.machine import Condition, NodeState, Policy, Role, State
from failover.machine.lease import expired, grants_lease, service_down_at

SLACK = 1e-9  # seconds of real time: float rounding, nothing more
KEY = stream_key(b"the lease property's secret")
SLAVE_ID = b"S" * 8
TO_SLAVE, TO_MASTER = "to-slave", "to-master"
MAX_SENDS = 100  # per direction: the interval is drawn so that the run needs no more
Delays = tuple[float, ...]  # one datagram's fate: the delay of each copy delivered (empty: lost)


def master_id(run: int) -> bytes:
    """The sender id of the master's lhcd number `run`: a new one at every start."""
    return bytes([ord("M") + run]) * 8


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
class Lhcd:
    """One lhcd of the master, in real time: it starts, reads the load balancer at once (the read
    takes `took`; `answers` False: no answer, the read fails after `took`), and dies (inf: never).
    Its guard looks every `check` of the master's clock from `guard_phase` after its start."""

    start: float
    took: float = 0.0
    answers: bool = True
    guard_phase: float = 0.0
    died: float = math.inf


@dataclass(frozen=True)
class Scenario:
    """One run: the parameters, the network's fate for every datagram, the claim and the fence."""

    times: LeaseTimes
    heartbeat_timeout: float  # the slave's: it stops granting once the master says it heard nothing for half
    interval: float  # both senders, on their own clocks
    master_clock: Clock
    slave_clock: Clock
    master_phase: float  # first send, on the sender's clock after its reading at its start
    slave_phase: float
    claim: float  # k, real
    fenced: float  # f > k, real: the load balancer confirms the master's server MAINT
    fence_read: float  # the slave reads its clock (fenced_at), then g, this long after f, real
    read_lag: float  # slave: real time from computing the acknowledgement to reading its state and sending
    check: float  # the guard's period on the master's clock, <= margin
    kill: float  # master's clock from the guard's kill to the service down, <= H
    to_slave: tuple[Delays, ...]  # the fate of the master's n-th datagram (counted over its lhcds)
    to_master: tuple[Delays, ...]
    cuts: tuple[tuple[str, float, float], ...]  # (direction, start, end) in real time
    stalls: tuple[tuple[str, float, float, float], ...]  # (direction, start, end, release) in real time
    lb_reads: tuple[tuple[float, float], ...]  # the master's other reads: (begun at, took) in real time
    lhcds: tuple[Lhcd, ...] = (Lhcd(0.0),)  # the master's lhcds, in order: each dies before the next starts
    predecessor_grant: float | None = None  # real, <= 0: the first lhcd runs at 0 with L from this base
    persist_every: float = PERSIST_EVERY  # lease growth between writes of the lease file (0: exact)
    # Broken on purpose, each in its own way (the defaults are the protocol):
    grant_wait: float | None = None  # the slave's wait after g (None: takeover_wait(times), W(L))
    lb_wait: float | None = None  # after fenced_at (None: takeover_wait(times, by_load_balancer=True), W(B))
    grant_always: bool = False  # the slave grants after its claim too
    grant_read: float | None = None  # the real moment the slave reads g (None: right after fenced_at)
    lb_renews_lease: bool = False  # the master renews a load-balancer read with L, not B
    start_as_grant: bool = True  # False: a slave that granted nothing waits only W(B) after the fence
    start_lease_full: bool = False  # a start holds L from it, not B (the rule before lease_guard's fix)

    def __post_init__(self) -> None:
        lhcds = self.lhcds
        assert lhcds and all(a.start <= a.died <= b.start for a, b in itertools.pairwise(lhcds))
        assert math.isinf(lhcds[-1].died) and (self.predecessor_grant is None or lhcds[0].start == 0.0)

    def waits(self) -> tuple[float, float]:
        """The slave's waits after g and after fenced_at: W(L) and W(B) unless broken."""
        wait = takeover_wait(self.times) if self.grant_wait is None else self.grant_wait
        lb_wait = takeover_wait(self.times, by_load_balancer=True) if self.lb_wait is None else self.lb_wait
        return wait, lb_wait

    def policy(self) -> Policy:
        wait, lb_wait = self.waits()
        return Policy(heartbeat_timeout=self.heartbeat_timeout, takeover_wait=wait, lb_takeover_wait=lb_wait)

    def ended_by(self) -> float:
        """Where the last lhcd starts at or after f: the real moment by which it must have the
        service down, m + H after its first read ended (MAINT or no answer); -inf otherwise."""
        last, mc = self.lhcds[-1], self.master_clock
        if last.start < self.fenced:
            return -math.inf
        return mc.when(mc.at(last.start + last.took) + self.times.margin + self.times.hard_stop)


@dataclass
class Outcome:
    slave_start: float = math.inf  # real; known once the slave has read fenced_at and g
    master_down: float = math.inf  # real; inf: still running when the slave starts
    fenced_at: float | None = None  # the slave's readings (its clock)
    granted: float | None = None  # g as the slave took it (its start when it granted nothing)
    ack_renewals: int = 0
    last_lease: str = "none"  # what set the lease that ended: the start, an acknowledgement, a read, ...
    lease_file: bool = False  # the last lhcd found its predecessor's lease file (a restart)
    gap_outran: bool = False  # between a death and the next start the service outlived its lease
    found_ended: bool = False  # the last lhcd, a restart, found its lease (the file) ended at its start
    waited: bool = False  # its guard found the lease ended and waited for the first read

    @property
    def violated(self) -> bool:
        return self.master_down > self.slave_start + SLACK


class Simulation:
    """The event loop: a heap of (real time, order, action); nothing reads a real clock."""

    def __init__(self, sc: Scenario) -> None:
        self.sc, self.out, self.policy = sc, Outcome(), sc.policy()
        self.g: list[float | None] = []  # the slave's reading of Stream.granted_at, once taken
        self.slave = Stream(Role.SLAVE, SLAVE_ID, fresh=sc.times.lease)
        self.running: int | None = None  # the master's lhcd that runs (None: none yet, or dead); its state:
        self.master = Stream(Role.MASTER, master_id(0), fresh=sc.times.lease)
        self.sent = 0  # the master's datagrams, over all its lhcds
        self.lease_until = -math.inf
        self.start_lease = False  # lease_guard's _start_lease: until the first read is judged or a renewal
        self.first_read = True  # lease_guard's _first_read: the first read has been judged
        self.wait_first_read = False  # lease_guard's _wait_first_read: a restart found its lease ended
        self.persisted = -math.inf  # lease_guard's _persisted: the end written last, by this lhcd
        self.lease_file: float | None = None  # STATE_DIR/lhcd.lease.json: outlives the lhcd
        self.generation = 0  # of the guard's next look: a renewal moves it, older looks are void
        self.heap: list[tuple[float, int, Callable[[float], None]]] = []
        self.order = itertools.count()

    def at(self, t: float, action: Callable[[float], None]) -> None:
        heapq.heappush(self.heap, (t, next(self.order), action))

    def run(self) -> Outcome:
        """Until the slave starts (or, for a last start after f, the moment it must have ended
        the service by), or until both the slave's start and the service's end are known."""
        sc, scl = self.sc, self.sc.slave_clock
        for i, lhcd in enumerate(sc.lhcds):
            self.at(lhcd.start, partial(self.lhcd_starts, i))
            if math.isfinite(lhcd.died):
                self.at(lhcd.died, partial(self.lhcd_dies, i))
        self.at(scl.when(scl.at(0.0) + sc.slave_phase), partial(self.slave_computes, 0))
        for begun, took in sc.lb_reads:
            self.at(begun + took, partial(self.lb_read_done, begun))
        read = sc.fenced + sc.fence_read
        self.at(read, partial(self.slave_reads, True))
        self.at(read if sc.grant_read is None else sc.grant_read, partial(self.slave_reads, False))
        out, ended_by = self.out, sc.ended_by()
        while self.heap and self.heap[0][0] <= max(out.slave_start, ended_by) + SLACK:
            if math.isfinite(out.master_down) and math.isfinite(out.slave_start):
                break
            t, _, action = heapq.heappop(self.heap)
            action(t)
        return out

    def transmit(self, direction: str, n: int, sent: float, data: bytes) -> None:
        """The network: a cut (a partition is a cut both ways) drops what is sent while it lasts,
        what is in flight arrives; a stall holds what is sent while it lasts until its release."""
        sc, to_slave = self.sc, direction == TO_SLAVE
        fates, receive = (sc.to_slave, self.slave_receives) if to_slave else (sc.to_master, self.master_receives)
        if any(d == direction and a <= sent <= b for d, a, b in sc.cuts):
            return
        held = max((r for d, a, b, r in sc.stalls if d == direction and a <= sent <= b), default=sent)
        for delay in fates[n] if n < len(fates) else ():
            self.at(held + delay, partial(receive, data))

    # ------------------------------------------------------------------ the master's lhcd

    def lhcd_starts(self, i: int, t: float) -> None:
        """lease_guard's start, and its first read begins (or, for an lhcd that has run since before
        the slave's start, a lease of L from the last grant of the slave's predecessor)."""
        sc, mc, lhcd, now = self.sc, self.sc.master_clock, self.sc.lhcds[i], self.sc.master_clock.at(t)
        self.running = i
        self.master = Stream(Role.MASTER, master_id(i), fresh=sc.times.lease)
        self.out.lease_file = self.lease_file is not None
        if i == 0 and sc.predecessor_grant is not None:
            self.start_lease, self.first_read, self.wait_first_read = False, True, False
            self.renew(t, lease_end(mc.at(sc.predecessor_grant), sc.times), "the slave's predecessor")
        else:
            self.lease_until = now + (sc.times.lease if sc.start_lease_full else sc.times.lb_lease)
            self.out.last_lease = "the start"
            if self.lease_file is not None and self.lease_file < self.lease_until:
                self.lease_until, self.out.last_lease = self.lease_file, "the lease file"
            self.wait_first_read = self.out.found_ended = self.out.lease_file and expired(self.lease_until, now)
            self.persisted = self.lease_file = self.lease_until
            self.start_lease, self.first_read = True, False
            self.at(t + lhcd.took, partial(self.first_read_done, i, t))
        self.at(mc.when(now + sc.master_phase), partial(self.master_sends, i, 0))
        self.schedule_guard(t)

    def lhcd_dies(self, i: int, t: float) -> None:
        """Nothing guards the service until the next start: if the guard would have killed it
        before then, the service outlives its lease (the documented window)."""
        self.running = None
        self.generation += 1  # its guard's looks are void
        if math.isinf(self.out.master_down):
            reading = self.next_look(self.sc.lhcds[i], t)[1]
            self.out.gap_outran |= self.sc.master_clock.when(reading) < self.sc.lhcds[i + 1].start

    def master_sends(self, i: int, n: int, t: float) -> None:
        """Its datagram says how long it has heard nothing from the slave (silent_ms)."""
        if self.running != i:
            return
        mc, start = self.sc.master_clock, self.sc.lhcds[i].start
        beat = self.master.next_beat(mc.at(t), 1, State.ACTIVE, Condition.UP)
        self.transmit(TO_SLAVE, self.sent, t, encode(KEY, beat))
        self.sent += 1
        after = mc.when(mc.at(start) + self.sc.master_phase + (n + 1) * self.sc.interval)
        self.at(after, partial(self.master_sends, i, n + 1))

    def master_receives(self, data: bytes, t: float) -> None:
        """Renewal (a): a granted acknowledgement of one of our heartbeats, from its send time."""
        if self.running is None:
            return
        try:
            got = self.master.receive(decode(KEY, data), self.sc.master_clock.at(t), 1)
        except DatagramError:
            return
        if got.beat.flags & GRANTS_LEASE and got.acked_sent_at is not None:
            self.out.ack_renewals += 1
            self.renew(t, lease_end(got.acked_sent_at, self.sc.times), "an acknowledgement")

    def first_read_done(self, i: int, begun: float, t: float) -> None:
        """The first read, judged: renewal (b), or it revokes the start lease (unless a renewal
        ended it first); then the guard looks at once (lease_guard's _wake)."""
        if self.running != i:
            return
        sc, mc = self.sc, self.sc.master_clock
        if sc.lhcds[i].answers and begun < sc.fenced:
            self.renew(t, lease_end(mc.at(begun), sc.times, by_load_balancer=not sc.lb_renews_lease), "a read")
        elif self.start_lease:  # and written down (persist(force=True)): the file held the start lease
            self.lease_until, self.out.last_lease = min(self.lease_until, mc.at(begun)), "the start, revoked"
            self.persisted = self.lease_file = self.lease_until
        self.start_lease, self.first_read = False, True
        self.look_now(t)

    def lb_read_done(self, begun: float, t: float) -> None:
        """Renewal (b): a later read (lease_guard reads one at a time) begun before f renews B from
        its beginning (worst case); one begun after f shows MAINT. Lost if its lhcd died meanwhile."""
        i, sc = self.running, self.sc
        if i is None or not self.first_read or begun < sc.lhcds[i].start + sc.lhcds[i].took or begun >= sc.fenced:
            return
        self.renew(t, lease_end(sc.master_clock.at(begun), sc.times, by_load_balancer=not sc.lb_renews_lease), "a read")

    def renew(self, t: float, end: float, by: str) -> None:
        """lease_guard's renew: ends the start lease (and a guard's wait for the first read) and
        lengthens; then its persist, once the lease is `persist_every` past the end written last."""
        moved = self.waiting() or end > self.lease_until
        self.start_lease = False
        if end > self.lease_until:
            self.lease_until, self.out.last_lease = end, by
        if moved and math.isinf(self.out.master_down):  # the guard killed: stopped for good
            self.schedule_guard(t)
        if self.lease_until - self.persisted >= self.sc.persist_every:
            self.persisted = self.lease_file = self.lease_until

    def waiting(self) -> bool:
        """lease_guard's guard_loop waits for the first read: a restart found its lease ended."""
        return self.wait_first_read and self.start_lease and not self.first_read

    def next_look(self, lhcd: Lhcd, t: float, after: int = 0) -> tuple[int, float]:
        """The guard's first look at or after both now and lease_until (looks in between see an
        unexpired lease: computing that one look spares simulating the others)."""
        mc, check = self.sc.master_clock, self.sc.check
        first = mc.at(lhcd.start) + lhcd.guard_phase
        j = max(after, math.ceil((max(self.lease_until, mc.at(t)) - first) / check))
        return j, first + j * check

    def schedule_guard(self, t: float, after: int = 0) -> None:
        assert self.running is not None
        j, reading = self.next_look(self.sc.lhcds[self.running], t, after)
        self.generation += 1
        self.at(self.sc.master_clock.when(reading), partial(self.guard_looks, self.generation, j, reading))

    def look_now(self, t: float) -> None:
        self.generation += 1
        self.at(t, partial(self.guard_looks, self.generation, None, self.sc.master_clock.at(t)))

    def guard_looks(self, generation: int, j: int | None, reading: float, t: float) -> None:
        if generation != self.generation or math.isfinite(self.out.master_down):
            return  # a void look, or the service is down already (the master stopped for good)
        if not expired(self.lease_until, reading):  # a look at once, or rounding put it a hair early
            self.schedule_guard(t, after=0 if j is None else j + 1)
        elif self.waiting():  # its looks until the first read is judged change nothing: that wakes it
            self.out.waited = True
        else:
            self.out.master_down = self.sc.master_clock.when(reading + self.sc.kill)

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
        scl = sc.slave_clock
        beat: Beat = self.slave.next_beat(scl.at(t), node.term, node.state, Condition.UNKNOWN, grant=lambda: grant)
        self.transmit(TO_MASTER, n, read, encode(KEY, beat))
        self.at(scl.when(scl.at(0.0) + sc.slave_phase + (n + 1) * sc.interval), partial(self.slave_computes, n + 1))

    def slave_receives(self, data: bytes, t: float) -> None:
        with contextlib.suppress(DatagramError):  # a replay, a reordered one, an unproven sender
            self.slave.receive(decode(KEY, data), self.sc.slave_clock.at(t), self.slave_node(t).term)

    def slave_reads(self, fence: bool, t: float) -> None:
        """Its reading of fenced_at or of g; point 4, once both are taken (g: its start when it
        granted nothing)."""
        sc, out = self.sc, self.out
        if fence:
            out.fenced_at = sc.slave_clock.at(t)
        else:
            self.g.append(self.slave.granted_at)
        if out.fenced_at is None or not self.g:
            return
        out.granted = self.g[0] if self.g[0] is not None or not sc.start_as_grant else sc.slave_clock.at(0.0)
        if out.granted is None:  # broken: nothing but the load balancer's bound
            out.slave_start = sc.slave_clock.when(out.fenced_at + sc.waits()[1])
        else:
            out.slave_start = sc.slave_clock.when(service_down_at(self.policy, out.fenced_at, out.granted))


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


def master_lhcds(
    draw: st.DrawFn, times: LeaseTimes, rate: float, grants: float, fenced: float, end: float, check: float
) -> tuple[Lhcd, ...]:
    """The master's lhcds: one, started at 0 or anywhere (`after`; `grants`: where the last grants
    begin), or one started before f that dies anywhere after, and after a gap (often none) a
    restart. Each first read takes up to its timeout (B / 2 of the master's clock, of rate `rate`),
    and may get no answer."""
    took_most = times.lb_lease / 2 / rate

    def after(t: float) -> st.SearchStrategy[float]:
        """A real moment at or after t: anywhere, between the last grants and f, just after f, or
        about when a lease from the last grants ends."""
        lease_ends = grants + times.lease
        return st.one_of(
            st.floats(t, max(t, end)),
            st.floats(max(t, grants), max(t, fenced)),
            st.floats(max(t, fenced), max(t, min(end, fenced + times.lb_lease))),
            st.floats(max(t, lease_ends - times.lb_lease / 2), max(t, min(end, lease_ends + times.lb_lease / 2))),
        )

    def lhcd(start: float, died: float = math.inf) -> Lhcd:
        took = draw(st.one_of(st.just(took_most), st.floats(0, took_most)))
        answers = draw(st.integers(0, 5)) < 5  # mostly: one that gets no answer is killed at once
        return Lhcd(start, took, answers, draw(st.floats(0, check)), died)

    if draw(st.sampled_from(["one", "restarted"])) == "one":
        return (lhcd(draw(st.one_of(st.just(0.0), after(0.0)))),)
    first = draw(st.one_of(st.just(0.0), st.floats(0, fenced, exclude_max=True)))
    died = draw(after(first))
    again = died + draw(st.one_of(st.just(0.0), st.floats(0, times.lb_lease)))
    return lhcd(first, died=died), lhcd(again)


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
    derived = LeaseTimes.for_config(lease, hard, timeout).lb_lease
    lb_lease = draw(st.one_of(st.just(derived), st.floats(lease / 20, lease)))
    times = LeaseTimes(lease, hard, lb_lease, drift, margin)
    slave_phase, read_lag = draw(st.floats(0, interval)), draw(st.floats(0, interval))
    # the claim: anywhere (the start included), after the start, or just after a slave's state read
    # (its datagram grants; the next one does not)
    tick = slave_clock.when(slave_clock.at(0.0) + slave_phase + draw(st.integers(0, 200)) * interval)
    after_read = st.floats(0, 1e-3).map(lambda u: min(2 * lease, tick + read_lag + u))
    claim = draw(st.one_of(st.floats(0, 2 * lease), st.floats(lease, 2 * lease), after_read))
    fenced = claim + draw(st.one_of(st.floats(1e-6, lease), st.floats(1e-6, 1e-3)))
    fence_read = draw(st.one_of(st.just(0.0), st.floats(0, lease / 4)))  # the worst cases: often at the bounds
    end = fenced + fence_read + wait / slave_clock.rate  # the latest start: g is no later than fenced_at
    count = math.ceil(end * (1 + drift) / interval) + 2
    check = draw(st.one_of(st.just(margin), st.floats(margin / 100, margin)))
    one_way = [(d, a, b) for d in (TO_SLAVE, TO_MASTER) for a, b in windows(draw, end, lease, 2)]
    partitions = [(d, a, b) for a, b in windows(draw, end, lease, 1) for d in (TO_SLAVE, TO_MASTER)]
    near, hold = st.floats(max(0.0, claim - 2 * interval), claim + interval), st.floats(0, lease)
    stalled = [(d, a, b, b + draw(hold)) for d in (TO_SLAVE, TO_MASTER) for a, b in windows(draw, end, lease, 1, near)]
    begun = st.one_of(st.floats(0, end), st.floats(0, interval).map(lambda u: max(0.0, fenced - u)))
    lhcds = master_lhcds(draw, times, master_clock.rate, claim - 2 * interval, fenced, end, check)
    # or the first lhcd runs since before the slave's start, with L from its predecessor's last grant
    predecessor = draw(st.one_of(st.none(), st.floats(-lease, 0))) if lhcds[0].start == 0.0 else None
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
        kill=draw(st.one_of(st.just(hard), st.floats(0, hard))),
        to_slave=fates(draw, count, draw(st.floats(0, 2 * interval)), end),
        to_master=fates(draw, count, draw(st.floats(0, 2 * interval)), end),
        cuts=tuple(one_way + partitions),
        stalls=tuple(stalled),
        lb_reads=tuple(draw(st.lists(st.tuples(begun, st.floats(0, lb_lease / 2 / master_clock.rate)), max_size=4))),
        lhcds=lhcds,
        predecessor_grant=predecessor,
        persist_every=draw(st.sampled_from([PERSIST_EVERY, 0.0, lease])),
    )

"""lhcd's lease guard: the master serves only while its lease runs (failover/heartbeat.py has the
argument), and this is what makes it so.

- `renew()` takes a new lease end; the stream calls it for every granted acknowledgement.
  `renew_loop`'s thread writes the end to STATE_DIR/lhcd.lease.json (with the kernel's boot
  id) for the next lhcd (`persist`), so a slow disk never holds up the stream.
- `renew_loop` asks the load balancer, once less than the load balancer's lease B is left
  (acknowledgements have stopped renewing it), every B / 4, whether this master's server is
  still in service (UP, DOWN, NOLB, DRAIN); a read begun before the slave's fence renews to
  the moment the read began + B. So a dead or stopped slave never stops a master that the load
  balancer still sends clients to, as long as the load balancer answers: one that does not
  answer for B ends the lease (each read may take at most B / 2).
- `guard_loop`, in a thread of its own (a decision loop busy with a restart script cannot delay
  it), wakes at the lease's end: if it has ended while the service may run, it tells the machine
  (LeaseExpired: STOPPING, then INACTIVE), kills the service hard (failover/hardstop.py), then
  journals it (a full disk cannot delay the kill). It kills again whatever runs while the lease
  stays ended.

The start. A first lhcd of this boot holds a lease of B (the load balancer's) from its start,
written to the lease file at once: its base, the start, may come just before the slave's fence,
and the slave waits out B from the fence but a full LEASE_TIME only from its own last grant,
which may be long before. One that was restarted (its predecessor's lease file is there) holds
no more than its predecessor did, so a crash and respawn never stretch a lease the slave may be
waiting out. Either way `renew_loop` reads the load balancer at once (within B / 2): this server
MAINT there (the slave fenced it) or no answer revokes the start lease, unless an acknowledged
heartbeat renewed it first (a start after the fence has no other proof). Only when a restarted
lhcd finds its predecessor's lease already ended at its start does the guard wait for that
first read before it kills, so that a respawn on a healthy pair does not kill a service the load
balancer still sends clients to. The one window the argument of heartbeat.py does not cover:
while lhcd itself is down or frozen, and after a restart that found the lease ended until that
first read (at most B / 2), nothing enforces the lease (the slave's fence at the load balancer
still keeps every client away).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import time
from collections.abc import Callable

from failover import hardstop, service
from failover.config import Config
from failover.errors import FailoverError
from failover.heartbeat import LeaseTimes, lease_end
from failover.loadbalancer import LoadBalancer, LoadBalancerError
from failover.machine import Event, LeaseExpired, NodeState, Role
from failover.machine.lease import expired, may_serve
from failover.ratelimit import RateLimitedLog
from failover.state import atomic_write

LEASE_FILE = "lhcd.lease.json"  # the lease's end, for the next lhcd of the same boot
PERSIST_EVERY = 0.5  # seconds of lease growth between writes of LEASE_FILE (a lag only shortens)
# HAProxy's words for a server it may send clients to, or that only its health checks hold
# back: renewals. MAINT (any kind), an unknown word or no answer renew nothing.
IN_SERVICE = frozenset({"UP", "DOWN", "NOLB", "DRAIN", "no"})  # "no check": a server without checks


@functools.cache
def _boot_id() -> str:
    """The kernel's id of this boot: a monotonic reading means nothing to another boot."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def write_lease(path: str, until: float) -> None:
    atomic_write(path, json.dumps({"boot_id": _boot_id(), "until": until}).encode(), durable=False)


def read_lease(path: str) -> float | None:
    """The lease end the previous lhcd of this boot wrote, if any (anything unreadable: none)."""
    try:
        with open(path) as f:
            data = json.load(f)
        until = data["until"]
        boot = _boot_id()
        if not boot or data["boot_id"] != boot or not isinstance(until, int | float):
            return None
        return float(until)
    except (OSError, ValueError, KeyError, TypeError):
        return None


class _NotInService(FailoverError):
    """A read of the load balancer showed this server not in service (MAINT); never leaves here."""


class LeaseGuard:
    def __init__(
        self,
        config: Config,
        times: LeaseTimes,
        lb: LoadBalancer | None,
        log: logging.Logger,
        node: Callable[[], NodeState],
        submit: Callable[[Event], None],
        note: Callable[[str, str], None],
        env: Callable[[], dict[str, str]],
    ) -> None:
        self.config, self.times, self.lb, self.log = config, times, lb, log
        self.path = os.path.join(config.STATE_DIR, LEASE_FILE)
        self.node, self.submit, self.note, self.env = node, submit, note, env
        self._lock = threading.Lock()
        # the start's lease (see the module docstring): B, the load balancer's, since its base (the
        # start) may come just before the slave's fence, which covers B only (heartbeat.py, point 4)
        self.until = time.monotonic() + times.lb_lease
        self.renewed_by = "start"
        self._start_lease = True  # until the first read of the load balancer or renewal
        self._first_read = threading.Event()  # renew_loop's first read of the load balancer is done
        self._wake = threading.Event()  # set when the lease was cut short: the guard looks at once
        self._persisted = 0.0  # when the lease end was last written to LEASE_FILE
        self._start(time.monotonic())
        self._rate = RateLimitedLog(log, interval=5.0, burst=1)

    def _start(self, now: float) -> None:
        """The start lease: B from now, but never past what the previous lhcd of this boot held
        (a crash and respawn must not stretch a lease the slave is waiting out); written down at
        once, so that a crash before any renewal leaves the next lhcd no more than this."""
        previous = read_lease(self.path)
        self.restarted = previous is not None
        if previous is not None and previous < self.until:
            self.until, self.renewed_by = previous, "the previous lhcd (restarted)"
        # the guard waits for the first read only when the inherited lease had already ended
        self._wait_first_read = self.restarted and self.until <= now
        try:
            write_lease(self.path, self.until)
            self._persisted = self.until
        except OSError as e:
            self.log.error("lease: cannot write %s: %s", self.path, e)

    def renew(self, base: float, how: str, by_load_balancer: bool = False) -> None:
        """A renewal from `base` (a monotonic reading at or before the proof): the lease runs to
        base + LEASE_TIME (base + B for a read of the load balancer) unless it already runs
        longer. In memory only: `persist` writes it down, from renew_loop's thread."""
        end = lease_end(base, self.times, by_load_balancer)
        with self._lock:
            self._start_lease = False
            if end > self.until:
                self.until, self.renewed_by = end, how

    def persist(self, force: bool = False) -> None:
        """Write the lease's end down for the next lhcd, when it grew by PERSIST_EVERY (or
        `force`: it shrank). Called from renew_loop's thread, never from the stream's: a slow
        STATE_DIR must not hold up the datagrams."""
        with self._lock:
            until = self.until
            if not force and until - self._persisted < PERSIST_EVERY:
                return
            self._persisted = until
        try:
            write_lease(self.path, until)
        except OSError as e:
            self._rate.log("persist", logging.ERROR, "lease: cannot write %s: %s", self.path, e)

    def _revoke_start_lease(self, now: float, why: str) -> None:
        """The load balancer's first word, before any renewal: this server MAINT (the slave
        fenced it) or no answer ends the start lease now: a start after the slave's fence is
        covered by nothing else (heartbeat.py, point 4)."""
        with self._lock:
            revoked = self._start_lease and now < self.until
            if self._start_lease:
                self.until, self.renewed_by = min(self.until, now), f"start, revoked: {why}"
            self._start_lease = False
        self._wake.set()
        if revoked:
            self.persist(force=True)  # the next lhcd must not inherit the start lease we lost

    def confirmed(self, timeout: float) -> bool:
        """Whether the lease is renewed (by an acknowledged heartbeat or a read of the load
        balancer, not just the start's) and running, waiting up to `timeout` for that. Only a
        confirmed lease may START the service: a start lease covers a service that already runs
        (its base may come after the slave's fence, heartbeat.py point 1), not a new one."""
        end = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            with self._lock:
                ok = not self._start_lease and self.until > now
            if ok or now >= end:
                return ok
            time.sleep(min(0.02, end - now))

    def left(self, now: float) -> float:
        with self._lock:
            return self.until - now

    # ------------------------------------------------------------------ renewal by the load balancer

    def renew_loop(self, stop: threading.Event) -> None:
        lb, ask_below = self.lb, self.times.lb_lease
        if lb is None:  # no reads: this thread only writes the lease down
            self._first_read.set()
            while not stop.wait(PERSIST_EVERY):
                self.persist()
            return
        maint = False
        wait = 0.0
        while not stop.wait(wait):
            wait = ask_below / 4
            self.persist()
            left = self.left(time.monotonic())
            if left > ask_below and not self._start_lease:
                # acknowledgements keep it: a read would not lengthen it; look again when it
                # could, or when the lease file is due (its lag is what a restart inherits)
                wait = min(max(wait, left - ask_below), PERSIST_EVERY)
                continue
            begun = time.monotonic()
            try:
                self._read(lb, begun, ask_below / 2, maint)
                maint = False
            except _NotInService:
                maint = True
            finally:  # judged (renewed or revoked) before the guard looks again
                self._first_read.set()
                self._wake.set()

    def _read(self, lb: LoadBalancer, begun: float, timeout: float, maint: bool) -> None:
        """One read of the load balancer, begun at `begun`: renews B from it, or revokes the
        start lease (_NotInService when the server is not in service)."""
        try:
            status = lb.status(Role.MASTER, timeout=timeout)
        except LoadBalancerError as e:
            self._rate.log("lb", logging.WARNING, "lease: cannot ask the load balancer: %s", e)
            self._revoke_start_lease(begun, f"the load balancer does not answer ({e})")
            return
        if status.split(" ")[0] not in IN_SERVICE:
            self._revoke_start_lease(begun, f"this server is {status} at the load balancer")
            if not maint:
                self.log.warning("lease: the load balancer has this server in %s: no renewal from it", status)
            raise _NotInService
        self.renew(begun, "load-balancer", by_load_balancer=True)

    # ------------------------------------------------------------------ the guard

    def guard_loop(self, stop: threading.Event) -> None:
        """Sleeps until the lease's current end (a renewal meanwhile only makes it look again
        and sleep on), every MARGIN / 2 while it has ended: a wakeup per lease, not twenty a
        second. A pass never raises: the kill must not wait for a restart of this thread."""
        ended = False
        wait = 0.0
        while not stop.is_set():
            self._wake.wait(wait)  # a revoked lease wakes it at once
            self._wake.clear()
            if stop.is_set():  # the agents stop: the service is left running, as they leave it
                return
            now = time.monotonic()
            with self._lock:  # the lease and whether it is still the start's, read together
                until, how = self.until, self.renewed_by
                first_word = self._wait_first_read and self._start_lease and not self._first_read.is_set()
            if not expired(until, now):
                ended, wait = False, min(until - now, 1.0)
                continue
            wait = self.times.margin / 2
            if first_word:
                continue  # restarted after its lease ended: the load balancer's first word decides
            try:
                ended = self._ended(until, how, now, ended)
            except Exception as e:  # any error: the next pass tries again in MARGIN / 2
                self._rate.log("guard", logging.ERROR, "lease guard: %s: %s", type(e).__name__, e)

    def _ended(self, until: float, how: str, now: float, ended: bool) -> bool:
        """One pass with the lease ended; whether this ending has been acted on."""
        runs = service.process_runs(self.config, Role.MASTER)
        if ended:
            if runs or may_serve(self.node()):  # started again (a restart under way), or still said to serve
                ok, detail = hardstop.hard_stop(self.config, self.env())
                self._rate.log("again", logging.ERROR, "lease ended, the service was killed again: %s", detail)
            return True
        if not (runs or may_serve(self.node())):
            return True  # INACTIVE, nothing runs: an ended lease is what it should be
        why = f"the lease ended {now - until:.3f} s ago (last renewed by {how})"
        # The machine hears of it first, so that the death the kill causes finds it STOPPING (a
        # death seen first would be taken for a crash, and restarted); then the kill, at once.
        # The journal comes last: a full disk must not delay or stop the kill.
        self.submit(LeaseExpired(time.monotonic(), until, "killed by the lease guard"))
        ok, detail = hardstop.hard_stop(self.config, self.env())
        self.log.error("ALERT: %s: the service was killed hard: %s", why, detail)
        try:
            self.note("lease-expired", f"{why}: killing the service")
            self.note("hard-stop", f"{'verified down' if ok else 'NOT verified down'}: {detail}")
        except OSError as e:
            self.log.error("lease guard: the journal cannot be written: %s", e)
        return True

"""lhcd's lease guard: the master serves only while its lease runs (failover/heartbeat.py has the
argument), and this is what makes it so.

- `renew()` takes a new lease end; the stream calls it for every granted acknowledgement.
- `renew_loop` asks the load balancer, when no acknowledgement has renewed the lease for half of
  it, whether this master's server is still in service; a read begun before the slave's fence
  renews from the moment the read began. So a dead or stopped slave never stops a master that
  the load balancer still sends clients to.
- `guard_loop` looks every MARGIN / 2 seconds, in a thread of its own, so a decision loop busy
  with a restart script cannot delay it: once the lease has ended while the service may run, it
  journals that, kills the service hard (failover/hardstop.py), and feeds LeaseExpired, which
  moves the machine to STOPPING. It kills again whatever runs while the lease stays ended.

At start the lease runs for LEASE_TIME from the start, and `renew_loop` reads the load balancer
at once: if this server is MAINT there (the slave fenced it: it may be taking over), that start
lease is revoked and the guard kills the service. This start lease is the one exception to the
argument in heartbeat.py (its base is the start, which may come after the slave's fence): it
covers only a service that ran while lhcd was down, which no lease could stop, and it lasts
until that first read answers (at most LEASE_TIME). A restart of lhcd (respawn, an operator)
therefore does not kill a service that the load balancer still sends clients to.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from failover import hardstop, service
from failover.config import Config
from failover.heartbeat import LeaseTimes, lease_end
from failover.loadbalancer import LoadBalancer, LoadBalancerError
from failover.machine import Event, LeaseExpired, NodeState, Role
from failover.machine.lease import expired, may_serve
from failover.ratelimit import RateLimitedLog


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
        self.node, self.submit, self.note, self.env = node, submit, note, env
        self._lock = threading.Lock()
        self.until = time.monotonic() + times.lease  # the start's lease (see the module docstring)
        self.renewed_by = "start"
        self._start_lease = True  # until the first read of the load balancer or renewal
        self._rate = RateLimitedLog(log, interval=5.0, burst=1)

    def renew(self, base: float, how: str) -> None:
        """A renewal from `base` (a monotonic reading at or before the proof): the lease runs to
        base + LEASE_TIME unless it already runs longer."""
        end = lease_end(base, self.times)
        with self._lock:
            self._start_lease = False
            if end > self.until:
                self.until, self.renewed_by = end, how

    def _revoke_start_lease(self, now: float, why: str) -> None:
        with self._lock:
            if self._start_lease and self.renewed_by == "start":
                self.until, self.renewed_by = now, f"start, revoked: {why}"
            self._start_lease = False

    def left(self, now: float) -> float:
        with self._lock:
            return self.until - now

    # ------------------------------------------------------------------ renewal by the load balancer

    def renew_loop(self, stop: threading.Event) -> None:
        lb, half = self.lb, self.times.lease / 2
        if lb is None:
            return
        maint = False
        first = True
        while first or not stop.wait(self.times.lease / 4):
            first = False
            if self.left(time.monotonic()) > half and not self._start_lease:
                continue  # acknowledgements keep it: no need to ask
            begun = time.monotonic()
            try:
                status = lb.status(Role.MASTER)
            except LoadBalancerError as e:
                self._rate.log("lb", logging.WARNING, "lease: cannot ask the load balancer: %s", e)
                continue
            if status.startswith("MAINT"):
                self._revoke_start_lease(begun, f"this server is {status} at the load balancer")
                if not maint:
                    self.log.warning("lease: the load balancer has this server in %s: no renewal from it", status)
                maint = True
                continue
            maint = False
            self.renew(begun, "load-balancer")

    # ------------------------------------------------------------------ the guard

    def guard_loop(self, stop: threading.Event) -> None:
        """Sleeps until the lease's current end (a renewal meanwhile only makes it look again
        and sleep on), at most MARGIN / 2 at a time while it has ended: a wakeup per lease, not
        twenty a second."""
        ended = False
        wait = 0.0
        while not stop.wait(wait):
            now = time.monotonic()
            with self._lock:
                until, how = self.until, self.renewed_by
            wait = min(max(until - now, 0.0), 1.0) if not expired(until, now) else self.times.margin / 2
            if not expired(until, now):
                ended = False
                continue
            runs = service.process_runs(self.config, Role.MASTER)
            if ended:
                if runs:  # started again (a restart script that was under way): killed again
                    ok, detail = hardstop.hard_stop(self.config, self.env())
                    self._rate.log("again", logging.ERROR, "lease ended, the service ran again: %s", detail)
                continue
            ended = True
            if not (runs or may_serve(self.node())):
                continue  # INACTIVE, nothing runs: an ended lease is what it should be
            why = f"the lease ended {now - until:.3f} s ago (last renewed by {how})"
            self.note("lease-expired", f"{why}: killing the service")  # journaled before the kill
            self.log.error("ALERT: %s: killing the service hard", why)
            ok, detail = hardstop.hard_stop(self.config, self.env())
            self.log.log(logging.WARNING if ok else logging.ERROR, "hard stop: %s", detail)
            self.note("hard-stop", f"{'verified down' if ok else 'NOT verified down'}: {detail}")
            self.submit(LeaseExpired(time.monotonic(), until, detail if ok else f"NOT verified down: {detail}"))

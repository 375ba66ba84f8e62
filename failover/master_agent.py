"""The master's agent: `Lhcd`, what the lhcd daemon runs (agents/master/lhcd.py), and
`fence_self`, the fence by ssh that `failover fence-self` carries out on the master.

Lhcd watches the master's own service (its process through SERVICE_PIDFILE, and a local POP3
probe), tells the slave in heartbeats (at once when the service goes down), and carries out
SHUTDOWN_YOUR_SERVICE requests that socketserver forwards: shutdown scripts, a check that the
service is really down, then the ACK. Every decision is the machine's.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from failover import service
from failover.agent import Agent
from failover.beatlink import BeatLink
from failover.channel import ChannelError, local_call, request
from failover.config import Config
from failover.daemon import (
    AlreadyRunning,
    PidLock,
    PidUnknown,
    pid_path,
    running_pid,
    signal_daemon,
    socket_path,
)
from failover.deathwatch import DeathWatch
from failover.fencing import load_balancer
from failover.heartbeat import GRANTS_LEASE, Received
from failover.lease_guard import LeaseGuard
from failover.machine import (
    Action,
    Condition,
    Event,
    LocalHealth,
    PeerReport,
    Reachability,
    Reply,
    Role,
    ScriptKind,
    ScriptsFinished,
    SendHeartbeat,
    ShutdownRequested,
    Started,
    State,
)
from failover.protocol import (
    Ack,
    Heartbeat,
    HeartbeatReply,
    Message,
    OperatorCommand,
    ProtocolError,
    Refused,
    ShutdownYourService,
    local_request,
    parse_local_answer,
)
from failover.state import wall_clock

LEASE_WAIT = 3.0  # seconds a switchback waits for the slave's first granting datagram


class _Waiter:
    """A forwarded SHUTDOWN_YOUR_SERVICE waiting for the machine's Reply."""

    def __init__(self, term: int) -> None:
        self.term, self.done = term, threading.Event()
        self.reply: Reply | None = None

    def resolve(self, reply: Reply) -> None:
        self.reply = reply
        self.done.set()


QUIET_HEARTBEAT = 5.0  # seconds between TCP heartbeats while the stream carries two-way contact


class Lhcd(Agent):
    TICK = 1.0

    def __init__(self, config: Config, log: logging.Logger) -> None:
        super().__init__(config, Role.MASTER, "lhcd", log)
        self.link: BeatLink | None = None
        self.guard: LeaseGuard | None = None
        self._waiters: list[_Waiter] = []
        self._lock = threading.Lock()
        self._heartbeat_now = threading.Event()
        self._health: tuple[bool | None, str] = (None, "not checked yet")
        self._deaths = DeathWatch()

    # ------------------------------------------------------------------ inputs

    def watch_service(self, stop: threading.Event) -> None:
        """Check the local service every PROBE_INTERVAL, and at once when its process dies."""
        while not stop.is_set():
            taken = time.monotonic()  # a check begun before a stop finished must not count after it
            ok, detail = self.check_own_service()
            clean = not ok and service.stopped_cleanly(self.config, Role.MASTER)
            if ok != self._health[0]:
                self.log.log(
                    logging.INFO if ok else logging.WARNING, "local service %s: %s", "healthy" if ok else "DOWN", detail
                )
            self._health = (ok, detail)
            self.observe(local_service_ok=ok, local_service_detail=detail, local_service_checked=wall_clock())
            self.submit(LocalHealth(time.monotonic(), ok, detail, clean, taken=taken))
            # until the next check, or at once when the service's process dies (a kill -9)
            if self._deaths.wait(service.pid(self.config, Role.MASTER), self.config.PROBE_INTERVAL, stop):
                self.log.warning("the service's process exited: checking it now")

    def check_own_service(self) -> tuple[bool, str]:
        """The service's health; a failed check while its process still runs is repeated for up to
        SERVICE_CHECK_TIMEOUT, so a service in the middle of a clean stop is not taken for a
        crashed one (a killed service has no process: it is reported at once)."""
        ok, detail = service.health(self.config, Role.MASTER)
        end = time.monotonic() + self.config.SERVICE_CHECK_TIMEOUT
        while not ok and service.process_runs(self.config, Role.MASTER) and time.monotonic() < end:
            time.sleep(0.1)
            ok, detail = service.health(self.config, Role.MASTER)
        return ok, detail

    def send_heartbeats(self, stop: threading.Event) -> None:
        """Tell the slave our state every HEARTBEAT_INTERVAL, or at once when poked. While the
        stream carries two-way contact, only every QUIET_HEARTBEAT: the stream tells the slave
        all it decides on, the TCP heartbeat then only refreshes status texts (and the witness
        matters only when the slave is silent); the moment the stream falls silent either way,
        the HEARTBEAT_INTERVAL cadence is back."""
        reachable: bool | None = None
        failure: type[Exception] | None = None  # the kind of the last failure logged
        watching: bool | None = True  # what the slave said of its rhcd last (True: quiet at start)
        last_sent = -QUIET_HEARTBEAT
        while not stop.is_set():
            poked = self._heartbeat_now.is_set()
            self._heartbeat_now.clear()
            if not poked and self._stream_in_contact() and time.monotonic() - last_sent < QUIET_HEARTBEAT:
                self._heartbeat_now.wait(self.config.HEARTBEAT_INTERVAL)
                continue
            last_sent = time.monotonic()
            ok, detail = self._health
            beat = Heartbeat(self.node.term, self.node.state.value, ok, detail[:500], self.node.condition.value)
            try:
                reply = request(
                    self.config.SLAVE_HOST,
                    self.config.MONITOR_PORT_SLAVE,
                    self.secret,
                    beat,
                    self.config.CONTROL_TIMEOUT,
                )
                if not isinstance(reply, HeartbeatReply):
                    raise ProtocolError(f"unexpected reply {reply.TYPE}")
                self.submit(PeerReport(time.monotonic(), reply.term, State(reply.state)))
                self.observe(
                    slave_term=reply.term,
                    slave_state=reply.state,
                    slave_watching=reply.watching,
                    last_heartbeat_ack=wall_clock(),
                    last_heartbeat_error=None,
                )
                if reply.watching is not watching:  # say it once per change, not per heartbeat
                    self.log.log(
                        logging.INFO if reply.watching else logging.ERROR,
                        "the slave's rhcd %s",
                        "watches again" if reply.watching else "does not run: nothing would fail over",
                    )
                    watching = reply.watching
                if reachable is not True:
                    self.log.info("heartbeats reach the slave (it is %s in term %d)", reply.state, reply.term)
                reachable, failure = True, None
            except (ChannelError, ProtocolError) as e:  # channel raises only its own errors
                # once per outage, and again when its kind changes (a refused connection, then a
                # server that answers with a forged reply), not once per heartbeat
                if reachable is not False or type(e) is not failure:
                    self.log.warning("heartbeat to the slave failed: %s", e)
                failure = type(e)
                reachable = False
                self.observe(last_heartbeat_error=str(e))
            self.submit(Reachability(time.monotonic(), reachable, self.probe_witness()))
            self._heartbeat_now.wait(self.config.HEARTBEAT_INTERVAL)

    def run_scripts(self, kind: ScriptKind) -> Event:
        """Under a lease, the service is started (RESTART, STARTUP) only while the lease is
        confirmed: a rebooted master whose lhcd holds only its start lease, or one whose lease
        ended meanwhile, must not start a service the slave may be running already."""
        starts = kind in (ScriptKind.RESTART, ScriptKind.STARTUP)
        if starts and self.guard is not None and not self.guard.confirmed(self.guard.times.lb_lease):
            detail = f"not started: no confirmed lease ({self.guard.renewed_by}); the slave may be serving"
            self.log.error("%s scripts refused: %s", kind, detail)
            self.store.note(self.node, f"scripts:{kind.value}", f"FAILED: {detail}")
            return ScriptsFinished(time.monotonic(), kind, False, detail)
        return super().run_scripts(kind)

    def _stream_in_contact(self) -> bool:
        """The stream hears the slave, and the slave hears us, both within half HEARTBEAT_TIMEOUT."""
        link, half = self.link, self.config.HEARTBEAT_TIMEOUT / 2
        if link is None or link.last_received is None:
            return False
        return time.monotonic() - link.last_received < half and link.peer_silent() < half

    def stream_inputs(self) -> list[Callable[[threading.Event], None]]:
        """The heartbeat stream's threads, and the lease guard's when the pair runs with a lease."""
        self.link = BeatLink(self.config, Role.MASTER, self.secret, self.log, lambda: self.node, self.on_beat)
        inputs: list[Callable[[threading.Event], None]] = [self.link.run]
        times = self.config.lease_times()
        if times is not None:
            self.guard = LeaseGuard(
                self.config,
                times,
                load_balancer(self.config),
                self.log,
                lambda: self.node,
                self.submit,
                lambda event, reason: self.store.note(self.node, event, reason),
                lambda: self.script_env("hard_stop", numbered=False),  # the kill waits for no journal
            )
            inputs += [self.guard.guard_loop, self.guard.renew_loop]
        return inputs

    def on_beat(self, received: Received, now: float) -> None:
        """A datagram of the slave: contact, its term and state, and (granted) a lease renewal."""
        beat = received.beat
        if self.guard is not None and beat.flags & GRANTS_LEASE and received.acked_sent_at is not None:
            self.guard.renew(received.acked_sent_at, "an acknowledged heartbeat")
        if self.link is not None and self.link.report_due(beat, now):
            self.submit(PeerReport(now, beat.term, beat.state))
            self.submit(Reachability(now, True, None))  # contact, for the isolation rule

    def operator_request(self, command: OperatorCommand) -> Message:
        """A switchback starts the service here only under a lease: the slave grants again once
        it is held with its service down, a datagram later; wait for that renewal (briefly)."""
        if command.action == "switchback-start" and self.guard is not None:
            end = time.monotonic() + LEASE_WAIT
            while self.guard.left(time.monotonic()) <= 0 and time.monotonic() < end:
                time.sleep(self.config.BEAT_INTERVAL / 2)
            if self.guard.left(time.monotonic()) <= 0:
                return Refused(
                    f"no lease: the slave grants none (it must be held with its service down) and the load "
                    f"balancer renews none (this server is MAINT there); waited {LEASE_WAIT:g} s"
                )
        return super().operator_request(command)

    def live_observations(self, now: float) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        if self.link is not None:
            seen.update(self.link.health(now))
        if self.guard is not None:
            seen["lease_left"] = round(self.guard.left(now), 3)
            seen["lease_renewed_by"] = self.guard.renewed_by
        return seen

    def say_goodbye(self) -> None:
        """Stopped cleanly by an operator: the last heartbeat says so (a normal shutdown)."""
        if self.node.state not in (State.ACTIVE, State.RESTARTING):
            return
        ok = self._health[0]
        beat = Heartbeat(
            self.node.term,
            self.node.state.value,
            ok,
            "the master's agents were stopped cleanly",
            Condition.AGENTS_STOPPED.value,
        )
        try:
            request(
                self.config.SLAVE_HOST, self.config.MONITOR_PORT_SLAVE, self.secret, beat, self.config.CONTROL_TIMEOUT
            )
            self.log.info("told the slave that the master's agents stop")
        except (ChannelError, ProtocolError) as e:  # channel raises only its own errors
            self.log.warning("could not tell the slave that the agents stop: %s", e)

    def serve_local(self, message: Message, peer: str) -> Message:
        """socketserver (or fence-self) forwards an authenticated SHUTDOWN_YOUR_SERVICE; answer when it is done."""
        if not isinstance(message, ShutdownYourService):
            return super().serve_local(message, peer)
        self.log.warning("SHUTDOWN_YOUR_SERVICE for term %d from %s: %s", message.term, peer, message.reason)
        waiter = self.expect_reply(message.term)
        self.submit(ShutdownRequested(time.monotonic(), term=message.term))
        return self.answer(waiter, self.config.SHUTDOWN_ACK_TIMEOUT)

    def expect_reply(self, term: int) -> _Waiter:
        waiter = _Waiter(term)
        with self._lock:
            self._waiters.append(waiter)
        return waiter

    def answer(self, waiter: _Waiter, timeout: float) -> Ack:
        if not waiter.done.wait(timeout) or waiter.reply is None:
            with self._lock:
                self._waiters.remove(waiter)
            return Ack(waiter.term, False, "the shutdown did not finish in time")
        return Ack(waiter.term, waiter.reply.ok, waiter.reply.detail)

    # ------------------------------------------------------------------ actions

    def executors(self) -> dict[type[Action], Callable[[Any], Event | None]]:
        return {**super().executors(), Reply: self.reply, SendHeartbeat: self.heartbeat_now}

    def reply(self, action: Reply) -> None:
        """Answer every pending SHUTDOWN_YOUR_SERVICE of this term or before."""
        with self._lock:
            answered = [w for w in self._waiters if w.term <= action.term]
            self._waiters = [w for w in self._waiters if w.term > action.term]
        for waiter in answered:
            waiter.resolve(action)
        self.log.info("%s for term %d: %s", "ACK" if action.ok else "NACK", action.term, action.detail)

    def heartbeat_now(self, action: SendHeartbeat) -> None:
        self._heartbeat_now.set()


def fence_self(config: Config, term: int, log: logging.Logger) -> dict[str, Any]:
    """The master stops its service for `term` when the slave asks over SSH (the fence by ssh):
    through lhcd if it answers; else as lhcd would, holding lhcd's lock so none starts meanwhile.
    A hung lhcd (it holds the lock, it does not answer) is killed first: the fence must not wait."""
    request = ShutdownYourService(term, "fence over ssh")
    try:  # FENCE_TIMEOUT covers twice the stop budget: this attempt, then the one without lhcd
        answer = local_call(socket_path(config, "lhcd"), local_request(request, "rcmd"), config.stop_budget())
        ack = parse_local_answer(answer, request)
        if isinstance(ack, Ack):
            return {"ok": ack.ok, "term": ack.term, "detail": ack.detail}
        log.warning("lhcd refused the fence: %s", ack)
    except (ChannelError, ProtocolError) as e:
        log.warning("lhcd does not answer (%s): stopping the service without it", e)
    try:
        pid = running_pid(pid_path(config, "lhcd"))
        if pid:
            log.warning("killing the hung lhcd (pid %d)", pid)
            with contextlib.suppress(ProcessLookupError):
                signal_daemon(pid, signal.SIGKILL)
            end = time.monotonic() + 5
            while running_pid(pid_path(config, "lhcd")) and time.monotonic() < end:
                time.sleep(0.02)
        lock = PidLock(pid_path(config, "lhcd"), "lhcd")
    except (PidUnknown, AlreadyRunning) as e:
        # A lock holder we cannot name is never signalled: the fence fails and says why.
        return {"ok": False, "term": term, "detail": f"cannot stop the service without lhcd: {e}"}
    try:
        agent = Lhcd(config, log)
        waiter = agent.expect_reply(term)
        agent.process(Started(time.monotonic()))
        agent.process(ShutdownRequested(time.monotonic(), term=term))  # runs the scripts and the check
        ack = agent.answer(waiter, 0)
        return {"ok": ack.ok, "term": ack.term, "detail": ack.detail}
    finally:
        lock.release()


def run(config: Config, stop: threading.Event, log: logging.Logger) -> None:
    agent = Lhcd(config, log)
    try:
        agent.serve(stop, [agent.watch_service, agent.send_heartbeats, *agent.stream_inputs()])
    finally:
        if agent.link is not None:
            agent.link.close()
    agent.say_goodbye()

"""The slave's agent: `Rhcd`, what the rhcd daemon runs (agents/slave/rhcd.py).

Rhcd probes the master's POP3 service every PROBE_INTERVAL (at once when the master's heartbeat
says its service is down), takes the heartbeats that socketserver2 forwards, and carries out
the failover the machine decides: SHUTDOWN_YOUR_SERVICE to the master, then (ACK or a
confirmed fence) the startup scripts and a check that this host's service answers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from failover import fencing, service
from failover.agent import Agent
from failover.beatlink import BeatLink
from failover.channel import ChannelError, request
from failover.config import Config
from failover.heartbeat import Received
from failover.machine import (
    Action,
    Condition,
    Event,
    Fence,
    FenceConfirmed,
    FenceResult,
    LocalHealth,
    PeerReport,
    ProbeNow,
    ProbeResult,
    Reachability,
    Role,
    SendShutdown,
    ShutdownAnswered,
    State,
)
from failover.probes import pop3_probe
from failover.protocol import (
    Ack,
    ConfirmFenced,
    Heartbeat,
    HeartbeatReply,
    Message,
    OperatorAnswer,
    ProtocolError,
    Refused,
    ShutdownYourService,
)
from failover.state import wall_clock

RETRY = 0.2  # seconds between attempts to reach the master's socketserver while waiting for the ACK


class Rhcd(Agent):
    TICK = 0.1  # the silence and the ACK timeout are judged this often (the lease's end: at once)

    def __init__(self, config: Config, log: logging.Logger) -> None:
        super().__init__(config, Role.SLAVE, "rhcd", log)
        self._probe_now = threading.Event()
        self._probe_timeout: float | None = None  # a ProbeNow's bound for the next probe only
        self._sending = threading.Lock()  # at most one SHUTDOWN_YOUR_SERVICE exchange at a time
        self.link: BeatLink | None = None

    def stream_inputs(self) -> list[Callable[[threading.Event], None]]:
        self.link = BeatLink(self.config, Role.SLAVE, self.secret, self.log, lambda: self.node, self.on_beat)
        return [self.link.run]

    def on_beat(self, received: Received, now: float) -> None:
        """A datagram of the master: contact, and what it says of itself and its service."""
        beat = received.beat
        if self.link is not None and self.link.report_due(beat, now):
            self.submit(PeerReport(now, beat.term, beat.state, None, "", beat.condition, beat.silent))

    def live_observations(self, now: float) -> dict[str, Any]:
        return {} if self.link is None else self.link.health(now)

    # ------------------------------------------------------------------ inputs

    def probe_master(self, stop: threading.Event) -> None:
        """Probe the master's service every PROBE_INTERVAL, or at once when asked."""
        c = self.config
        last_ok: bool | None = None
        while not stop.is_set():
            self._probe_now.clear()
            bound, self._probe_timeout = self._probe_timeout, None
            timeout = c.REMOTE_POP3_TIMEOUT if bound is None else min(bound, c.REMOTE_POP3_TIMEOUT)
            taken = time.monotonic()
            outcome = pop3_probe(c.REMOTE_POP3_HOST, c.REMOTE_POP3_PORT, timeout, c.POP3_PROBE_USER, c.POP3_PROBE_PASS)
            if outcome.ok != last_ok:
                self.log.log(
                    logging.INFO if outcome.ok else logging.WARNING,
                    "probe of the master %s: %s",
                    "OK" if outcome.ok else "FAILED",
                    outcome.detail,
                )
            last_ok = outcome.ok
            self.observe(
                probe_ok=outcome.ok,
                probe_detail=outcome.detail,
                probe_latency=round(outcome.latency, 4),
                probe_time=wall_clock(),
            )
            witness = self.probe_witness()
            if witness is not None:
                self.submit(Reachability(time.monotonic(), None, witness))
            self.submit(ProbeResult(time.monotonic(), outcome.ok, outcome.detail, taken=taken))
            if self.node.state in (State.ACTIVE, State.FAILED):
                taken = time.monotonic()
                ok, detail = service.health(c, Role.SLAVE)
                self.observe(local_service_ok=ok, local_service_detail=detail)
                self.submit(LocalHealth(time.monotonic(), ok, detail, taken=taken))
            self._probe_now.wait(c.PROBE_INTERVAL)

    def serve_local(self, message: Message, peer: str) -> Message:
        """Heartbeats forwarded by socketserver2, and confirm-fenced from the operator."""
        if isinstance(message, Heartbeat):
            report = PeerReport(
                time.monotonic(),
                message.term,
                State(message.state),
                message.service_ok,
                message.detail,
                Condition(message.condition),
            )
            self.observe(
                heartbeat_time=wall_clock(),
                heartbeat_mono=time.monotonic(),
                master_term=report.term,
                master_state=report.state.value,
                master_service_ok=report.service_ok,
                master_detail=report.detail,
                master_condition=report.condition.value,
            )
            # While the stream brings datagrams, it alone tells the machine: it is ordered (its
            # sequence numbers), and a TCP heartbeat composed before the latest datagram but
            # delivered after it would take the master's news back (its service failed, then "up").
            # The master's goodbye (its agents stop cleanly) comes only this way: always taken.
            heard = None if self.link is None else self.link.last_received
            silent = heard is None or time.monotonic() - heard >= self.config.HEARTBEAT_TIMEOUT
            if silent or report.condition is Condition.AGENTS_STOPPED:
                self.submit(report)
            return HeartbeatReply(self.node.term, self.node.state.value)
        if isinstance(message, ConfirmFenced):
            term = self.node.term if message.term is None else message.term
            self.log.warning("operator confirms the master is fenced for term %d", term)
            # a fence step may be running: the decision can wait for it
            wait = self.config.fence_wait()
            node = self.submit_and_wait(FenceConfirmed(time.monotonic(), term, "operator (confirm-fenced)"), wait)
            return OperatorAnswer(True, node.reason, node.state.value, node.term)
        return super().serve_local(message, peer)

    # ------------------------------------------------------------------ actions

    def executors(self) -> dict[type[Action], Callable[[Any], Event | None]]:
        return {**super().executors(), ProbeNow: self.probe_now, SendShutdown: self.send_shutdown, Fence: self.fence}

    def probe_now(self, action: ProbeNow) -> None:
        if action.timeout is not None:
            self._probe_timeout = action.timeout
        self._probe_now.set()

    def granted_receipt(self) -> float | None:
        return None if self.link is None else self.link.granted_receipt()

    def send_shutdown(self, action: SendShutdown) -> None:
        """One exchange at a time, off the loop: its answer comes back as an event."""
        if self._sending.acquire(blocking=False):
            threading.Thread(target=self._send_shutdown, args=(action,), daemon=True).start()

    def fence(self, action: Fence) -> Event:
        self.log.warning("fencing the master for term %d by %s", action.term, action.method)
        ok, detail = fencing.fence(self.config, action.term, action.method, self.script_env("fence"))
        self.log.log(
            logging.WARNING if ok else logging.ERROR,
            "fence by %s %s: %s",
            action.method,
            "CONFIRMED" if ok else "failed",
            detail,
        )
        return FenceResult(time.monotonic(), action.term, action.method, ok, detail)

    def _send_shutdown(self, action: SendShutdown) -> None:
        """Deliver SHUTDOWN_YOUR_SERVICE and wait for the answer until the ACK timeout; the
        answer (or nothing, and the machine's deadline) comes back to the loop as an event."""
        c = self.config
        end = time.monotonic() + action.timeout
        message = ShutdownYourService(action.term, self.node.reason[:1000])
        try:
            while (left := end - time.monotonic()) > 0:
                self.log.info(
                    "sending SHUTDOWN_YOUR_SERVICE for term %d to %s:%d", action.term, c.MASTER_HOST, c.MONITOR_PORT
                )
                try:
                    reply = request(c.MASTER_HOST, c.MONITOR_PORT, self.secret, message, left)
                except ChannelError as e:  # channel raises only its own errors
                    self.log.warning("no answer from the master's socketserver: %s", e)
                    time.sleep(min(RETRY, max(0.0, end - time.monotonic())))
                    continue
                except ProtocolError as e:
                    self.log.error("refused the master's answer: %s", e)
                    time.sleep(min(RETRY, max(0.0, end - time.monotonic())))
                    continue
                if isinstance(reply, Ack):
                    self.submit(ShutdownAnswered(time.monotonic(), reply.term, reply.ok, reply.detail))
                elif isinstance(reply, Refused):
                    self.submit(ShutdownAnswered(time.monotonic(), action.term, False, f"refused: {reply.reason}"))
                else:
                    self.log.error("unexpected answer %s to SHUTDOWN_YOUR_SERVICE", reply.TYPE)
                return
        except Exception:
            # a one-shot thread: nothing restarts it, and the machine's ACK deadline moves the
            # failover on (FENCING) without it; what went wrong must still be in the log
            self.log.exception("sending SHUTDOWN_YOUR_SERVICE for term %d failed", action.term)
        finally:
            self._sending.release()


def run(config: Config, stop: threading.Event, log: logging.Logger) -> None:
    agent = Rhcd(config, log)
    try:
        agent.serve(stop, [agent.probe_master, *agent.stream_inputs()])
    finally:
        if agent.link is not None:
            agent.link.close()

"""Config: a validated config, one field per key, and what the agents derive from it (the fence
chain, the triggers, the machine's Policy, each role's host and ports)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from failover.config.rules import stop_budget
from failover.config.values import LoadBalancerConfig
from failover.heartbeat import LeaseTimes, takeover_wait
from failover.machine import FenceMethod, OnAckTimeout, Policy, Role, Trigger
from failover.sync.files import SyncEntry

TRIGGER_FLAGS = (Trigger.ABNORMAL_SHUTDOWN, Trigger.COMMUNICATION_LOSS, Trigger.NORMAL_SHUTDOWN)


@dataclass(frozen=True)
class Config:
    """A validated config. Paths are absolute (relative ones are taken from the file's directory)."""

    MASTER_HOST: str
    SLAVE_HOST: str
    MONITOR_PORT: int
    MONITOR_PORT_SLAVE: int
    SECRET_FILE: str
    SHUTDOWN_SCRIPTS: tuple[str, ...]
    STARTUP_SCRIPTS: tuple[str, ...]
    REMOTE_POP3_HOST: str
    REMOTE_POP3_PORT: int
    REMOTE_POP3_TIMEOUT: float
    SLAVE_POP3_HOST: str
    SLAVE_POP3_PORT: int
    POP3_PROBE_USER: str | None
    POP3_PROBE_PASS: str | None
    RLOGIN_USER: str
    RLOGIN_PASS: str | None
    RLOGIN_PORT: int
    RLOGIN_KEY_FILE: str | None
    RLOGIN_KNOWN_HOSTS: str | None
    REMOTE_FAILOVER: str | None
    REMOTE_CONFIG: str | None
    LOAD_BALANCER: LoadBalancerConfig | None
    FENCE_SCRIPTS: tuple[str, ...]
    FENCE_TIMEOUT: float
    WITNESS: str | None
    ISOLATION_TIMEOUT: float
    PROBE_INTERVAL: float
    PROBE_FAILURES: int
    HEARTBEAT_INTERVAL: float
    BEAT_INTERVAL: float
    LEASE: bool
    LEASE_TIME: float
    HARD_STOP_TIMEOUT: float
    HARD_STOP_SCRIPTS: tuple[str, ...]
    SHUTDOWN_ACK_TIMEOUT: float
    SCRIPT_TIMEOUT: float
    SERVICE_CHECK_TIMEOUT: float
    CONTROL_TIMEOUT: float
    ON_ACK_TIMEOUT: OnAckTimeout
    HEARTBEAT_TIMEOUT: float
    RESTART_SCRIPTS: tuple[str, ...]
    RESTART_LIMIT: int
    RESTART_WINDOW: float
    TRIGGER_ABNORMAL_SHUTDOWN: bool
    TRIGGER_COMMUNICATION_LOSS: bool
    TRIGGER_NORMAL_SHUTDOWN: bool
    TRIGGER_ABNORMAL_SHUTDOWN_SCRIPTS: tuple[str, ...]
    TRIGGER_COMMUNICATION_LOSS_SCRIPTS: tuple[str, ...]
    TRIGGER_NORMAL_SHUTDOWN_SCRIPTS: tuple[str, ...]
    BEFORE_FAILOVER_SCRIPTS: tuple[str, ...]
    BEFORE_FAILOVER_REQUIRED: bool
    AFTER_FAILOVER_SCRIPTS: tuple[str, ...]
    NOTIFY_SCRIPTS: tuple[str, ...]
    SYNC_FAILURE_SCRIPTS: tuple[str, ...]
    SYNC_FILES: tuple[SyncEntry, ...]
    SYNC_INTERVAL: float
    SYNC_TIMEOUT: float
    SYNC_FAILURE_LIMIT: int
    SYNC_START_SERVICES: bool
    SYNC_ROOT: dict[str, str]
    SERVICE_PIDFILE: str | None
    STATE_DIR: str
    LOG_DIR: str
    VERSION: str
    source: str = "failover_config.py"  # the file it came from (for messages)
    base_dir: str = "."  # where relative script paths are resolved and scripts run
    warnings: tuple[str, ...] = ()

    def stop_budget(self) -> float:
        """The longest a graceful stop of the service may take (rules.stop_budget)."""
        return stop_budget(self.SCRIPT_TIMEOUT, len(self.SHUTDOWN_SCRIPTS), self.SERVICE_CHECK_TIMEOUT)

    def fence_wait(self) -> float:
        """How long rhcd lets `confirm-fenced` wait for its decision: a fence step may be under
        way, and each step of the chain takes at most FENCE_TIMEOUT (one more for the one running)."""
        return self.FENCE_TIMEOUT * (len(self.fence_methods()) + 1) + self.CONTROL_TIMEOUT

    def lease_times(self) -> LeaseTimes | None:
        """The lease's numbers, or None when the pair runs without one (no LOAD_BALANCER to
        arbitrate, or LEASE = False): then no takeover happens without an ACK or a fence."""
        if not (self.LEASE and self.LOAD_BALANCER):
            return None
        return LeaseTimes.for_config(self.LEASE_TIME, self.HARD_STOP_TIMEOUT, self.HEARTBEAT_TIMEOUT)

    def fence_methods(self) -> tuple[FenceMethod, ...]:
        """The fence chain this config allows, in the order it is tried."""
        methods = []
        if self.RLOGIN_KEY_FILE or self.RLOGIN_PASS:
            methods.append(FenceMethod.SSH)
        if self.LOAD_BALANCER:
            methods.append(FenceMethod.LOAD_BALANCER)
        if self.FENCE_SCRIPTS:
            methods.append(FenceMethod.SCRIPTS)
        return tuple(methods)

    def triggers(self) -> frozenset[Trigger]:
        """The failover triggers enabled by their flags (none: manual mode)."""
        return frozenset(t for t in TRIGGER_FLAGS if getattr(self, f"TRIGGER_{t.name}"))

    def trigger_scripts(self, trigger: Trigger | None) -> tuple[str, ...]:
        if trigger is None or trigger is Trigger.SWITCHOVER:
            return ()
        scripts: tuple[str, ...] = getattr(self, f"TRIGGER_{trigger.name}_SCRIPTS")
        return scripts

    def sync_entries(self) -> tuple[SyncEntry, ...]:
        return self.SYNC_FILES

    def sync_root(self, role: Role) -> str:
        """Where SYNC_FILES paths live on `role`'s host ("/" unless both roles share a machine)."""
        return self.SYNC_ROOT[role.value]

    def policy(self) -> Policy:
        everything = frozenset(Trigger)
        prepare = (
            everything if self.BEFORE_FAILOVER_SCRIPTS else frozenset(t for t in everything if self.trigger_scripts(t))
        )
        return Policy(
            self.PROBE_FAILURES,
            self.SHUTDOWN_ACK_TIMEOUT,
            self.ON_ACK_TIMEOUT,
            self.fence_methods(),
            self.LOAD_BALANCER is not None,
            self.ISOLATION_TIMEOUT if self.WITNESS else None,
            triggers=self.triggers(),
            restart_limit=self.RESTART_LIMIT,
            restart_window=self.RESTART_WINDOW,
            heartbeat_timeout=self.HEARTBEAT_TIMEOUT,
            prepare=prepare,
            before_required=self.BEFORE_FAILOVER_REQUIRED,
            after_hooks=bool(self.AFTER_FAILOVER_SCRIPTS),
            sync_failure_hooks=bool(self.SYNC_FAILURE_SCRIPTS),
            notify=bool(self.NOTIFY_SCRIPTS),
            takeover_wait=None if (times := self.lease_times()) is None else takeover_wait(times),
            lb_takeover_wait=None if times is None else takeover_wait(times, by_load_balancer=True),
        )

    def witness_address(self) -> tuple[str, int] | None:
        if not self.WITNESS:
            return None
        host, _, port = self.WITNESS.rpartition(":")
        return host, int(port)

    def host_of(self, role: Role) -> str:
        return self.MASTER_HOST if role is Role.MASTER else self.SLAVE_HOST

    def monitor_port_of(self, role: Role) -> int:
        return self.MONITOR_PORT if role is Role.MASTER else self.MONITOR_PORT_SLAVE

    def pop3_of(self, role: Role) -> tuple[str, int]:
        """Where this role's own POP3 service answers."""
        if role is Role.MASTER:
            return self.REMOTE_POP3_HOST, self.REMOTE_POP3_PORT
        return self.SLAVE_POP3_HOST, self.SLAVE_POP3_PORT

    def read_secret(self) -> bytes:
        return Path(self.SECRET_FILE).read_bytes().strip()

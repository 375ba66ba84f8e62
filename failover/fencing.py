"""The fence chain's steps as the slave carries them out, each within FENCE_TIMEOUT.

- ssh: rcmd runs `failover fence-self --term T` on the master, which stops the service through
  the master's own agent (so its state says INACTIVE for that term, across restarts) and
  verifies that it is down. Confirmed only by that command's own "ok".
- loadbalancer: the master's server goes to maintenance, its sessions are cut, and the read
  back shows MAINT: no client reaches the master through the load balancer any more.
- scripts: the operator's FENCE_SCRIPTS (power off, storage fence, ...); exit 0 means fenced.
The operator's `failover confirm-fenced` is the last step; it does not pass through here.
"""

from __future__ import annotations

import json

from failover.config import Config
from failover.loadbalancer import HAProxyRuntime, LoadBalancer, LoadBalancerError
from failover.machine import FenceMethod, Role
from failover.scripts import run_scripts


def load_balancer(config: Config) -> LoadBalancer | None:
    lb = config.LOAD_BALANCER
    if lb is None:
        return None
    return HAProxyRuntime(
        lb.address, lb.backend, {Role.MASTER: lb.master_server, Role.SLAVE: lb.slave_server}, lb.timeout
    )


def fence(config: Config, term: int, method: FenceMethod, env: dict[str, str]) -> tuple[bool, str]:
    """Try one fence method; (True, what proves it) or (False, why not)."""
    if method is FenceMethod.SSH:
        return _ssh(config, term)
    if method is FenceMethod.LOAD_BALANCER:
        lb = load_balancer(config)
        if lb is None:
            return False, "no LOAD_BALANCER configured"
        try:
            return True, lb.fence(Role.MASTER)
        except LoadBalancerError as e:
            return False, str(e)
    result = run_scripts(config.FENCE_SCRIPTS, config.FENCE_TIMEOUT, config.base_dir, env)
    return result.ok, result.summary()


def _ssh(config: Config, term: int) -> tuple[bool, str]:
    # imported here: paramiko costs every daemon about 15 MB, and only a fencing slave needs it
    from failover.ssh import RcmdError, from_config, remote_failover

    command = remote_failover(config, Role.MASTER, "fence-self", "--term", str(term))
    try:
        result = from_config(config, config.MASTER_HOST).run(command, config.FENCE_TIMEOUT)
    except RcmdError as e:
        return False, str(e)
    lines = result.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else {}
    except ValueError:
        answer = {}
    if result.returncode == 0 and answer.get("ok") is True:
        return True, f"over ssh, the master's agent stopped the service: {answer.get('detail', '')}"
    why = answer.get("detail") or (result.stderr.strip().splitlines() or ["no answer"])[-1]
    return False, f"ssh fence-self exited {result.returncode}: {why}"

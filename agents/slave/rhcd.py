"""rhcd, the remote health-check daemon of the slave: the program around failover.slave_agent.

    python -m agents.slave.rhcd --config failover_config.py [--foreground]

It probes the master's service, takes the master's heartbeats and carries out the failover
the machine decides (failover.slave_agent.Rhcd); failover.daemon gives it its pid lock, logs,
signals and readiness.
"""

from __future__ import annotations

import sys

from failover.daemon import daemon_main
from failover.machine import Role
from failover.slave_agent import run

if __name__ == "__main__":
    sys.exit(daemon_main("rhcd", Role.SLAVE, run))

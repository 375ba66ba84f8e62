"""socketserver2, the slave's control server on MONITOR_PORT_SLAVE: the program around
failover.slave_control.

    python -m agents.slave.socketserver2 --config failover_config.py [--foreground]

It authenticates every request and serves HEARTBEAT (handed to rhcd, or answered from the
state file), the operator's commands and STATUS; failover.daemon gives it its pid lock, logs,
signals and readiness.
"""

from __future__ import annotations

import sys

from failover.daemon import daemon_main
from failover.machine import Role
from failover.slave_control import run

if __name__ == "__main__":
    sys.exit(daemon_main("socketserver2", Role.SLAVE, run))

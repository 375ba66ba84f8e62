"""lhcd, the local heart-beat daemon of the master: the program around failover.master_agent.

    python -m agents.master.lhcd --config failover_config.py [--foreground]

It watches the master's own service, sends the slave heartbeats and carries out
SHUTDOWN_YOUR_SERVICE (failover.master_agent.Lhcd); failover.daemon gives it its pid lock,
logs, signals and readiness.
"""

from __future__ import annotations

import sys

from failover.daemon import daemon_main
from failover.machine import Role
from failover.master_agent import run

if __name__ == "__main__":
    sys.exit(daemon_main("lhcd", Role.MASTER, run))

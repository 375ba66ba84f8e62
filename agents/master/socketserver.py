"""socketserver, the master's control server on MONITOR_PORT: the program around
failover.master_control.

    python -m agents.master.socketserver --config failover_config.py [--foreground]

It authenticates every request and serves SHUTDOWN_YOUR_SERVICE (handed to lhcd), the
operator's commands and STATUS; failover.daemon gives it its pid lock, logs, signals and
readiness.
"""

from __future__ import annotations

import sys

from failover.daemon import daemon_main
from failover.machine import Role
from failover.master_control import run

if __name__ == "__main__":
    sys.exit(daemon_main("socketserver", Role.MASTER, run))

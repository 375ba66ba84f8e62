"""The tests' loopback pair: fast timings, starting it until its agents talk, and the settings of
an sshd for the fence by ssh and the sync. The fixtures around them are in
tests/integration/conftest.py; bench/sync.py uses them too."""

from __future__ import annotations

import json
import os
import pwd
import time
from pathlib import Path
from typing import Any

from failover.lab.pair import LoopbackPair
from failover.machine import Role
from tests.harness.sshd import SshdInstance

# Timings of the tests' pair: fast, and small enough for the timing rules
# (SHUTDOWN_ACK_TIMEOUT > SCRIPT_TIMEOUT x 1 + SERVICE_CHECK_TIMEOUT).
QUICK: dict[str, Any] = {
    "PROBE_INTERVAL": 0.1,
    "PROBE_FAILURES": 3,
    "REMOTE_POP3_TIMEOUT": 1.0,  # headroom on a loaded 2-core CI machine
    "HEARTBEAT_INTERVAL": 0.3,
    "SHUTDOWN_ACK_TIMEOUT": 4.0,
    "SCRIPT_TIMEOUT": 2.0,
    "SERVICE_CHECK_TIMEOUT": 1.5,
    "CONTROL_TIMEOUT": 1.0,
}


def start_pair(pair: LoopbackPair) -> None:
    """The master's POP3 server, then both agents, until they talk."""
    pair.pop3[Role.MASTER].start()
    pair.start_agents(Role.MASTER)
    pair.start_agents(Role.SLAVE)
    wait_heartbeat_seen(pair)


def wait_heartbeat_seen(pair: LoopbackPair, timeout: float = 15) -> None:
    """Both agents up and talking: the slave's status shows a heartbeat from the master."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            status = json.loads(Path(pair.dir, "state", "rhcd.status.json").read_text())
            if "heartbeat_time" in status["observations"] and "probe_ok" in status["observations"]:
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"the agents did not start talking:\n{pair.logs()}")


def ssh_settings(sshd: SshdInstance) -> dict[str, object]:
    return {
        "RLOGIN_USER": pwd.getpwuid(os.getuid()).pw_name,
        "RLOGIN_PORT": sshd.port,
        "RLOGIN_KEY_FILE": sshd.key_file,
        "RLOGIN_KNOWN_HOSTS": sshd.known_hosts,
    }

"""A real loopback pair for the end-to-end tests: real Dovecot, real agent processes."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from failover.localpop3 import dovecot_available
from failover.loopback import LoopbackPair
from failover.machine import Role
from tests.conftest import POP3_KIND
from tests.sshd import SshdInstance

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


@pytest.fixture
def make_pair() -> Iterator[Callable[..., LoopbackPair]]:
    """make_pair(**config_overrides): a pair with the master's POP3 running and both agents up."""
    if POP3_KIND == "dovecot" and not dovecot_available():
        pytest.fail("Dovecot is not installed: run scripts/setup.sh (or set FAILOVER_TEST_POP3=builtin)")
    pairs: list[LoopbackPair] = []

    def make(start: bool = True, **overrides: Any) -> LoopbackPair:
        pair = LoopbackPair(pop3_kind=POP3_KIND, **{**QUICK, **overrides})
        pairs.append(pair)
        if start:
            start_pair(pair)
        return pair

    yield make
    for pair in pairs:
        pair.close()


def start_pair(pair: LoopbackPair) -> None:
    """The master's POP3 server, then both agents, until they talk."""
    pair.pop3[Role.MASTER].start()
    pair.start_agents(Role.MASTER)
    pair.start_agents(Role.SLAVE)
    wait_heartbeat_seen(pair)


def wait_heartbeat_seen(pair: LoopbackPair, timeout: float = 15) -> None:
    """Both agents up and talking: the slave's status shows a heartbeat from the master."""
    import json
    import time
    from pathlib import Path

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


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshdInstance]:
    instance = SshdInstance(str(tmp_path / "sshd"))
    instance.start()
    yield instance
    instance.stop()


def ssh_settings(sshd: SshdInstance) -> dict[str, object]:
    import pwd

    return {
        "RLOGIN_USER": pwd.getpwuid(os.getuid()).pw_name,
        "RLOGIN_PORT": sshd.port,
        "RLOGIN_KEY_FILE": sshd.key_file,
        "RLOGIN_KNOWN_HOSTS": sshd.known_hosts,
    }

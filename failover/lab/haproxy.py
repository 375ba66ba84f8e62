"""A real HAProxy in front of the pair's two POP3 servers, for tests and benchmarks.

The recipe of shared/components.md: TCP mode, a POP3 `+OK` check every 200 ms, the slave's
server as `backup`, `on-marked-down shutdown-sessions`, and an admin stats socket that
failover.loadbalancer drives. Ready means the frontend listens and the primary's check passed.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from failover.loadbalancer import HAProxyRuntime
from failover.machine import Role
from failover.scripts import stop_group

HAPROXY = "/usr/sbin/haproxy"
BACKEND = "pop3_pool"
SERVER_NAMES = {Role.MASTER: "master", Role.SLAVE: "slave"}


class HAProxyInstance:
    def __init__(
        self,
        directory: str,
        frontend: tuple[str, int],
        servers: dict[Role, tuple[str, int]],
        admin_tcp: str | None = None,
        check_interval: str = "200ms",
    ) -> None:
        """The runtime API listens on `directory`/admin.sock (for whoever shares this file system)
        and, with `admin_tcp` ("host:port"), over TCP as well (for agents on other hosts).
        `check_interval`: HAProxy's `inter` between two POP3 checks of each server."""
        self.dir, self.frontend, self.servers = directory, frontend, servers
        self.admin = f"unix:{directory}/admin.sock"
        self.admin_tcp = admin_tcp
        self.proc: subprocess.Popen[bytes] | None = None
        os.makedirs(directory, exist_ok=True)
        bind = f"{directory}/admin.sock mode 600 level admin"
        if admin_tcp:
            bind += f"\n    stats socket ipv4@{admin_tcp} level admin"
        lines = "\n".join(
            f"    server {SERVER_NAMES[role]} {host}:{port} check" + (" backup" if role is Role.SLAVE else "")
            for role, (host, port) in servers.items()
        )
        Path(directory, "haproxy.cfg").write_text(f"""\
global
    log stdout format raw local0 info
    stats socket {bind}
defaults
    mode tcp
    log global
    option tcplog
    timeout connect 500ms
    timeout client 30s
    timeout server 30s
    timeout check 300ms
frontend pop3_in
    bind {frontend[0]}:{frontend[1]}
    default_backend {BACKEND}
backend {BACKEND}
    option tcp-check
    tcp-check expect string +OK
    default-server inter {check_interval} fall 2 rise 1 on-marked-down shutdown-sessions
{lines}
""")

    def runtime(self, timeout: float = 2.0) -> HAProxyRuntime:
        return HAProxyRuntime(self.admin, BACKEND, dict(SERVER_NAMES), timeout)

    def start(self, timeout: float = 10.0, netns: str | None = None) -> None:
        command = [HAPROXY, "-db", "-f", os.path.join(self.dir, "haproxy.cfg")]
        if netns:
            command = ["ip", "netns", "exec", netns, *command]
        log = open(os.path.join(self.dir, "haproxy.log"), "wb")  # noqa: SIM115 - kept open for the process
        self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"haproxy exited: {Path(self.dir, 'haproxy.log').read_text()[-800:]}")
            try:
                if self.runtime().status(Role.MASTER) in ("UP", "DOWN", "MAINT"):
                    return
            except Exception:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"haproxy not ready after {timeout:g} s")

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc, grace=5.0)

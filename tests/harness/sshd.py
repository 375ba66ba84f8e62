"""A real OpenSSH server on a loopback port (or inside a network namespace), for the tests of
rcmd, the fence by ssh and the sync, and for bench/sync.py.

The recipe of shared/components.md: its own host key and client key, no system config, key
authentication only, StrictModes off for temporary directories.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from failover.lab.pop3 import free_port
from failover.scripts import stop_group

SSHD = "/usr/sbin/sshd"


class SshdInstance:
    def __init__(self, directory: str, address: str = "127.0.0.1", port: int = 0) -> None:
        self.dir, self.address = directory, address
        if port == 0:
            port = free_port()
        self.port = port
        os.makedirs(directory, exist_ok=True)
        for name in ("host_ed25519", "client_ed25519"):
            if not os.path.exists(f"{directory}/{name}"):
                subprocess.run(
                    ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", f"{directory}/{name}"], check=True
                )
        Path(directory, "authorized_keys").write_text(Path(directory, "client_ed25519.pub").read_text())
        key_type, key = Path(directory, "host_ed25519.pub").read_text().split()[:2]
        host = f"[{address}]:{port}" if port != 22 else address
        Path(directory, "known_hosts").write_text(f"{host} {key_type} {key}\n")
        Path(directory, "sshd_config").write_text(f"""\
ListenAddress {address}:{port}
HostKey {directory}/host_ed25519
PidFile none
AuthorizedKeysFile {directory}/authorized_keys
UsePAM no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
LogLevel VERBOSE
Subsystem sftp internal-sftp
""")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def key_file(self) -> str:
        return f"{self.dir}/client_ed25519"

    @property
    def known_hosts(self) -> str:
        return f"{self.dir}/known_hosts"

    def start(self, netns: str | None = None, timeout: float = 10.0) -> None:
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        command = [SSHD, "-D", "-e", "-f", f"{self.dir}/sshd_config"]
        if netns:
            command = ["ip", "netns", "exec", netns, *command]
        log = open(f"{self.dir}/sshd.log", "wb")  # noqa: SIM115 - kept open for the process
        self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {Path(self.dir, 'sshd.log').read_text()[-800:]}")
            if netns:  # readiness from inside the namespace is the caller's business
                time.sleep(0.2)
                return
            try:
                with socket.create_connection((self.address, self.port), timeout=1) as s:
                    if s.recv(64).startswith(b"SSH-2.0-"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("sshd not ready")

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc, grace=5.0)

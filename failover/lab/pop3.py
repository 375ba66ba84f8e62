"""POP3 services on this machine for the demo, the benchmark and the tests.

`Pop3Instance` prepares a directory for one POP3 server on address:port and starts or kills
it: a real Dovecot (the recipe of shared/components.md, as root or not) when it is installed,
otherwise the small built-in responder of `failover.lab.pop3d`. Each instance has its own
directory, pid file and greeting, so two of them (a master and a slave) can run side by side.
`start_command()` / `stop_command()` give the shell commands that the failover scripts run.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shlex
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from failover.probes import pop3_probe, process_alive
from failover.scripts import run_script

DOVECOT = "/usr/sbin/dovecot"
USER, PASSWORD = "test", "secret"
SCRIPTS_DIR = Path(__file__).resolve().parents[2] / "scripts"


def dovecot_available() -> bool:
    return os.access(DOVECOT, os.X_OK) and shutil.which("doveconf") is not None


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback TCP port nothing listens on, never one this process handed out before.

    The kernel may give the same free port to two binds in a row (a CI run saw REMOTE_POP3_PORT
    and MONITOR_PORT_SLAVE get one port), and a port we handed out is free until its user binds."""
    import socket

    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def make_world_readable_dir(prefix: str) -> str:
    """A fresh directory under /tmp that Dovecot's unprivileged processes can traverse."""
    path = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(path, 0o755)
    return path


class Pop3Instance:
    """One POP3 server: `kind` is 'dovecot' or 'builtin'."""

    def __init__(
        self, directory: str, port: int, name: str, kind: str | None = None, address: str = "127.0.0.1"
    ) -> None:
        self.dir, self.port, self.name, self.address = directory, port, name, address
        self.kind = kind or ("dovecot" if dovecot_available() else "builtin")
        self.greeting = f"POP3 {name} ready."
        os.makedirs(directory, exist_ok=True)
        if self.kind == "dovecot":
            self._write_dovecot_config()
        self.pidfile = (
            os.path.join(directory, "run", "master.pid")
            if self.kind == "dovecot"
            else os.path.join(directory, "pop3d.pid")
        )

    # ------------------------------------------------------------------ setup

    def _write_dovecot_config(self) -> None:
        d = self.dir
        maildir = Path(d, "mail", USER)
        for sub in ("cur", "new", "tmp"):
            (maildir / sub).mkdir(parents=True, exist_ok=True)
        for i in range(3):
            msg = f"From: demo@example.net\r\nSubject: message {i}\r\n\r\nHello from {self.name}.\r\n"
            (maildir / "new" / f"{1700000000 + i}.M{i}P1.{self.name}").write_text(msg)
        if os.geteuid() == 0:
            login_user, internal_user, internal_group = "dovenull", "dovecot", "dovecot"
            mail_uid, mail_gid = pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid
            for root, dirs, files in os.walk(Path(d, "mail")):
                for name in [*dirs, *files, "."]:
                    os.chown(os.path.join(root, name), mail_uid, mail_gid)
            chroot = ""
        else:
            me = pwd.getpwuid(os.getuid())
            login_user = internal_user = me.pw_name
            internal_group = grp.getgrgid(os.getgid()).gr_name
            mail_uid, mail_gid = os.getuid(), os.getgid()
            chroot = "  chroot =\n"
        Path(d, "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}:{mail_uid}:{mail_gid}::{d}/mail/{USER}::\n")
        Path(d, "dovecot.conf").write_text(f"""\
protocols = pop3
listen = {self.address}
base_dir = {d}/run
state_dir = {d}/state
instance_name = failover-{self.name}-{self.port}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
default_login_user = {login_user}
default_internal_user = {internal_user}
default_internal_group = {internal_group}
first_valid_uid = {min(500, mail_uid)}
mail_location = maildir:{d}/mail/{USER}
login_greeting = {self.greeting}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {d}/users
}}
service pop3-login {{
{chroot}  inet_listener pop3 {{
    address = {self.address}
    port = {self.port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service anvil {{
{chroot}}}
""")

    # ------------------------------------------------------------------ commands for failover scripts

    def start_command(self) -> str:
        if self.kind == "dovecot":
            return f"{SCRIPTS_DIR}/dovecot-start.sh {shlex.quote(self.dir + '/dovecot.conf')}"
        return (
            f"{shlex.quote(sys.executable)} -m failover.lab.pop3d start --address {self.address} --port {self.port} "
            f"--pidfile {shlex.quote(self.pidfile)} --greeting {shlex.quote(self.greeting)}"
        )

    def stop_command(self) -> str:
        if self.kind == "dovecot":
            return f"{SCRIPTS_DIR}/dovecot-stop.sh {shlex.quote(self.dir + '/dovecot.conf')}"
        return f"{shlex.quote(sys.executable)} -m failover.lab.pop3d stop --pidfile {shlex.quote(self.pidfile)}"

    # ------------------------------------------------------------------ control from Python

    def start(self, timeout: float = 10.0, prefix: str = "", wait: bool = True) -> None:
        """Start it (`prefix`, for example `ip netns exec NS`, runs it on another host) and, with
        `wait`, until a POP3 login works (checked from this process's own network)."""
        command = f"{prefix} {self.start_command()}".strip()
        result = run_script(command, timeout, cwd=self.dir, env={"PYTHONPATH": str(SCRIPTS_DIR.parent)})
        if not result.ok:
            raise RuntimeError(f"{self.name}: start failed: {result.summary()} {result.output} {self.log_tail()}")
        if wait:
            self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 10.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pop3_probe(self.address, self.port, 1.0, USER, PASSWORD).ok:
                return
            time.sleep(0.01)
        raise RuntimeError(f"{self.name}: no POP3 login on port {self.port} after {timeout:g} s: {self.log_tail()}")

    def pid(self) -> int | None:
        try:
            return int(Path(self.pidfile).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def running(self) -> bool:
        return process_alive(self.pidfile)[0]

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the server's whole process group (a crash when sig is SIGKILL)."""
        pid = self.pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)
        end = time.monotonic() + 5
        while self.running() and time.monotonic() < end:
            time.sleep(0.01)
        self.kill(signal.SIGKILL)

    def log_tail(self) -> str:
        try:
            return Path(self.dir, "dovecot.log").read_text()[-600:]
        except OSError:
            return ""

"""SSH to the peer (paramiko), with its host key pinned: the client, and `Rcmd`, one command run
there within a timeout (the fence by ssh, agents/slave/rcmd.py); the sync uses the client too.

The peer's host key must be in RLOGIN_KNOWN_HOSTS: an unknown or changed key is refused, never
added. Authentication is the RLOGIN_KEY_FILE key (or RLOGIN_PASS, accepted but warned about by
`failover check`). The whole run (connect, authenticate, the command, its output) fits in the
timeout given, or the channel is closed and RcmdError is raised. `remote_failover` builds the
command line that runs `failover ...` on the peer.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from dataclasses import dataclass

import paramiko

from failover.config import Config
from failover.errors import FailoverError
from failover.machine import Role


class RcmdError(FailoverError):
    pass


@dataclass(frozen=True)
class RemoteResult:
    returncode: int  # -1 when the remote command was killed by a signal
    stdout: str
    stderr: str
    duration: float


def remote_failover(config: Config, role: Role, *args: str) -> str:
    """The command line that runs `failover ARGS` as `role` on that host (REMOTE_FAILOVER and
    REMOTE_CONFIG, by default the same command and config path as here)."""
    failover = config.REMOTE_FAILOVER or shlex.join([sys.executable, "-m", "failover.cli"])
    remote_config = config.REMOTE_CONFIG or os.path.join(config.base_dir, config.source)
    return f"{failover} --config {shlex.quote(remote_config)} --role {role.value} {shlex.join(args)}"


def ssh_client(
    host: str, port: int, user: str, known_hosts: str, key_file: str | None, password: str | None, timeout: float
) -> paramiko.SSHClient:
    """An authenticated SSH connection to a peer whose host key is pinned in `known_hosts` (an
    unknown or changed key is refused, never added); connecting and authenticating within `timeout`."""
    client = paramiko.SSHClient()
    try:
        client.load_host_keys(known_hosts)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(
            host,
            port=port,
            username=user,
            key_filename=key_file,
            password=password,
            look_for_keys=False,
            allow_agent=False,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
        )
    except BaseException:
        client.close()
        raise
    return client


@dataclass(frozen=True)
class Rcmd:
    host: str
    port: int
    user: str
    known_hosts: str
    key_file: str | None = None
    password: str | None = None
    connect_timeout: float = 10.0  # connecting and authenticating; an unreachable peer fails this fast

    def run(self, command: str, timeout: float) -> RemoteResult:
        start = time.monotonic()
        end = start + timeout
        connect = min(timeout, self.connect_timeout)
        client: paramiko.SSHClient | None = None
        try:
            client = ssh_client(
                self.host, self.port, self.user, self.known_hosts, self.key_file, self.password, connect
            )
            channel = client.get_transport().open_session(timeout=max(0.1, end - time.monotonic()))  # type: ignore[union-attr]
            channel.settimeout(0.2)
            channel.exec_command(command)
            out, err = b"", b""
            while True:
                if time.monotonic() > end:
                    raise RcmdError(f"{self.user}@{self.host}: {command!r} did not finish within {timeout:g} s")
                while channel.recv_ready():
                    out += channel.recv(65536)
                while channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
                if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
                    break
                time.sleep(0.01)
            return RemoteResult(
                channel.recv_exit_status(),
                out.decode(errors="replace"),
                err.decode(errors="replace"),
                time.monotonic() - start,
            )
        except paramiko.BadHostKeyException as e:
            raise RcmdError(f"{self.host}: its SSH host key CHANGED (not the one in {self.known_hosts}): {e}") from None
        except paramiko.SSHException as e:
            raise RcmdError(f"ssh {self.user}@{self.host}:{self.port}: {e}") from None
        except (TimeoutError, OSError) as e:
            raise RcmdError(f"ssh {self.user}@{self.host}:{self.port}: {e}") from None
        finally:
            if client is not None:
                client.close()


def from_config(config: Config, host: str) -> Rcmd:
    if not config.RLOGIN_KNOWN_HOSTS:
        raise RcmdError("RLOGIN_KNOWN_HOSTS is not set: the peer's host key must be pinned")
    return Rcmd(
        host,
        config.RLOGIN_PORT,
        config.RLOGIN_USER,
        config.RLOGIN_KNOWN_HOSTS,
        config.RLOGIN_KEY_FILE,
        config.RLOGIN_PASS,
        connect_timeout=config.CONTROL_TIMEOUT * 2,
    )

"""The load balancer in front of the pair, as the agents see it.

`LoadBalancer` is what the fence chain and the takeover need: take one host's server out of
service (and prove it), put a host's server in service. `HAProxyRuntime` drives HAProxy's
runtime API (the `stats socket ... level admin`), over a Unix socket or TCP.
"""

from __future__ import annotations

import csv
import io
import socket
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

from failover.errors import FailoverError
from failover.machine import Role


class LoadBalancerError(FailoverError):
    """The load balancer did not do what was asked, or could not be reached in time."""


class LoadBalancer(ABC):
    """One backend with one server per host.

    Timeouts: every method finishes within the driver's `timeout` (seconds) per command sent,
    or raises LoadBalancerError. Atomicity: each method is one change on the load balancer,
    then a read back; it returns only when the read back shows the change, so a caller that
    gets no exception knows the state the load balancer is in now.
    """

    @abstractmethod
    def fence(self, role: Role) -> str:
        """Put `role`'s server in maintenance and cut its open sessions, so that no client
        reaches that host through the load balancer any more, even if its service answers."""

    @abstractmethod
    def enable(self, role: Role) -> str:
        """Put `role`'s server back in service and mark it healthy now: the agent calls this only
        once it has verified that the service answers there, so clients need not wait for the
        load balancer's next check (its own checks still mark the server down if it fails)."""

    @abstractmethod
    def status(self, role: Role, timeout: float | None = None) -> str:
        """The load balancer's word for `role`'s server now (for example UP, DOWN, MAINT);
        `timeout` shortens the driver's for this read (the lease guard's reads must be quick)."""


@dataclass(frozen=True)
class HAProxyRuntime(LoadBalancer):
    """`address` is `unix:/path/to/admin.sock` or `host:port`; `servers` maps each role to its
    server name in `backend`."""

    address: str
    backend: str
    servers: dict[Role, str]
    timeout: float = 2.0

    def _command(self, command: str, timeout: float | None = None) -> str:
        """One command, connect to last byte within `timeout` (the driver's at most): each step
        gets only what is left of it, so a slow load balancer cannot stretch a read."""
        timeout = self.timeout if timeout is None else min(timeout, self.timeout)
        end = time.monotonic() + timeout

        def left() -> float:
            remaining = end - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no complete answer within {timeout:g} s")
            return remaining

        try:
            if self.address.startswith("unix:"):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(left())
                sock.connect(self.address[5:])
            else:
                host, _, port = self.address.rpartition(":")
                sock = socket.create_connection((host, int(port)), timeout=left())
            with sock:
                sock.settimeout(left())
                sock.sendall(command.encode() + b"\n")
                data = b""
                while True:
                    sock.settimeout(left())
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    data += chunk
        except (OSError, ValueError) as e:
            raise LoadBalancerError(f"HAProxy at {self.address}: {command!r}: {e}") from None
        return data.decode(errors="replace")

    def _server(self, role: Role) -> str:
        return f"{self.backend}/{self.servers[role]}"

    def _change(self, command: str) -> None:
        answer = self._command(command).strip()
        if answer:  # HAProxy answers an empty line on success
            raise LoadBalancerError(f"HAProxy refused {command!r}: {answer}")

    def status(self, role: Role, timeout: float | None = None) -> str:
        rows = csv.DictReader(io.StringIO(self._command("show stat", timeout).lstrip("# ")))
        for row in rows:
            if row.get("pxname") == self.backend and row.get("svname") == self.servers[role]:
                return row.get("status") or "?"
        raise LoadBalancerError(f"HAProxy at {self.address} has no server {self._server(role)}")

    def fence(self, role: Role) -> str:
        self._change(f"set server {self._server(role)} state maint")
        self._change(f"shutdown sessions server {self._server(role)}")
        status = self.status(role)
        if not status.startswith("MAINT"):
            raise LoadBalancerError(f"{self._server(role)} is {status} after 'state maint'")
        return f"{self._server(role)} is {status} on HAProxy {self.address}, its sessions cut"

    def enable(self, role: Role) -> str:
        self._change(f"set server {self._server(role)} state ready")
        try:  # refused where the server has no checks: it is then up as soon as it is ready
            self._change(f"set server {self._server(role)} health up")
            forced = ""
        except LoadBalancerError as e:
            forced = f"; its health not forced ({e})"
        status = self.status(role)
        if status.startswith("MAINT"):
            raise LoadBalancerError(f"{self._server(role)} is still {status} after 'state ready'")
        return f"{self._server(role)} is in service on HAProxy {self.address} ({status}){forced}"

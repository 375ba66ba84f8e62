"""Which host am I: the role whose MASTER_HOST or SLAVE_HOST is one of this machine's names or
addresses, or the one given explicitly (--role) when both or neither are."""

from __future__ import annotations

import ipaddress
import socket

from failover.config.problems import ConfigError, Problem
from failover.config.settings import Config
from failover.machine import Role


def _local_addresses() -> set[str]:
    import psutil  # local import: config validation itself does not need it

    addresses = {"127.0.0.1", "::1"}
    for entries in psutil.net_if_addrs().values():
        for entry in entries:
            if entry.family in (socket.AF_INET, socket.AF_INET6):
                addresses.add(entry.address.split("%")[0])
    return addresses


def _is_local(host: str, addresses: set[str]) -> bool:
    if host.lower() in {socket.gethostname().lower(), socket.getfqdn().lower(), "localhost"}:
        return True
    try:
        ipaddress.ip_address(host)
        candidates = {host}
    except ValueError:
        try:
            candidates = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
        except OSError:
            return False
    return bool(candidates & addresses)


def find_role(config: Config, explicit: Role | None = None) -> Role:
    """This host's role: the one whose host name or address is local, or the explicit one.
    An explicit role is refused on a host that is plainly the other one."""
    addresses = _local_addresses()
    master, slave = _is_local(config.MASTER_HOST, addresses), _is_local(config.SLAVE_HOST, addresses)
    found = (Role.MASTER if master else Role.SLAVE) if master != slave else None
    if explicit is not None:
        if found is not None and found is not explicit:
            key = "MASTER_HOST" if found is Role.MASTER else "SLAVE_HOST"
            raise ConfigError(
                config.source,
                [
                    Problem(
                        key,
                        (f"this host is {key} ({config.host_of(found)}), the {found}: it cannot run as the {explicit}"),
                    )
                ],
            )
        return explicit
    if found is not None:
        return found
    hosts = f"MASTER_HOST ({config.MASTER_HOST}) and SLAVE_HOST ({config.SLAVE_HOST})"
    why = f"both {hosts} are this host (a pair on one machine)" if master else f"neither {hosts} is this host"
    raise ConfigError(config.source, [Problem("MASTER_HOST", f"{why}: give the role explicitly (--role master|slave)")])

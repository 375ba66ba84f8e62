"""Three hosts on one machine: master, slave and client in their own network namespaces.

Each host has a service address on its loopback (10.90.0.1 master, .2 slave, .3 client) and a
point-to-point veth link to each other host, with routes straight over that link. So "cut the
master off" is both of its links down, and "partition master and slave only" is the one link
between them down, while both still reach the client (where HAProxy runs). Namespace names are
unique per run and are always deleted, with every process still inside them.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000
ADDRESS = {"master": "10.90.0.1", "slave": "10.90.0.2", "client": "10.90.0.3"}
LINKS = {("master", "slave"): "10.91.1", ("master", "client"): "10.91.2", ("slave", "client"): "10.91.3"}
_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run the body in namespace `name` (this thread only; sockets made there stay there)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {name}")
        yield
    finally:
        _libc.setns(own, CLONE_NEWNET)
        os.close(own)
        os.close(target)


class ThreeHosts:
    def __init__(self) -> None:
        self.prefix = f"fo{secrets.token_hex(3)}"
        self.created: list[str] = []

    def ns(self, host: str) -> str:
        return f"{self.prefix}{host[0]}"

    def ifname(self, a: str, b: str) -> str:
        """The name of a's end of the link between a and b."""
        return f"{self.prefix}{a[0]}{b[0]}"

    def create(self) -> None:
        for host, address in ADDRESS.items():
            _ip("netns", "add", self.ns(host))
            self.created.append(self.ns(host))
            _ip("-n", self.ns(host), "link", "set", "lo", "up")
            _ip("-n", self.ns(host), "addr", "add", f"{address}/32", "dev", "lo")
        for (a, b), net in LINKS.items():
            _ip(
                "link",
                "add",
                self.ifname(a, b),
                "netns",
                self.ns(a),
                "type",
                "veth",
                "peer",
                "name",
                self.ifname(b, a),
                "netns",
                self.ns(b),
            )
            for host, other, end in ((a, b, 1), (b, a, 2)):
                _ip("-n", self.ns(host), "addr", "add", f"{net}.{end}/30", "dev", self.ifname(host, other))
                _ip("-n", self.ns(host), "link", "set", self.ifname(host, other), "up")
                gateway = f"{net}.{3 - end}"
                _ip("-n", self.ns(host), "route", "add", f"{ADDRESS[other]}/32", "via", gateway, "src", ADDRESS[host])

    def link(self, a: str, b: str, up: bool) -> None:
        _ip("-n", self.ns(a), "link", "set", self.ifname(a, b), "up" if up else "down")
        if up:  # the kernel dropped the routes over the link when it went down: put them back
            for host, other in ((a, b), (b, a)):
                net = LINKS.get((host, other)) or LINKS[(other, host)]
                end = 1 if (host, other) in LINKS else 2
                subprocess.run(
                    [
                        "ip",
                        "-n",
                        self.ns(host),
                        "route",
                        "replace",
                        f"{ADDRESS[other]}/32",
                        "via",
                        f"{net}.{3 - end}",
                        "src",
                        ADDRESS[host],
                    ],
                    capture_output=True,
                    timeout=20,
                )

    def cut_off(self, host: str) -> None:
        for other in ADDRESS:
            if other != host:
                self.link(host, other, up=False)

    def exec(self, host: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns(host)]

    def pids(self, host: str) -> list[int]:
        done = subprocess.run(["ip", "netns", "pids", self.ns(host)], capture_output=True, text=True, timeout=20)
        return [int(p) for p in done.stdout.split()]

    def signal_all(self, host: str, sig: int) -> list[int]:
        pids = self.pids(host)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        return pids

    def destroy(self) -> None:
        for name in self.created:
            host = next(h for h in ADDRESS if self.ns(h) == name)
            for sig in (signal.SIGCONT, signal.SIGKILL):
                self.signal_all(host, sig)
            time.sleep(0.1)
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20)
        self.created.clear()

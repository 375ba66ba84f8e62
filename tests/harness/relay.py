"""A lossy, slow link between two namespaces, without netem (this kernel has none).

The veth link between hosts a and b is replaced by two TAP devices, one in each namespace, with
the same addresses and routes; a thread relays Ethernet frames between them, dropping each with
probability `loss` and holding each for `delay` seconds (order kept). `cut_from` names a host
whose IPv4 frames are all dropped (a one-way cut; ARP still passes, so the other way keeps
working). Loss, delay and the cut can change while it runs; it stops by itself after
`max_duration` seconds (then the link is down).
"""

from __future__ import annotations

import contextlib
import fcntl
import heapq
import os
import random
import select
import struct
import threading
import time

from tests.harness.network import ADDRESS, LINKS, ThreeHosts, _ip, in_netns

TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI = 0x0002, 0x1000


def _open_tap(netns: str, name: str) -> int:
    with in_netns(netns):
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    return fd


class LossyLink(threading.Thread):
    def __init__(
        self,
        net: ThreeHosts,
        a: str,
        b: str,
        loss: float = 0.0,
        delay: float = 0.0,
        max_duration: float = 300.0,
        seed: int = 1,
    ) -> None:
        super().__init__(daemon=True, name=f"relay-{a}-{b}")
        self.loss, self.delay, self.max_duration = loss, delay, max_duration
        self.cut_from: str | None = None
        self.random = random.Random(seed)
        self.dropped = self.passed = 0
        self._stop_event = threading.Event()
        key = (a, b) if (a, b) in LINKS else (b, a)
        net_prefix = LINKS[key]
        # take the veth link away, put a TAP on each side with the same addresses and routes
        _ip("-n", net.ns(a), "link", "del", net.ifname(a, b))
        self.fds: dict[str, int] = {}
        for host, other in ((a, b), (b, a)):
            end = 1 if (host, other) == key else 2
            name = net.ifname(host, other)
            self.fds[host] = _open_tap(net.ns(host), name)
            _ip("-n", net.ns(host), "addr", "add", f"{net_prefix}.{end}/30", "dev", name)
            _ip("-n", net.ns(host), "link", "set", name, "up")
            _ip(
                "-n",
                net.ns(host),
                "route",
                "replace",
                f"{ADDRESS[other]}/32",
                "via",
                f"{net_prefix}.{3 - end}",
                "src",
                ADDRESS[host],
            )
        self.a, self.b = a, b

    def run(self) -> None:
        end = time.monotonic() + self.max_duration
        other = {self.fds[self.a]: self.fds[self.b], self.fds[self.b]: self.fds[self.a]}
        sender = {self.fds[self.a]: self.a, self.fds[self.b]: self.b}
        queue: list[tuple[float, int, int, bytes]] = []
        seq = 0
        try:
            while not self._stop_event.is_set() and time.monotonic() < end:
                now = time.monotonic()
                while queue and queue[0][0] <= now:
                    _, _, fd, frame = heapq.heappop(queue)
                    with contextlib.suppress(OSError):
                        os.write(fd, frame)
                wait = min(0.05, max(0.0, queue[0][0] - now)) if queue else 0.05
                readable, _, _ = select.select(list(other), [], [], wait)
                for fd in readable:
                    try:
                        frame = os.read(fd, 65536)
                    except BlockingIOError:
                        continue
                    if sender[fd] == self.cut_from and frame[12:14] == b"\x08\x00":  # IPv4 from the cut side
                        self.dropped += 1
                        continue
                    if self.random.random() < self.loss:
                        self.dropped += 1
                        continue
                    self.passed += 1
                    seq += 1
                    heapq.heappush(queue, (time.monotonic() + self.delay, seq, other[fd], frame))
        finally:
            for fd in self.fds.values():
                os.close(fd)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)

"""sd_notify without python-systemd: readiness and the watchdog of a daemon run by systemd.

systemd passes a datagram socket in NOTIFY_SOCKET (a path, or "@name" for the abstract
namespace) and, when the unit has WatchdogSec=, the interval in WATCHDOG_USEC and the pid it
expects the kicks from in WATCHDOG_PID. A daemon says "READY=1" once it serves (Type=notify)
and "WATCHDOG=1" at least once per interval; when the kicks stop, systemd kills it with SIGABRT
and its Restart= starts a fresh one. lhcd and rhcd kick only from their decision loop
(failover.agent), so a loop stuck in a call that never returns is restarted, while threads that
are merely alive keep nothing alive. Outside systemd everything here is a no-op.

Every send is one non-blocking datagram: a full or vanished socket costs a kick, never a wait.
"""

from __future__ import annotations

import os
import socket
import time

_last_kick: float | None = None  # monotonic time of the last kick of this process


def notify(state: str) -> bool:
    """Send `state` ("READY=1", "WATCHDOG=1", ...) to systemd; False when there is no one to
    tell (no NOTIFY_SOCKET, or an address of a kind this does not speak) or the send failed."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if address.startswith("@"):
        address = "\0" + address[1:]  # the abstract namespace
    elif not address.startswith("/"):
        return False  # unset, or vsock:... (a VM's manager): not ours to reach
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)
            sock.sendto(state.encode(), address)
    except OSError:
        return False
    return True


def watchdog_interval() -> float | None:
    """The watchdog's interval in seconds (WATCHDOG_USEC), or None when this process is not
    under one (unset, not a positive number, or WATCHDOG_PID names another process: a child
    that inherited the variables is not the one systemd watches)."""
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = os.environ.get("WATCHDOG_PID")
    if pid is not None and pid.strip() != str(os.getpid()):
        return None
    return usec / 1e6 if usec > 0 else None


def kick() -> bool:
    """Tell systemd this daemon is alive ("WATCHDOG=1")."""
    return notify("WATCHDOG=1")


def kick_if_due(now: float | None = None) -> bool:
    """Kick when half the interval has passed since the last kick (at most that often): called
    on every pass of a loop that comes round at least that often. True when it kicked."""
    global _last_kick
    interval = watchdog_interval()
    if interval is None:
        return False
    now = time.monotonic() if now is None else now
    if _last_kick is not None and 0 <= now - _last_kick < interval / 2:
        return False
    _last_kick = now
    return kick()

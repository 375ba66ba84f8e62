"""failover/channel.py LocalServer: an accept() error or a burst of local connections does not end
the daemon's local socket (its thread ending would end lhcd or rhcd)."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from failover.channel import local_call

EMFILE_LOCAL = """
import os, resource, sys, logging
from failover.channel import LocalServer

logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
srv = LocalServer(sys.argv[1], lambda request: {"echo": request})
thread = srv.start()
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(int(fd) for fd in os.listdir("/proc/self/fd")) + 1, hard))
hogs = []
while True:  # every descriptor below the limit taken: accept() fails with EMFILE
    try:
        hogs.append(os.open("/dev/null", os.O_RDONLY))
    except OSError:
        break
print("full", flush=True)
sys.stdin.readline()  # the test connected and waited: accept() has failed for a while
for fd in hogs:
    os.close(fd)
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
sys.stdin.readline()
print("alive" if thread.is_alive() else "dead", flush=True)
"""


def test_an_accept_error_does_not_end_the_local_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "lhcd.sock")
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(EMFILE_LOCAL), path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline() == "full\n"
        waiting = socket.socket(socket.AF_UNIX)
        waiting.connect(path)  # queued in the backlog; accept() fails on it until descriptors free
        time.sleep(1.0)
        proc.stdin.write("descriptors free again\n")
        proc.stdin.flush()
        assert local_call(path, {"type": "PING"}, timeout=10) == {"echo": {"type": "PING"}}
        proc.stdin.write("done\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "alive\n"
        _, err = proc.communicate(timeout=10)
        waiting.close()
    finally:
        proc.kill()
        proc.wait()
    assert "local accept() failed" in err and "Too many open files" in err and "Traceback" not in err

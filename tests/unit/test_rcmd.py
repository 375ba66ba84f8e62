"""failover/ssh.py (what rcmd runs) against a real sshd on loopback: pinned host key, key auth, timeouts."""

from __future__ import annotations

import os
import pwd
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from failover.ssh import Rcmd, RcmdError
from tests.harness.sshd import SSHD, SshdInstance


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshdInstance]:
    if not os.access(SSHD, os.X_OK):
        pytest.fail("OpenSSH server is not installed: run scripts/setup.sh")
    instance = SshdInstance(str(tmp_path / "sshd"))
    instance.start()
    yield instance
    instance.stop()


def rcmd(sshd: SshdInstance, **changes: object) -> Rcmd:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": sshd.port,
        "user": pwd.getpwuid(os.getuid()).pw_name,
        "known_hosts": sshd.known_hosts,
        "key_file": sshd.key_file,
    }
    values.update(changes)
    return Rcmd(**values)  # type: ignore[arg-type]


def test_runs_a_command_and_returns_its_output_and_status(sshd: SshdInstance) -> None:
    result = rcmd(sshd).run("echo hello; echo oops >&2; exit 3", timeout=20)
    assert (result.returncode, result.stdout, result.stderr) == (3, "hello\n", "oops\n")


def test_a_large_output_comes_through_whole(sshd: SshdInstance) -> None:
    result = rcmd(sshd).run("head -c 3000000 /dev/zero | tr '\\0' x", timeout=30)
    assert result.returncode == 0 and len(result.stdout) == 3_000_000


def test_an_unknown_or_changed_host_key_is_refused(sshd: SshdInstance, tmp_path: Path) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    with pytest.raises(RcmdError, match="not found in known_hosts"):
        rcmd(sshd, known_hosts=str(empty)).run("true", timeout=10)
    other = SshdInstance(str(tmp_path / "other"), port=sshd.port)  # another host key for the same address
    with pytest.raises(RcmdError, match="host key CHANGED"):
        rcmd(sshd, known_hosts=other.known_hosts).run("true", timeout=10)


def test_a_wrong_key_is_refused(sshd: SshdInstance, tmp_path: Path) -> None:
    other = SshdInstance(str(tmp_path / "other"))
    with pytest.raises(RcmdError, match="Authentication failed"):
        rcmd(sshd, key_file=other.key_file).run("true", timeout=10)


def test_a_command_that_outlives_the_timeout_is_abandoned(sshd: SshdInstance) -> None:
    start = time.monotonic()
    with pytest.raises(RcmdError, match="did not finish within 1 s"):
        rcmd(sshd).run("sleep 30", timeout=1)
    assert time.monotonic() - start < 5


def test_nobody_listening_is_an_error_quickly(sshd: SshdInstance) -> None:
    sshd.stop()
    with pytest.raises(RcmdError, match=r"Unable to connect|Connection refused|Errno 111"):
        rcmd(sshd).run("true", timeout=5)


def test_a_frozen_peer_fails_within_the_connect_timeout_not_the_commands(sshd: SshdInstance) -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never says SSH-2.0
        start = time.monotonic()
        with pytest.raises(RcmdError):
            rcmd(sshd, port=silent.getsockname()[1], connect_timeout=0.5).run("true", timeout=60)
        assert time.monotonic() - start < 5

"""The `failover` command through click's CliRunner, and as real processes (check, start.sh)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from failover.cli import main

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """\
CONFIG = {
    "MASTER_HOST": "127.0.0.1",
    "SLAVE_HOST": "127.0.0.1",
    "MONITOR_PORT": 17890,
    "MONITOR_PORT_SLAVE": 17891,
    "REMOTE_POP3_PORT": 11110,
    "SLAVE_POP3_PORT": 11111,
    "SECRET_FILE": "secret",
    "SHUTDOWN_SCRIPTS": "./stop.sh",
    "STARTUP_SCRIPTS": ["./start.sh"],
    "STATE_DIR": "state",
    "LOG_DIR": "log",
}
"""


def write_scripts_and_secret(directory: Path) -> None:
    """What a test config names beside itself: two no-op scripts and a private secret."""
    for name in ("stop.sh", "start.sh"):
        (directory / name).write_text("#!/bin/sh\n")
        (directory / name).chmod(0o755)
    (directory / "secret").write_text("ab" * 32 + "\n")
    (directory / "secret").chmod(0o600)


@pytest.fixture
def confdir(tmp_path: Path) -> Path:
    write_scripts_and_secret(tmp_path)
    (tmp_path / "failover_config.py").write_text(CONFIG)
    return tmp_path


def cli(confdir: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--config", str(confdir / "failover_config.py"), *args])
    return result.exit_code, result.output


def test_check_ok_names_the_role(confdir: Path) -> None:
    code, out = cli(confdir, "--role", "slave", "check")
    assert code == 0
    assert out.startswith("failover_config.py: OK: this host is the slave; master 127.0.0.1, slave 127.0.0.1;")
    code, out = cli(confdir, "check")
    assert code == 0 and "both roles are on this machine" in out


def test_check_takes_the_path_as_argument(confdir: Path) -> None:
    result = CliRunner().invoke(main, ["check", str(confdir / "failover_config.py")])
    assert result.exit_code == 0 and "OK" in result.output


BROKEN = [
    ('"MONITOR_PORT": 17890,', "", "MONITOR_PORT: missing: the master's control port (socketserver)"),
    ('"MONITOR_PORT": 17890,', '"MONITOR_PROT": 17890,', "MONITOR_PROT: unknown key; did you mean MONITOR_PORT?"),
    ('"MONITOR_PORT": 17890,', '"MONITOR_PORT": "17890",', "MONITOR_PORT: expected a port, got str '17890'"),
    ('"MONITOR_PORT": 17890,', '"MONITOR_PORT": 0,', "MONITOR_PORT: 0 is out of range: expected 1 <= port <= 65535"),
    (
        '"MONITOR_PORT": 17890,',
        '"MONITOR_PORT": 17891,',
        "MONITOR_PORT_SLAVE: port clash: MONITOR_PORT_SLAVE and MONITOR_PORT both use 127.0.0.1:17891",
    ),
    ('"./stop.sh"', '"./gone.sh"', "SHUTDOWN_SCRIPTS: ./gone.sh: no such file"),
    ('"MONITOR_PORT": 17890,', '"MONITOR_PORT": 17890 "x",', "line 4: syntax error"),
    (
        '"LOG_DIR": "log",',
        '"LOG_DIR": "log", "SHUTDOWN_ACK_TIMEOUT": 5,',
        "SHUTDOWN_ACK_TIMEOUT: timing rule broken: expected SHUTDOWN_ACK_TIMEOUT (5) > SCRIPT_TIMEOUT (20) x 1",
    ),
    ('"LOG_DIR": "log",', '"LOG_DIR": "log", "PROBE_FAILURES": 2.5,', "PROBE_FAILURES: expected an integer, got float"),
]


@pytest.mark.parametrize(
    ("old", "new", "expected"), BROKEN, ids=[b[2].split(":")[0] + str(i) for i, b in enumerate(BROKEN)]
)
def test_check_reports_each_broken_config_with_its_key(confdir: Path, old: str, new: str, expected: str) -> None:
    path = confdir / "failover_config.py"
    path.write_text(CONFIG.replace(old, new))
    code, out = cli(confdir, "check")
    assert code == 2
    assert f"failover_config.py: {expected}" in out, out


def test_check_reports_script_and_secret_modes(confdir: Path) -> None:
    (confdir / "start.sh").chmod(0o644)
    (confdir / "secret").chmod(0o640)
    code, out = cli(confdir, "check")
    assert code == 2
    assert "failover_config.py: STARTUP_SCRIPTS: ./start.sh: not executable" in out
    assert "failover_config.py: SECRET_FILE: " in out and "mode 0640 lets others read it; expected 0600" in out


def test_check_warns_about_takeover(confdir: Path) -> None:
    path = confdir / "failover_config.py"
    path.write_text(CONFIG.replace('"LOG_DIR": "log",', '"LOG_DIR": "log", "ON_ACK_TIMEOUT": "takeover",'))
    code, out = cli(confdir, "check")
    assert code == 0 and "warning: ON_ACK_TIMEOUT: 'takeover' starts the slave without a confirmed stop" in out


def test_keygen_writes_a_private_secret_and_never_overwrites_silently(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "secret"
    result = CliRunner().invoke(main, ["keygen", str(path)])
    assert result.exit_code == 0 and stat.S_IMODE(path.stat().st_mode) == 0o600
    first = path.read_text()
    assert len(first.strip()) == 64
    result = CliRunner().invoke(main, ["keygen", str(path)])
    assert result.exit_code == 1 and "exists; use --force" in result.output and path.read_text() == first
    assert CliRunner().invoke(main, ["keygen", "--force", str(path)]).exit_code == 0
    assert path.read_text() != first


def test_status_with_nothing_running_says_so(confdir: Path) -> None:
    code, out = cli(confdir, "status")
    assert code == 3 and "neither host answered" in out
    assert "master: no answer (master at 127.0.0.1:17890: cannot connect" in out


def test_confirm_fenced_is_for_the_slave_and_needs_rhcd(confdir: Path) -> None:
    code, out = cli(confdir, "--role", "master", "confirm-fenced", "--yes")
    assert code == 1 and "confirm-fenced runs on the slave" in out
    code, out = cli(confdir, "--role", "slave", "confirm-fenced", "--yes")
    assert code == 1 and "rhcd does not answer" in out


def test_start_refuses_a_bad_config_and_starts_nothing(confdir: Path) -> None:
    (confdir / "failover_config.py").write_text(CONFIG.replace('"MONITOR_PORT": 17890,', ""))
    code, out = cli(confdir, "--role", "master", "start", "master")
    assert code == 2 and "MONITOR_PORT: missing" in out
    assert not (confdir / "state").exists()


def test_the_shipped_config_is_valid_but_for_this_machine(tmp_path: Path) -> None:
    """The example failover_config.py has no problem except what depends on the host it runs on."""
    done = subprocess.run(
        [sys.executable, "-m", "failover.cli", "check", str(ROOT / "failover_config.py")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = done.stderr.strip().splitlines()
    if done.returncode == 0:
        return
    assert done.returncode == 2
    assert all(
        line.startswith(("failover_config.py: SECRET_FILE:", "failover_config.py: MASTER_HOST:")) for line in lines
    ), lines


def test_start_sh_checks_first_and_shows_its_usage(confdir: Path) -> None:
    done = subprocess.run([str(ROOT / "start.sh")], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "usage: ./start.sh master|slave" in done.stderr
    (confdir / "failover_config.py").write_text(CONFIG.replace('"MONITOR_PORT": 17890,', ""))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    done = subprocess.run(
        [str(ROOT / "start.sh"), "master", "--config", str(confdir / "failover_config.py")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 2 and "failover_config.py: MONITOR_PORT: missing" in done.stderr
    assert not (confdir / "state").exists()

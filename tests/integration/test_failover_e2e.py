"""End to end: real Dovecot on both "hosts", real agent processes started by the CLI, a real client."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

from failover.lab.pair import LoopbackPair, Poller
from failover.lab.pop3 import PASSWORD, USER
from failover.machine import Role
from failover.probes import pop3_probe

MakePair = Callable[..., LoopbackPair]
M, S = Role.MASTER, Role.SLAVE


def story(pair: LoopbackPair, role: Role) -> list[tuple[str, str]]:
    return [(e["from"], e["to"]) for e in pair.journal(role) if e["from"] != e["to"]]


def write_script(pair: LoopbackPair, name: str, body: str) -> None:
    path = Path(pair.dir, name)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def start_pair(pair: LoopbackPair) -> None:
    pair.pop3[M].start()
    pair.start_agents(M)
    pair.start_agents(S)


def slave_serves(pair: LoopbackPair) -> bool:
    outcome = pop3_probe("127.0.0.1", pair.pop3[S].port, 2, USER, PASSWORD)
    return outcome.ok and "slave" in outcome.detail


def test_a_kill_9_of_the_masters_dovecot_moves_the_service_to_the_slave(make_pair: MakePair) -> None:
    pair = make_pair()
    poller = Poller(pair)
    poller.start()
    time.sleep(0.5)
    killed = time.monotonic()
    pair.pop3[M].kill(signal.SIGKILL)
    pair.wait_for(S, "ACTIVE", timeout=30)
    master = pair.wait_for(M, "INACTIVE", timeout=10)
    time.sleep(1.0)
    poller.stop()

    assert slave_serves(pair) and not pair.pop3[M].running()
    assert master["term"] == 1 and pair.state(S)["term"] == 1
    first_slave = poller.first("slave", after=killed)
    assert first_slave is not None, "the client never got an answer from the slave"
    assert poller.count("master", after=first_slave) == 0
    assert poller.count("master", after=0) > 0  # the master served before the kill
    assert story(pair, S)[-3:] == [("SUSPECT", "FAILING_OVER"), ("FAILING_OVER", "STARTING"), ("STARTING", "ACTIVE")]
    assert story(pair, M) == [("ACTIVE", "STOPPING"), ("STOPPING", "INACTIVE")]
    assert all(e["reason"] for e in pair.journal(S) + pair.journal(M))


def test_the_masters_own_word_fails_over_before_the_probes_would(make_pair: MakePair) -> None:
    """With probes every 5 s x 3, only lhcd's heartbeat can explain a failover within seconds."""
    pair = make_pair(PROBE_INTERVAL=5.0, PROBE_FAILURES=3, HEARTBEAT_INTERVAL=5.0, HEARTBEAT_TIMEOUT=15.0)
    pair.pop3[M].kill(signal.SIGKILL)
    pair.wait_for(S, "ACTIVE", timeout=12)
    claim = next(e for e in pair.journal(S) if e["to"] == "FAILING_OVER")
    assert "abnormal shutdown" in claim["reason"]


def test_b_no_ack_means_no_start_until_an_operator_confirms_the_fence(make_pair: MakePair) -> None:
    pair = make_pair()
    pair.kill_daemon("socketserver")  # no ACK can come
    pair.pop3[M].kill(signal.SIGKILL)
    fencing = pair.wait_for(S, "FENCING", timeout=30)
    assert "NOT starting" in fencing["reason"] or "could not confirm" in fencing["reason"]
    time.sleep(2 * float(pair.settings["SHUTDOWN_ACK_TIMEOUT"]) / 4)
    assert pair.state(S)["state"] == "FENCING" and not pair.pop3[S].running()
    status = pair.failover("status", timeout=30).stdout
    assert "WAITING: the master has not confirmed its shutdown" in status and "confirm-fenced" in status
    assert "ALERT" in Path(pair.dir, "log", "rhcd.log").read_text()

    done = pair.failover("confirm-fenced", "--yes", role=S)
    assert done.returncode == 0, done.stderr
    pair.wait_for(S, "ACTIVE", timeout=15)
    assert slave_serves(pair)
    assert any("confirmed for term 1 by operator" in e["reason"] for e in pair.journal(S))


def test_b_takeover_starts_without_an_ack_and_says_so(make_pair: MakePair) -> None:
    pair = make_pair(ON_ACK_TIMEOUT="takeover")
    pair.kill_daemon("socketserver")
    pair.pop3[M].kill(signal.SIGKILL)
    active = pair.wait_for(S, "ACTIVE", timeout=30)
    assert active["term"] == 1 and slave_serves(pair)
    assert any("WITHOUT a confirmed stop" in e["reason"] for e in pair.journal(S))
    # the master's socketserver was down, but its heartbeats still learn the slave's higher term
    pair.wait_for(M, "INACTIVE", timeout=15)
    assert any("deposed by term 1" in e["reason"] for e in pair.journal(M))


def test_c_a_hanging_startup_script_is_killed_and_the_slave_fails(make_pair: MakePair) -> None:
    pair = make_pair(start=False, STARTUP_SCRIPTS=["./hang.sh"])
    write_script(pair, "hang.sh", "echo starting; sleep 300 & echo $! > hang.child; wait\n")
    start_pair(pair)
    pair.pop3[M].kill(signal.SIGKILL)
    failed = pair.wait_for(S, "FAILED", timeout=30)
    assert "startup scripts failed for term 1: ./hang.sh: killed after its" in failed["reason"]
    child = int(Path(pair.dir, "hang.child").read_text())
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split(")")[1][:3]
    log = Path(pair.dir, "log", "rhcd.log").read_text()
    assert "startup script ./hang.sh: killed after its" in log and "starting" in log  # its output is reported
    assert not pair.pop3[S].running()


def test_d_restarting_the_old_masters_agents_does_not_fail_back(make_pair: MakePair) -> None:
    pair = make_pair()
    pair.pop3[M].kill(signal.SIGKILL)
    pair.wait_for(S, "ACTIVE", timeout=30)
    pair.wait_for(M, "INACTIVE", timeout=10)

    pair.stop_agents(M)  # a clean stop and start
    pair.start_agents(M)
    pair.kill_daemon("lhcd")  # and a crash and start of lhcd alone
    restarted = pair.failover("start", "master", role=M)
    assert restarted.returncode == 0 and "socketserver already running" in restarted.stdout
    assert "lhcd started" in restarted.stdout
    time.sleep(1.5)
    assert pair.state(M)["state"] == "INACTIVE" and not pair.pop3[M].running()

    # someone starts the old master's Dovecot by hand: lhcd stops it again, and says why
    pair.pop3[M].start()
    end = time.monotonic() + 15
    while pair.pop3[M].running() and time.monotonic() < end:
        time.sleep(0.05)
    assert not pair.pop3[M].running()
    assert any("no automatic failback" in e["reason"] for e in pair.journal(M))
    pair.wait_for(M, "INACTIVE", timeout=10)
    assert pair.state(S)["state"] == "ACTIVE" and slave_serves(pair)


def test_kill_9_of_rhcd_during_the_startup_resumes_the_same_term(make_pair: MakePair) -> None:
    pair = make_pair(start=False, STARTUP_SCRIPTS=["./slow-start.sh"], SCRIPT_TIMEOUT=5.0, SHUTDOWN_ACK_TIMEOUT=8.0)
    write_script(pair, "slow-start.sh", "echo run >> starts.log\nsleep 1\nexec ./pop3-ctl start\n")
    start_pair(pair)
    pair.pop3[M].kill(signal.SIGKILL)
    pair.wait_for(S, "STARTING", timeout=30)
    pair.kill_daemon("rhcd")
    assert pair.state(S)["state"] == "STARTING" and pair.state(S)["term"] == 1
    pair.start_agents(S)  # socketserver2 still runs: only rhcd starts
    active = pair.wait_for(S, "ACTIVE", timeout=30)
    assert active["term"] == 1 and slave_serves(pair)
    assert any("restarted during the startup for term 1" in e["reason"] for e in pair.journal(S))
    runs = Path(pair.dir, "starts.log").read_text().count("run")

    pair.kill_daemon("rhcd")  # once ACTIVE, a restart never runs the startup again
    pair.start_agents(S)
    time.sleep(1.0)
    assert pair.state(S)["state"] == "ACTIVE" and pair.state(S)["term"] == 1
    assert Path(pair.dir, "starts.log").read_text().count("run") == runs


def test_kill_9_of_lhcd_during_the_shutdown_still_ends_in_one_server(make_pair: MakePair) -> None:
    pair = make_pair(start=False, SHUTDOWN_SCRIPTS=["./slow-stop.sh"], SHUTDOWN_ACK_TIMEOUT=4.0)
    write_script(pair, "slow-stop.sh", "sleep 1\nexec ./pop3-ctl stop\n")
    start_pair(pair)
    pair.pop3[M].kill(signal.SIGKILL)
    pair.wait_for(M, "STOPPING", timeout=30)
    pair.kill_daemon("lhcd")
    time.sleep(0.5)
    assert pair.state(S)["state"] in ("FAILING_OVER", "FENCING")  # no ACK: the slave waits
    assert not pair.pop3[S].running()
    pair.start_agents(M)  # lhcd resumes the shutdown; the slave's next request gets the ACK
    pair.wait_for(M, "INACTIVE", timeout=30)
    pair.wait_for(S, "ACTIVE", timeout=30)
    assert pair.state(M)["term"] == pair.state(S)["term"] == 1
    assert any("restarted while stopping for term 1" in e["reason"] for e in pair.journal(M))


def test_forged_and_malformed_control_messages_change_nothing(make_pair: MakePair) -> None:
    pair = make_pair()
    port = pair.monitor_ports[M]
    forged = b'{"seq":1,"body":{"type":"SHUTDOWN_YOUR_SERVICE","term":5,"reason":"x"},"mac":"' + b"ab" * 32 + b'"}\n'
    for payload in (forged, b"garbage\n", b"{" * 70000):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.recv(4096)
            try:
                sock.sendall(b'{"hello":"' + b"11" * 32 + b'","v":1}\n' + payload)
                sock.recv(4096)
            except OSError:
                pass
    from failover.channel import ChannelError, request
    from failover.protocol import ShutdownYourService

    with contextlib.suppress(ChannelError):
        request("127.0.0.1", port, b"not-the-secret-0123456789", ShutdownYourService(term=7), timeout=3)
    time.sleep(0.5)
    log = Path(pair.dir, "log", "socketserver.log").read_text()
    assert log.count("refused message from 127.0.0.1") >= 4
    assert pair.state(M)["state"] == "ACTIVE" and pair.state(M)["term"] == 0
    assert pair.pop3[M].running() and pair.state(S)["state"] == "STANDBY"


def test_start_refuses_a_second_copy_and_a_bad_config(make_pair: MakePair) -> None:
    import subprocess
    import sys

    pair = make_pair()
    again = pair.failover("start", "master", role=M)
    assert again.returncode == 1 and "already running: socketserver (pid" in again.stderr
    direct = subprocess.run(
        [sys.executable, "-m", "agents.slave.rhcd", "--config", pair.config_path],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert direct.returncode == 1 and "rhcd is already running (pid" in direct.stderr
    pair.stop_agents(S)
    pair.write_config(PROBE_FAILURES=0, SHUTDOWN_ACK_TIMEOUT=1.0)
    bad = pair.failover("start", "slave", role=S)
    assert bad.returncode == 2
    assert "failover_config.py: PROBE_FAILURES: 0 is out of range" in bad.stderr
    assert "failover_config.py: SHUTDOWN_ACK_TIMEOUT: timing rule broken" in bad.stderr
    assert pair.daemon_pid("rhcd") is None and pair.daemon_pid("socketserver2") is None


def test_status_shows_both_hosts_with_json_for_scripts(make_pair: MakePair) -> None:
    import json

    pair = make_pair()
    text = pair.failover("status").stdout
    assert "master  127.0.0.1" in text and "ACTIVE" in text and "STANDBY" in text
    assert "last probe of the master: " in text  # OK, unless a probe just failed under load (SUSPECT 1/3)
    data = json.loads(pair.failover("status", "--json").stdout)
    assert data["master"]["group"] == "ACTIVE" and data["slave"]["group"] == "STANDBY"
    assert isinstance(data["slave"]["observations"]["probe_ok"], bool)
    assert isinstance(data["slave"]["observations"]["probe_latency"], float)
    assert data["master"]["daemons"]["lhcd"] and data["slave"]["daemons"]["rhcd"]
    assert text.count("heartbeat stream: ") == 2  # both ends: datagrams per second, loss, drops
    assert data["slave"]["observations"]["stream_received"] > 0 and data["master"]["observations"]["stream_loss"] < 0.2
    pair.pop3[M].kill(signal.SIGKILL)
    pair.wait_for(S, "ACTIVE", timeout=30)
    pair.wait_for(M, "INACTIVE", timeout=10)
    data = json.loads(pair.failover("status", "--json").stdout)
    assert (data["master"]["group"], data["slave"]["group"]) == ("INACTIVE", "ACTIVE")
    assert data["slave"]["term"] == 1 and any(e["to"] == "ACTIVE" for e in data["slave"]["journal"])


def test_kill_9_of_rhcd_at_any_point_of_the_failover_ends_in_one_server(make_pair: MakePair) -> None:
    """rhcd killed 0 to 300 ms after the master's crash (before, during and after its decisions),
    then started again: it always ends ACTIVE in term 1, and the master INACTIVE in term 1."""
    for delay in (0.0, 0.03, 0.08, 0.15, 0.3):
        pair = make_pair()
        pair.pop3[M].kill(signal.SIGKILL)
        time.sleep(delay)
        pair.kill_daemon("rhcd")
        pair.start_agents(S)
        pair.wait_for(S, "ACTIVE", timeout=30)
        pair.wait_for(M, "INACTIVE", timeout=30)
        assert pair.state(S)["term"] == pair.state(M)["term"] == 1, (delay, pair.journal(S))
        assert slave_serves(pair) and not pair.pop3[M].running()
        pair.close()


def test_a_forged_ack_from_an_impostor_never_starts_the_slave(make_pair: MakePair) -> None:
    """Someone without the secret answers in the master's place, ACK ok=True: refused and logged."""
    import threading

    from failover.protocol import Ack, ServerSession

    pair = make_pair()
    pair.kill_daemon("socketserver")
    impostor = socket.create_server(("127.0.0.1", pair.monitor_ports[M]))
    forged: list[int] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = impostor.accept()
            except OSError:
                return
            with conn:
                session = ServerSession(b"the-impostors-own-secret", os.urandom(32))
                conn.sendall(session.greeting())
                data = b""
                while data.count(b"\n") < 2:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                hello = data.split(b"\n")[0]
                session.receive_hello(hello)
                session._seq = 1  # answer as if the request had verified
                conn.sendall(session.reply(Ack(1, True, "service verified down (forged)")))
                forged.append(1)

    threading.Thread(target=serve, daemon=True).start()
    try:
        pair.pop3[M].kill(signal.SIGKILL)
        pair.wait_for(S, "FENCING", timeout=30)
        assert forged, "the impostor was never asked"
        assert pair.state(S)["state"] == "FENCING" and not pair.pop3[S].running()
        log = Path(pair.dir, "log", "rhcd.log").read_text()
        assert "refused the master's answer: bad MAC" in log
    finally:
        impostor.close()


def test_start_sh_in_the_foreground_runs_both_daemons_and_stops_them_on_ctrl_c(make_pair: MakePair) -> None:
    import subprocess
    import sys

    pair = make_pair(start=False)
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    proc = subprocess.Popen(
        [str(root / "start.sh"), "slave", "--foreground", "--config", pair.config_path],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    try:
        end = time.monotonic() + 30
        while not (pair.daemon_pid("rhcd") and pair.daemon_pid("socketserver2")) and time.monotonic() < end:
            time.sleep(0.05)
        assert pair.daemon_pid("rhcd") and pair.daemon_pid("socketserver2")
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert "OK: this host is the slave" in output  # start.sh checked the config first
    assert "rhcd[" in output and "stopping on SIG" in output  # the daemons logged to the terminal
    assert pair.daemon_pid("rhcd") is None and pair.daemon_pid("socketserver2") is None


def test_the_demo_runs_and_shows_the_failover() -> None:
    import subprocess
    import sys

    from tests.conftest import POP3_KIND

    args = [sys.executable, "-m", "failover.cli", "demo"] + (["--builtin"] if POP3_KIND == "builtin" else [])
    done = subprocess.run(args, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    out = done.stdout
    assert ("Dovecot" in out) if POP3_KIND == "dovecot" else ("BUILT-IN" in out)
    assert "SUSPECT -> FAILING_OVER (term 1)" in out and "why: " in out
    assert "STARTING -> ACTIVE (term 1)" in out and "outage seen by the client:" in out
    assert ", 0 by the master" in out and "master is INACTIVE in term 1; its POP3 server stays down" in out
    assert "result: the slave took over" in out

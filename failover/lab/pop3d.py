"""A small built-in POP3 responder, for machines where Dovecot cannot be installed.

Enough of POP3 for probes and the demo's client: greeting, USER, PASS, STAT, LIST, NOOP, QUIT,
one fixed mailbox. `python -m failover.lab.pop3d start --port P --pidfile F` detaches (its own
session, like a daemonized Dovecot) and returns once the port listens; `stop --pidfile F`
kills its process group.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import socketserver
import sys
import time

from failover.lab.pop3 import PASSWORD, USER
from failover.probes import process_alive

MESSAGES = [b"Subject: hello\r\n\r\nHello.\r\n"] * 3


class _Handler(socketserver.StreamRequestHandler):
    greeting = "POP3 ready."
    timeout = 30

    def _send(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self) -> None:
        self._send(f"+OK {self.greeting}")
        user, authed = None, False
        for raw in self.rfile:
            words = raw.decode(errors="replace").strip().split(" ", 1)
            cmd, arg = words[0].upper(), (words[1] if len(words) > 1 else "")
            if cmd == "QUIT":
                self._send("+OK bye")
                return
            if cmd == "USER":
                user = arg
                self._send("+OK")
            elif cmd == "PASS":
                authed = user == USER and arg == PASSWORD
                self._send("+OK logged in" if authed else "-ERR authentication failed")
            elif not authed:
                self._send("-ERR log in first")
            elif cmd == "STAT":
                self._send(f"+OK {len(MESSAGES)} {sum(map(len, MESSAGES))}")
            elif cmd == "NOOP":
                self._send("+OK")
            elif cmd == "LIST":
                self._send(f"+OK {len(MESSAGES)} messages")
                for i, m in enumerate(MESSAGES, 1):
                    self._send(f"{i} {len(m)}")
                self._send(".")
            else:
                self._send("-ERR unknown command")


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def serve(address: str, port: int, greeting: str, pidfile: str) -> None:
    _Handler.greeting = greeting
    with _Server((address, port), _Handler) as server:
        tmp = f"{pidfile}.tmp"
        with open(tmp, "w") as f:
            f.write(f"{os.getpid()}\n")
        os.replace(tmp, pidfile)
        server.serve_forever()


def start(address: str, port: int, greeting: str, pidfile: str) -> int:
    if process_alive(pidfile)[0]:
        print(f"already running ({pidfile})")
        return 1
    if os.fork() == 0:  # the child detaches: its own session and process group
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        try:
            serve(address, port, greeting, pidfile)
        finally:
            os._exit(0)
    end = time.monotonic() + 5
    while time.monotonic() < end:
        try:
            with socket.create_connection((address, port), timeout=0.5):
                print(f"builtin pop3d started on port {port}")
                return 0
        except OSError:
            time.sleep(0.02)
    print(f"builtin pop3d did not listen on port {port}")
    return 1


def stop(pidfile: str) -> int:
    alive, detail = process_alive(pidfile)
    if not alive:
        print(f"not running: {detail}")
        return 0
    with open(pidfile) as f:
        pid = int(f.read().split()[0])
    os.killpg(pid, signal.SIGTERM)
    end = time.monotonic() + 5
    while process_alive(pidfile)[0] and time.monotonic() < end:
        time.sleep(0.02)
    if process_alive(pidfile)[0]:
        os.killpg(pid, signal.SIGKILL)
    print("builtin pop3d stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m failover.lab.pop3d", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_start = sub.add_parser("start")
    p_start.add_argument("--address", default="127.0.0.1")
    p_start.add_argument("--port", type=int, required=True)
    p_start.add_argument("--pidfile", required=True)
    p_start.add_argument("--greeting", default="POP3 ready.")
    p_stop = sub.add_parser("stop")
    p_stop.add_argument("--pidfile", required=True)
    args = parser.parse_args(argv)
    if args.command == "start":
        return start(args.address, args.port, args.greeting, args.pidfile)
    return stop(args.pidfile)


if __name__ == "__main__":
    sys.exit(main())

"""Sync to the standby over SSH: its inventory from `failover sync-inventory` run there, files sent
over SFTP to a temp file next to their place, then `failover sync-commit` there verifies the
hash, makes the file durable and renames it (the previous version kept). The peer's host key is
pinned (RLOGIN_KNOWN_HOSTS); every step has a timeout.

A failed or interrupted transfer leaves only a temp file, never a half-written synced file; the
next run removes stale temp files (sync-inventory does).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any

import paramiko

from agents.slave.rcmd import remote_failover, ssh_client
from failover.config import Config
from failover.machine import Role
from failover.state import atomic_write, wall_clock
from failover.syncfiles import (
    CHUNK,
    TMP_PREFIX,
    Attributes,
    FileInfo,
    Row,
    SyncEntry,
    SyncError,
    compare,
    entry_of,
    inventory,
    read_substituted,
    real_path,
)


@dataclass
class Plan:
    """What a sync would do: files to send, paths to delete on the standby, and why."""

    rows: list[Row]
    send: list[str]
    delete: list[str]


class Peer:
    """One SSH connection to the standby, used for a whole check or sync."""

    def __init__(self, config: Config, me: Role) -> None:
        self.config, self.me = config, me
        self.peer = Role.SLAVE if me is Role.MASTER else Role.MASTER
        self.root = config.sync_root(self.peer)
        self.client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._known_dirs: set[str] = set()  # directories known to exist on the standby

    def __enter__(self) -> Peer:
        c = self.config
        if not c.RLOGIN_KNOWN_HOSTS:
            raise SyncError("RLOGIN_KNOWN_HOSTS is not set: the peer's SSH host key must be pinned")
        host = c.host_of(self.peer)
        try:
            self.client = ssh_client(
                host,
                c.RLOGIN_PORT,
                c.RLOGIN_USER,
                c.RLOGIN_KNOWN_HOSTS,
                c.RLOGIN_KEY_FILE,
                c.RLOGIN_PASS,
                2 * c.CONTROL_TIMEOUT,
            )
        except (paramiko.SSHException, OSError) as e:
            raise SyncError(f"ssh {c.RLOGIN_USER}@{host}:{c.RLOGIN_PORT}: {e}") from None
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        if self.client is not None:
            self.client.close()

    @property
    def ssh(self) -> paramiko.SSHClient:
        assert self.client is not None, "use Peer as a context manager"
        return self.client

    @property
    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            self._sftp = self.ssh.open_sftp()
            self._sftp.get_channel().settimeout(max(self.config.SCRIPT_TIMEOUT, 10.0))  # type: ignore[union-attr]
        return self._sftp

    def run(self, *args: str, timeout: float, data: bytes = b"") -> str:
        """Run `failover ARGS` on the standby (`data` on its stdin); its stdout, or SyncError."""
        command = remote_failover(self.config, self.peer, *args)
        try:
            into, out, err = self.ssh.exec_command(command, timeout=timeout)
            if data:
                into.write(data)
            into.channel.shutdown_write()
            stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
            code = out.channel.recv_exit_status()
        except (paramiko.SSHException, OSError, TimeoutError) as e:
            raise SyncError(f"{args[0]} on the {self.peer}: {e}") from None
        if code != 0:
            raise SyncError(f"{args[0]} on the {self.peer} exited {code}: {stderr.strip()[-500:]}")
        return stdout

    def inventory(self, clean_temp: bool = False) -> dict[str, FileInfo]:
        args = ["sync-inventory", "--clean-temp"] if clean_temp else ["sync-inventory"]
        text = self.run(*args, timeout=self.config.SYNC_TIMEOUT)
        try:
            return {rel: FileInfo.from_json(info) for rel, info in json.loads(text).items()}
        except (ValueError, TypeError) as e:
            raise SyncError(f"the {self.peer}'s inventory is unreadable: {e}") from None

    def plan(self, full: bool) -> Plan:
        entries = self.config.sync_entries()
        active = inventory(self.config.sync_root(self.me), entries, for_standby=True)
        rows = compare(entries, active, self.inventory(clean_temp=full))
        send = [r.path for r in rows if r.mode == "sync" and r.status in ("different", "missing on standby")]
        delete = [r.path for r in rows if full and r.mode == "sync" and r.status == "missing on active"]
        return Plan(rows, send, sorted(delete, reverse=True))  # children before their directories

    def _parents(self, remote: str) -> None:
        """mkdir -p of the directories above `remote`, under the peer's SYNC_ROOT."""
        missing = []
        directory = os.path.dirname(remote)
        while directory and directory != os.path.dirname(directory) and directory not in self._known_dirs:
            try:
                self.sftp.stat(directory)
                break
            except FileNotFoundError:
                missing.append(directory)
                directory = os.path.dirname(directory)
        for path in reversed(missing):
            with contextlib.suppress(OSError):  # made meanwhile
                self.sftp.mkdir(path, 0o755)
        self._known_dirs.update(missing)
        self._known_dirs.add(os.path.dirname(remote))  # one stat per directory, not per file

    def stage(self, rel: str) -> dict[str, str] | None:
        """Copy one file to a temp file next to its place on the standby, with its owner, mode and
        times (a directory is made at once); the commit step puts it in place."""
        local = real_path(self.config.sync_root(self.me), rel)
        remote = real_path(self.root, rel)
        entry = entry_of(self.config.sync_entries(), rel) or SyncEntry(rel)
        st = os.stat(local)
        try:
            self._parents(remote)
            if os.path.isdir(local):
                with contextlib.suppress(OSError):  # it exists: mode and owner below
                    self.sftp.mkdir(remote, st.st_mode & 0o7777)
                self.sftp.chmod(remote, st.st_mode & 0o7777)
                self.sftp.chown(remote, st.st_uid, st.st_gid)
                return None
            tmp = os.path.join(os.path.dirname(remote), f"{TMP_PREFIX}{secrets.token_hex(6)}")
            digest = hashlib.sha256()
            with self.sftp.open(tmp, "wb") as f:
                # sftp-server creates it 0644: private before the first byte of a secret lands
                f.chmod(0o600)
                f.set_pipelined(True)
                for chunk in _chunks(local, entry):
                    digest.update(chunk)
                    f.write(chunk)
        except (OSError, paramiko.SSHException, EOFError) as e:
            raise SyncError(f"{rel}: sending to the {self.peer} failed: {e}") from None
        # the hash of what was sent: if the file changed while it was read, the commit still
        # checks that the bytes that arrived are the bytes that were sent. Owner, mode and times
        # go with it: the commit sets them there, no round trip per attribute.
        return {
            "tmp": os.path.relpath(tmp, self.root),
            "path": rel,
            "sha256": digest.hexdigest(),
            **asdict(Attributes.of(st)),
        }

    def commit(self, items: list[dict[str, Any]]) -> list[str]:
        """Put staged files in place (and delete paths) on the standby, in one remote run."""
        if not items:
            return []
        data = json.dumps(items).encode()
        out = self.run("sync-commit", "--batch", timeout=self.config.SYNC_TIMEOUT, data=data)
        return out.strip().splitlines()

    def send(self, rels: Sequence[str], delete: Sequence[str] = ()) -> list[str]:
        """Send these paths (parents before children) and delete those; what the standby did."""
        staged = [item for rel in rels if (item := self.stage(rel)) is not None]
        return self.commit([*staged, *({"path": rel, "delete": True} for rel in delete)])


def _chunks(path: str, entry: SyncEntry) -> Iterator[bytes]:
    if entry.substitute:
        yield read_substituted(path, entry.substitute)
        return
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def result_path(config: Config) -> str:
    return os.path.join(config.STATE_DIR, "sync.json")


def read_result(config: Config) -> dict[str, Any]:
    try:
        with open(result_path(config)) as f:
            data: dict[str, Any] = json.load(f)
            return data
    except (OSError, ValueError):
        return {}


def write_result(config: Config, **fields: Any) -> None:
    """The last sync outcome, for `failover status` (wall clock: shown, never decided on)."""
    data = {**read_result(config), **fields, "time": wall_clock(), "epoch": time.time()}
    atomic_write(result_path(config), json.dumps(data).encode(), durable=False)


def wait_time(failures: int, interval: float) -> float:
    """Backoff after `failures` failed automatic syncs in a row: doubling, at most 8 intervals."""
    return float(interval * min(8, 2 ** max(0, failures - 1)))

"""Sync to the standby over SSH: its inventory from `failover sync-inventory` run there, files sent
over SFTP to a temp file next to their place, then `failover sync-commit` there verifies the
hash, makes the file durable and renames it (the previous version kept). The peer's host key is
pinned (RLOGIN_KNOWN_HOSTS); every step has a timeout.

A failed or interrupted transfer leaves only a temp file, never a half-written synced file; the
next run removes stale temp files (sync-inventory does).

Only this host's 'sync' paths are ever sent or deleted (make_plan, and send checks again), and
the standby checks each against its own config. Directories and symlinks are made by the
standby's sync-commit, not over SFTP, so that it decides; its `parents` step makes missing
directories before a file is uploaded into them. Files are read with O_NOFOLLOW: a link is sent
as a link (its target text), never as the bytes it points to.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import stat
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any, BinaryIO

import paramiko

from failover.config import Config
from failover.machine import Role
from failover.ssh import remote_failover, ssh_client
from failover.state import atomic_write, wall_clock
from failover.sync.files import (
    CHUNK,
    TMP_PREFIX,
    Attributes,
    FileInfo,
    Row,
    SyncError,
    compare,
    copy_entry,
    inventory,
    mode_of,
    open_regular,
    read_for_substitution,
    real_path,
    substituted,
    top_depth,
)
from failover.sync.schema import inventory_from_json


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
        self.peer = me.peer
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
        """The standby's files, its JSON checked field by field (SyncError naming path and field)."""
        args = ["sync-inventory", "--clean-temp"] if clean_temp else ["sync-inventory"]
        return inventory_from_json(self.run(*args, timeout=self.config.SYNC_TIMEOUT), f"the {self.peer}")

    def plan(self, full: bool) -> Plan:
        entries = self.config.sync_entries()
        active = inventory(self.config.sync_root(self.me), entries, for_standby=True)
        return make_plan(compare(entries, active, self.inventory(clean_temp=full)), full)

    def _directories_ready(self, rel: str) -> bool:
        """Whether the directories above `rel` are real directories on the standby (one SFTP call
        each, remembered), from the entry's own path down; if not, the standby makes them (or
        refuses: a symlink there) before anything is uploaded into them."""
        parts = rel.split("/")
        depth = top_depth(self.config.sync_entries(), rel) or 0
        for k in range(max(1, min(depth, len(parts) - 1)), len(parts)):
            directory = "/".join(parts[:k])
            if directory in self._known_dirs:
                continue
            inside = k >= depth  # synced content: must not be a symlink; above it, the admin's layout
            look = self.sftp.lstat if inside else self.sftp.stat
            try:
                st_mode = look(real_path(self.root, directory)).st_mode
            except FileNotFoundError:
                return False
            if st_mode is None or not stat.S_ISDIR(st_mode):
                return False
            self._known_dirs.add(directory)
        return True

    def stage(self, rel: str) -> dict[str, Any]:
        """Copy one file to a temp file next to its place on the standby; its owner, mode and
        times go with the step that puts it in place (sync-commit)."""
        local = real_path(self.config.sync_root(self.me), rel)
        remote = real_path(self.root, rel)
        entry = copy_entry(self.config.sync_entries(), rel)
        f, st = open_regular(local)  # never through a link: the bytes and stat of this very file
        with f:
            try:
                tmp = os.path.join(os.path.dirname(remote), f"{TMP_PREFIX}{secrets.token_hex(6)}")
                digest = hashlib.sha256()
                with self.sftp.open(tmp, "wb") as out:
                    # sftp-server creates it 0644: private before the first byte of a secret lands
                    out.chmod(0o600)
                    out.set_pipelined(True)
                    for chunk in _chunks(f, local, entry.substitute if entry else ()):
                        digest.update(chunk)
                        out.write(chunk)
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
        """Apply steps (files in place, directories, links, deletions) on the standby, in one remote run."""
        if not items:
            return []
        data = json.dumps(items).encode()
        out = self.run("sync-commit", "--batch", timeout=self.config.SYNC_TIMEOUT, data=data)
        return out.strip().splitlines()

    def send(self, rels: Sequence[str], delete: Sequence[str] = ()) -> list[str]:
        """Send these paths (parents before children) and delete those; what the standby did.

        Up to two remote runs: first the directories (and the missing parents of files and links),
        then, once the files are uploaded, the deletions (children first, so that a file or link
        can take a directory's place) and the files and links."""
        entries, local_root = self.config.sync_entries(), self.config.sync_root(self.me)
        setup: list[dict[str, Any]] = []
        last: list[dict[str, Any] | str] = []  # link steps, and the paths of the files to upload
        for rel in rels:
            if mode_of(entries, rel) != "sync":
                raise SyncError(f"/{rel}: not under a 'sync' entry of this host's SYNC_FILES: not sent")
            try:
                st = os.lstat(real_path(local_root, rel))
            except FileNotFoundError:
                raise SyncError(f"/{rel}: gone from this host while syncing") from None
            owner = {"uid": st.st_uid, "gid": st.st_gid}
            if stat.S_ISDIR(st.st_mode):
                setup.append({"kind": "dir", "path": rel, "mode": stat.S_IMODE(st.st_mode), **owner})
            elif stat.S_ISLNK(st.st_mode):
                last.append({"kind": "link", "path": rel, "target": os.readlink(real_path(local_root, rel)), **owner})
            elif stat.S_ISREG(st.st_mode):
                last.append(rel)
            # else: it became a fifo, socket or device since the plan: never sent
        made = {step["path"] for step in setup}
        for item in last:
            rel = item if isinstance(item, str) else item["path"]
            if os.path.dirname(rel) not in made and not self._directories_ready(rel):
                setup.append({"kind": "parents", "path": rel})
                made.add(os.path.dirname(rel))
        lines = self.commit(setup)
        steps = [self.stage(item) if isinstance(item, str) else item for item in last]
        return lines + self.commit([*({"path": rel, "delete": True} for rel in delete), *steps])


def make_plan(rows: list[Row], full: bool) -> Plan:
    """What to send and delete: only rows of this host's 'sync' entries. compare gives a path
    under any 'verify' entry the mode 'verify', and one under no entry here (that only the
    standby's config names) the mode 'none'; a special file is 'skipped'."""
    send = [r.path for r in rows if r.mode == "sync" and r.status in ("different", "missing on standby")]
    delete = [r.path for r in rows if full and r.mode == "sync" and r.status == "missing on active"]
    return Plan(rows, send, sorted(delete, reverse=True))  # children before their directories


def _chunks(f: BinaryIO, path: str, pairs: tuple[tuple[str, str], ...]) -> Iterator[bytes]:
    if pairs:
        yield substituted(read_for_substitution(f, path), pairs)
        return
    while chunk := f.read(CHUNK):
        yield chunk


def result_path(config: Config) -> str:
    return os.path.join(config.STATE_DIR, "sync.json")


def read_result(config: Config) -> dict[str, Any]:
    """The last sync outcome; {} if there is none or it cannot be read (a damaged file is
    rewritten by the next outcome, never a reason to stop syncing)."""
    try:
        with open(result_path(config)) as f:
            data = json.load(f)
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def failure_count(result: dict[str, Any]) -> int:
    """The automatic sync's failures in a row, as written by write_result (0 if unreadable)."""
    failures = result.get("failures")
    return failures if isinstance(failures, int) and not isinstance(failures, bool) and failures > 0 else 0


def write_result(config: Config, **fields: Any) -> None:
    """The last sync outcome, for `failover status` (wall clock: shown, never decided on)."""
    data = {**read_result(config), **fields, "time": wall_clock(), "epoch": time.time()}
    atomic_write(result_path(config), json.dumps(data).encode(), durable=False)


def wait_time(failures: int, interval: float) -> float:
    """Backoff after `failures` failed automatic syncs in a row: doubling, at most 8 intervals."""
    return float(interval * min(8, 2 ** max(0, failures - 1)))

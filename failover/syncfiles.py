"""Files that must match on both hosts (SYNC_FILES): what there is, how two sides compare, and
how a received file is put in place. Local file system only; failover.syncpeer moves the bytes.

Paths are kept relative to the host's SYNC_ROOT ("/" on real hosts; two directories when both
roles share one machine, as in the tests), so both sides name a file the same way.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

CHUNK = 1024 * 1024  # hashing and copying stream in chunks this big: never a whole file in memory
PREV_SUFFIX = ".failover-prev"
TMP_PREFIX = ".failover-tmp-"
MAX_SUBSTITUTED = 16 * 1024 * 1024  # a substitution rewrites the file in memory: config files only


class SyncError(Exception):
    pass


@dataclass(frozen=True)
class SyncEntry:
    """One SYNC_FILES entry: an absolute path or glob (a directory means everything under it)."""

    pattern: str
    mode: str = "sync"  # "sync": copied from the ACTIVE host; "verify": compared only, never copied
    substitute: tuple[tuple[str, str], ...] = ()  # applied to the copy (JSCAPE's IP substitution)

    def matches(self, rel: str) -> bool:
        pattern = self.pattern.lstrip("/")
        return fnmatch.fnmatch(rel, pattern) or rel.startswith(pattern.rstrip("/") + "/")


@dataclass(frozen=True)
class FileInfo:
    kind: str  # "file" or "dir"
    size: int
    mode: int  # permission bits
    uid: int
    gid: int
    mtime_ns: int
    sha256: str = ""  # files only

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FileInfo:
        return cls(**data)


def real_path(root: str, rel: str) -> str:
    return os.path.join(root, rel)


def _walk(root: str, entry: SyncEntry) -> Iterator[str]:
    """Relative paths of everything the entry names on this host (missing ones are simply absent)."""
    pattern = os.path.join(root, entry.pattern.lstrip("/"))
    for path in sorted(glob.glob(pattern)):
        yield os.path.relpath(path, root)
        if os.path.isdir(path) and not os.path.islink(path):
            for directory, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(dirs) + sorted(files):
                    if name.startswith(TMP_PREFIX) or name.endswith(PREV_SUFFIX):
                        continue
                    yield os.path.relpath(os.path.join(directory, name), root)


def clean_temp(root: str, entries: tuple[SyncEntry, ...]) -> int:
    """Remove temp files that interrupted transfers left in the synced directories."""
    removed = 0
    for entry in entries:
        for path in glob.glob(os.path.join(root, entry.pattern.lstrip("/"))):
            for directory, _, files in os.walk(path) if os.path.isdir(path) else []:
                for name in files:
                    if name.startswith(TMP_PREFIX):
                        os.unlink(os.path.join(directory, name))
                        removed += 1
    return removed


def substituted(data: bytes, pairs: tuple[tuple[str, str], ...]) -> bytes:
    for old, new in pairs:
        data = data.replace(old.encode(), new.encode())
    return data


def file_hash(path: str, pairs: tuple[tuple[str, str], ...] = ()) -> str:
    digest = hashlib.sha256()
    if pairs:
        digest.update(read_substituted(path, pairs))
        return digest.hexdigest()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_substituted(path: str, pairs: tuple[tuple[str, str], ...]) -> bytes:
    if os.path.getsize(path) > MAX_SUBSTITUTED:
        raise SyncError(f"{path}: too big for a substitution (over {MAX_SUBSTITUTED} bytes)")
    with open(path, "rb") as f:
        return substituted(f.read(), pairs)


def describe(path: str, pairs: tuple[tuple[str, str], ...] = (), hashed: bool = True) -> FileInfo | None:
    """What the file or directory is (its hash as the standby should have it, with substitution)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(st.st_mode):
        return FileInfo("dir", 0, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, 0)
    if not stat.S_ISREG(st.st_mode):
        raise SyncError(f"{path}: not a regular file or directory")
    size, digest = st.st_size, ""
    if hashed and pairs:  # the standby's copy: its size and hash are those of the substituted bytes
        data = read_substituted(path, pairs)
        size, digest = len(data), hashlib.sha256(data).hexdigest()
    elif hashed:
        digest = file_hash(path)
    return FileInfo("file", size, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns, digest)


def entry_of(entries: tuple[SyncEntry, ...], rel: str) -> SyncEntry | None:
    for entry in entries:
        if entry.matches(rel):
            return entry
    return None


def inventory(root: str, entries: tuple[SyncEntry, ...], for_standby: bool, hashed: bool = True) -> dict[str, FileInfo]:
    """Every file and directory SYNC_FILES names here. `for_standby`: hash the files as the
    standby should hold them (substitutions applied); `hashed=False`: metadata only."""
    found: dict[str, FileInfo] = {}
    for entry in entries:
        pairs = entry.substitute if for_standby else ()
        for rel in _walk(root, entry):
            if rel not in found:
                info = describe(real_path(root, rel), pairs, hashed)
                if info is not None:
                    found[rel] = info
    return found


@dataclass(frozen=True)
class Row:
    path: str
    status: str  # "equal", "different", "missing on standby", "missing on active"
    detail: str
    mode: str  # the entry's mode: "sync" or "verify"


def compare(entries: tuple[SyncEntry, ...], active: dict[str, FileInfo], standby: dict[str, FileInfo]) -> list[Row]:
    """Each path on either side, by size, mode, owner and SHA-256 (never content)."""
    rows = []
    for rel in sorted(set(active) | set(standby)):
        entry = entry_of(entries, rel)
        mode = entry.mode if entry else "sync"
        a, s = active.get(rel), standby.get(rel)
        if a is None:
            rows.append(Row(rel, "missing on active", "only on the standby", mode))
        elif s is None:
            rows.append(Row(rel, "missing on standby", f"{a.kind}, {a.size} bytes", mode))
        else:
            diffs = []
            if a.kind != s.kind:
                diffs.append(f"kind {a.kind} != {s.kind}")
            if a.kind == "file" and a.size != s.size:
                diffs.append(f"size {a.size} != {s.size}")
            if a.mode != s.mode:
                diffs.append(f"mode {a.mode:04o} != {s.mode:04o}")
            if (a.uid, a.gid) != (s.uid, s.gid):
                diffs.append(f"owner {a.uid}:{a.gid} != {s.uid}:{s.gid}")
            if a.kind == "file" and a.sha256 != s.sha256:
                diffs.append("content (SHA-256) differs")
            rows.append(Row(rel, "different" if diffs else "equal", "; ".join(diffs), mode))
    return rows


# ---------------------------------------------------------------------------------------------- receiving


@dataclass(frozen=True)
class Attributes:
    """What a synced file carries besides its bytes."""

    mode: int
    uid: int
    gid: int
    atime_ns: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> Attributes:
        return cls(stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_atime_ns, st.st_mtime_ns)

    @classmethod
    def parse(cls, item: dict[str, Any]) -> Attributes:
        """From a sync-commit step; a missing or non-integer field is refused."""
        values = {name: item.get(name) for name in ("mode", "uid", "gid", "atime_ns", "mtime_ns")}
        bad = [name for name, value in values.items() if not isinstance(value, int) or isinstance(value, bool)]
        if bad or not 0 <= values["mode"] <= 0o7777:  # type: ignore[operator]
            raise SyncError(f"bad attributes {', '.join(bad) or 'mode'} in {item!r}")
        return cls(**values)  # type: ignore[arg-type]


def commit(root: str, tmp_rel: str, rel: str, sha256: str, attributes: Attributes) -> str:
    """Put a received temp file in place: verify its hash, give it its owner, mode and times,
    make it durable, keep the previous version as FILE.failover-prev, rename atomically. The
    caller makes the rename durable (fsync_dir, once per directory for a whole batch)."""
    tmp, final = real_path(root, tmp_rel), real_path(root, rel)
    if os.path.dirname(tmp) != os.path.dirname(final) or not os.path.basename(tmp).startswith(TMP_PREFIX):
        raise SyncError(f"{tmp_rel}: not a temp file next to {rel}")
    got = file_hash(tmp)
    if got != sha256:
        os.unlink(tmp)
        raise SyncError(f"{rel}: received content has SHA-256 {got[:12]}..., expected {sha256[:12]}...: discarded")
    os.chown(tmp, attributes.uid, attributes.gid)
    os.chmod(tmp, attributes.mode)  # after chown, which clears set-id bits
    os.utime(tmp, ns=(attributes.atime_ns, attributes.mtime_ns))
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    if os.path.isfile(final):
        prev = final + PREV_SUFFIX
        prev_tmp = prev + ".tmp"
        if os.path.exists(prev_tmp):
            os.unlink(prev_tmp)
        os.link(final, prev_tmp)
        os.replace(prev_tmp, prev)
    os.replace(tmp, final)
    return f"{rel}: in place ({sha256[:12]}...)"


def remove(root: str, rel: str) -> str:
    """Delete a file or an empty directory the ACTIVE host does not have (full sync); the caller
    makes it durable (fsync_dir)."""
    path = real_path(root, rel)
    if os.path.isdir(path) and not os.path.islink(path):
        os.rmdir(path)
    elif os.path.lexists(path):
        os.unlink(path)
    return f"{rel}: deleted"

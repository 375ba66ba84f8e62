"""Files that must match on both hosts (SYNC_FILES): what there is and how two sides compare.
Local file system only; failover.sync.peer moves the bytes, failover.sync.receive puts them in
place on the standby, failover.sync.schema checks what the standby reports.

Paths are kept relative to the host's SYNC_ROOT ("/" on real hosts; two directories when both
roles share one machine, as in the tests), so both sides name a file the same way.

Which entry a path belongs to decides what may happen to it: a path under any 'verify' entry is
'verify' (compared, never written or deleted), even inside a 'sync' directory; a path under no
entry is "none", and nothing is ever planned for it. So a host never acts on a path that its own
SYNC_FILES does not make a 'sync' path (see mode_of).

Symlinks are synced AS SYMLINKS: the inventory records the link's target text (os.readlink),
compare compares that text, and the standby recreates the link with the same text. A link is
never followed, neither by the inventory (it does not descend into a linked directory), nor when
a file is read (O_NOFOLLOW), nor on the standby (which never writes or deletes through one). Why
not follow: a link pointing outside the tree (to /etc/shadow, say) would copy and hash a file no
entry names; a linked directory could make the walk loop. Why not refuse: one link anywhere
would stop the whole entry from syncing, and links are ordinary configuration (sites-enabled ->
sites-available). The target text is copied verbatim, so an absolute target names the same path
on the standby, whatever it holds there. Special files (fifos, sockets, devices) cannot be
copied as data: they are reported per path ("skipped") and never sent or deleted.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from fnmatch import fnmatchcase
from typing import Any, BinaryIO

from failover.errors import FailoverError

CHUNK = 1024 * 1024  # hashing and copying stream in chunks this big: never a whole file in memory
PREV_SUFFIX = ".failover-prev"
TMP_PREFIX = ".failover-tmp-"
MAX_SUBSTITUTED = 16 * 1024 * 1024  # a substitution rewrites the file in memory: config files only
SYNCED_KINDS = ("file", "dir", "link")  # what a sync copies; the other kinds are only reported
SPECIAL_KINDS = ("fifo", "socket", "device", "other")


class SyncError(FailoverError):
    """Any sync failure, with the path and the problem in its message: the one error the sync
    modules raise for bad input, whether it comes from the peer or from the local disk."""


@dataclass(frozen=True)
class SyncEntry:
    """One SYNC_FILES entry: an absolute path or glob (a directory means everything under it)."""

    pattern: str
    mode: str = "sync"  # "sync": copied from the ACTIVE host; "verify": compared only, never copied
    substitute: tuple[tuple[str, str], ...] = ()  # applied to the copy (JSCAPE's IP substitution)

    @property
    def parts(self) -> list[str]:
        return [part for part in self.pattern.split("/") if part]

    @property
    def depth(self) -> int:
        """How many components the entry's own path has: those below it are synced content."""
        return len(self.parts)

    def matches(self, rel: str) -> bool:
        """Whether `rel` is what the entry names or under it, component by component with glob's
        rules (as _walk finds them): '*' never crosses a '/', and matches no hidden name."""
        parts, pattern = rel.split("/"), self.parts
        return len(parts) >= len(pattern) and all(_component(n, p) for n, p in zip(parts, pattern, strict=False))


def _component(name: str, pattern: str) -> bool:
    if not glob.has_magic(pattern):
        return name == pattern
    if name.startswith(".") and not pattern.startswith("."):
        return False  # glob.glob skips hidden names unless the pattern asks for them
    return fnmatchcase(name, pattern)


def entry_of(entries: tuple[SyncEntry, ...], rel: str) -> SyncEntry | None:
    for entry in entries:
        if entry.matches(rel):
            return entry
    return None


def mode_of(entries: tuple[SyncEntry, ...], rel: str) -> str | None:
    """'verify' if any entry that covers `rel` is 'verify' (the secret inside a synced directory
    stays a secret, whatever the order of the entries), else 'sync' if one covers it, else None."""
    modes = {entry.mode for entry in entries if entry.matches(rel)}
    if "verify" in modes:
        return "verify"
    return "sync" if modes else None


def copy_entry(entries: tuple[SyncEntry, ...], rel: str) -> SyncEntry | None:
    """The 'sync' entry whose substitution applies to `rel`, if `rel` is a 'sync' path."""
    if mode_of(entries, rel) != "sync":
        return None
    return next(entry for entry in entries if entry.mode == "sync" and entry.matches(rel))


def top_depth(entries: tuple[SyncEntry, ...], rel: str, modes: tuple[str, ...] = ("sync",)) -> int | None:
    """The depth of the shallowest entry (of those modes) that covers `rel`: the components of
    `rel` from there down are synced content, never to be followed if they are symlinks."""
    depths = [entry.depth for entry in entries if entry.mode in modes and entry.matches(rel)]
    return min(depths) if depths else None


@dataclass(frozen=True)
class FileInfo:
    kind: str  # "file", "dir", "link", or a special kind (SPECIAL_KINDS): reported, never synced
    size: int
    mode: int  # permission bits
    uid: int
    gid: int
    mtime_ns: int
    sha256: str = ""  # files only
    target: str = ""  # links only: the link's own text, never what it points to

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def kind_of(st_mode: int) -> str:
    if stat.S_ISREG(st_mode):
        return "file"
    if stat.S_ISDIR(st_mode):
        return "dir"
    if stat.S_ISLNK(st_mode):
        return "link"
    if stat.S_ISFIFO(st_mode):
        return "fifo"
    if stat.S_ISSOCK(st_mode):
        return "socket"
    if stat.S_ISCHR(st_mode) or stat.S_ISBLK(st_mode):
        return "device"
    return "other"


def real_path(root: str, rel: str) -> str:
    return os.path.join(root, rel)


def printable(text: str) -> str:
    """`text` safe for a terminal or a log: a file name that is not UTF-8 shows as escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _own(name: str) -> bool:
    """The sync's own temp and previous-version files, never synced themselves."""
    return name.startswith(TMP_PREFIX) or name.endswith(PREV_SUFFIX)


def _unlistable(error: OSError) -> None:
    # A directory that cannot be read would look empty, and a full sync would then delete what
    # the standby has there: the whole inventory fails instead. One removed meanwhile is absent.
    if not isinstance(error, FileNotFoundError):
        raise SyncError(f"{error.filename}: cannot be listed: {error.strerror}")


def _tops(root: str, entry: SyncEntry) -> list[str]:
    if not entry.parts:  # the entry "/": everything under SYNC_ROOT
        return sorted(os.listdir(root))
    return sorted(os.path.normpath(p) for p in glob.glob("/".join(entry.parts), root_dir=root))


def _walk(root: str, entry: SyncEntry) -> Iterator[str]:
    """Relative paths of everything the entry names on this host (missing ones are simply
    absent), never descending into a symlink."""
    for rel in _tops(root, entry):
        if _own(os.path.basename(rel)):
            continue
        yield rel
        path = real_path(root, rel)
        if os.path.isdir(path) and not os.path.islink(path):
            for directory, dirs, files in os.walk(path, onerror=_unlistable):  # never follows links
                dirs[:] = sorted(name for name in dirs if not _own(name))
                for name in dirs + sorted(name for name in files if not _own(name)):
                    yield os.path.relpath(os.path.join(directory, name), root)


def clean_temp(root: str, entries: tuple[SyncEntry, ...]) -> int:
    """Remove temp files that interrupted transfers left in the synced directories: only where
    a sync may write ('sync' paths, never a 'verify' one), never through a symlink (a linked
    directory is not ours to clean)."""
    removed = 0
    for entry in entries:
        for rel in _tops(root, entry) if entry.mode == "sync" else []:
            path = real_path(root, rel)
            if os.path.islink(path) or not os.path.isdir(path):
                continue
            for directory, _, files in os.walk(path):
                for name in files:
                    temp = os.path.join(directory, name)
                    if name.startswith(TMP_PREFIX) and mode_of(entries, os.path.relpath(temp, root)) == "sync":
                        os.unlink(temp)
                        removed += 1
    return removed


def substituted(data: bytes, pairs: tuple[tuple[str, str], ...]) -> bytes:
    for old, new in pairs:
        data = data.replace(old.encode(), new.encode())
    return data


def open_regular(path: str) -> tuple[BinaryIO, os.stat_result]:
    """Open a regular file to read it: never through a symlink (O_NOFOLLOW: a file replaced by a
    link meanwhile is not read), never blocking on a fifo put in its place (O_NONBLOCK); its
    stat, taken from the open file, goes with the bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise SyncError(f"{path}: became a symlink while syncing: not followed") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise SyncError(f"{path}: became a {kind_of(st.st_mode)} while syncing: not read")
    return os.fdopen(fd, "rb"), st


def read_for_substitution(f: BinaryIO, path: str) -> bytes:
    data = f.read(MAX_SUBSTITUTED + 1)
    if len(data) > MAX_SUBSTITUTED:
        raise SyncError(f"{path}: too big for a substitution (over {MAX_SUBSTITUTED} bytes)")
    return data


def digest_of(f: BinaryIO, path: str, pairs: tuple[tuple[str, str], ...] = ()) -> tuple[int, str]:
    """Size and SHA-256 of the file's bytes as the standby should hold them (substituted)."""
    if pairs:
        data = substituted(read_for_substitution(f, path), pairs)
        return len(data), hashlib.sha256(data).hexdigest()
    digest, size = hashlib.sha256(), 0
    while chunk := f.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def file_hash(path: str, pairs: tuple[tuple[str, str], ...] = ()) -> str:
    f, _ = open_regular(path)
    with f:
        return digest_of(f, path, pairs)[1]


def describe(path: str, pairs: tuple[tuple[str, str], ...] = (), hashed: bool = True) -> FileInfo | None:
    """What is at `path` itself (a link is described, not followed), with a file's hash as the
    standby should have it (with substitution); None if nothing is there."""
    try:
        st = os.lstat(path)
        kind = kind_of(st.st_mode)
        if kind == "link":
            target = os.readlink(path)
            return FileInfo(kind, len(os.fsencode(target)), 0o777, st.st_uid, st.st_gid, st.st_mtime_ns, "", target)
    except FileNotFoundError:
        return None
    if kind == "dir":
        return FileInfo("dir", 0, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, 0)
    if kind != "file":
        return FileInfo(kind, 0, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, 0)
    size, digest = st.st_size, ""
    if hashed:
        try:
            f, st = open_regular(path)
        except FileNotFoundError:
            return None
        with f:
            size, digest = digest_of(f, path, pairs)
    return FileInfo("file", size, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns, digest)


def inventory(root: str, entries: tuple[SyncEntry, ...], for_standby: bool, hashed: bool = True) -> dict[str, FileInfo]:
    """Every file, directory, symlink and special file SYNC_FILES names here. `for_standby`: hash
    the files as the standby should hold them (substitutions applied); `hashed=False`: metadata only."""
    found: dict[str, FileInfo] = {}
    for entry in entries:
        for rel in _walk(root, entry):
            if rel not in found:
                copy = copy_entry(entries, rel) if for_standby else None
                info = describe(real_path(root, rel), copy.substitute if copy else (), hashed)
                if info is not None:
                    found[rel] = info
    return found


@dataclass(frozen=True)
class Row:
    path: str
    status: str  # "equal", "different", "missing on standby", "missing on active", "skipped"
    detail: str
    mode: str  # "sync" or "verify", or "none": under no entry of this host (only the peer's)


def compare(entries: tuple[SyncEntry, ...], active: dict[str, FileInfo], standby: dict[str, FileInfo]) -> list[Row]:
    """Each path on either side, by kind, size, mode, owner, SHA-256 or link target (never
    content). `entries` are this (the ACTIVE) host's: they give each row its mode."""
    return [
        _row(rel, mode_of(entries, rel) or "none", active.get(rel), standby.get(rel))
        for rel in sorted(set(active) | set(standby))
    ]


def _row(rel: str, mode: str, a: FileInfo | None, s: FileInfo | None) -> Row:
    for info, where in ((a, "active host"), (s, "standby")):
        if info is not None and info.kind not in SYNCED_KINDS:
            detail = f"a {info.kind} on the {where}: only files, directories and symlinks are synced"
            return Row(rel, "skipped", detail, mode)
    if a is None:
        status, detail = "missing on active", "only on the standby"
    elif s is None:
        status, detail = "missing on standby", f"{a.kind}, {a.size} bytes"
    else:
        diffs = []
        if a.kind != s.kind:
            diffs.append(f"kind {a.kind} != {s.kind}")
        if a.kind == s.kind == "file" and a.size != s.size:
            diffs.append(f"size {a.size} != {s.size}")
        if "link" not in (a.kind, s.kind) and a.mode != s.mode:  # a link's own mode is always 0777
            diffs.append(f"mode {a.mode:04o} != {s.mode:04o}")
        if (a.uid, a.gid) != (s.uid, s.gid):
            diffs.append(f"owner {a.uid}:{a.gid} != {s.uid}:{s.gid}")
        if a.kind == s.kind == "file" and a.sha256 != s.sha256:
            diffs.append("content (SHA-256) differs")
        if a.kind == s.kind == "link" and a.target != s.target:
            diffs.append("link target differs")
        status, detail = "different" if diffs else "equal", "; ".join(diffs)
    if mode == "none":
        detail += "; under none of this host's SYNC_FILES entries (do the configs differ?): never written or deleted"
    return Row(rel, status, detail, mode)


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
        """From a sync-commit step; a missing, non-integer (a bool is no integer) or out-of-range
        field is refused."""
        values = {name: item.get(name) for name in ATTRIBUTE_RANGES}
        bad = [name for name, value in values.items() if not is_int(value, *ATTRIBUTE_RANGES[name])]
        if bad:
            shown = ", ".join(f"{name}={values[name]!r:.40}" for name in bad)
            raise SyncError(f"bad attributes {', '.join(bad)} ({shown})")
        return cls(**values)  # type: ignore[arg-type]


INT64 = (-(2**63), 2**63 - 1)
ID_RANGE = (0, 2**32 - 1)  # uid and gid
ATTRIBUTE_RANGES = {"mode": (0, 0o7777), "uid": ID_RANGE, "gid": ID_RANGE, "atime_ns": INT64, "mtime_ns": INT64}


def is_int(value: object, lo: int, hi: int) -> bool:
    """An int in [lo, hi], and not a bool (which Python counts as an int)."""
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi

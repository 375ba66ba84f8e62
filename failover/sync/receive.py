"""The standby's side of a sync (`failover sync-commit` runs apply_batch): put received temp
files in place, make directories and symlinks, delete what the ACTIVE host does not have.

What it may touch is decided here, by THIS host's SYNC_FILES, whatever the ACTIVE host planned:
a step is refused, with its path and why, unless its path is under one of this host's 'sync'
entries and under none of its 'verify' entries (failover.sync.files.mode_of). The ACTIVE host
plans only within its own 'sync' entries, so a path is written or deleted only when both
hosts' configs make it a 'sync' path. A batch is checked whole before its first step runs: one
refused step refuses the batch, and nothing is changed (a config that differs between the hosts
is an operator's business, not something to half-apply). Outside an entry's own path a step
only makes the missing directories above it (`mkdir -p`: the SFTP upload needs them) and, for an
entry that is one file, takes the temp file received next to it and keeps its FILE.failover-prev
there, as before.

Every step goes through directory file descriptors opened from SYNC_ROOT down, with O_NOFOLLOW
from the entry's own path down: a symlink inside a synced tree (synced as a link, see
failover.sync.files) is never followed, so no step writes or deletes through one, whatever it
points to. The directories above the entry are the administrator's layout (/lib -> usr/lib on
Debian) and are followed. Deleting a link deletes the link.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import stat
from collections.abc import Callable
from dataclasses import asdict, dataclass

from failover.sync.files import (
    CHUNK,
    PREV_SUFFIX,
    TMP_PREFIX,
    Attributes,
    SyncEntry,
    SyncError,
    kind_of,
    mode_of,
    top_depth,
)
from failover.sync.schema import SHA256, path_problem, shown

DIR_OPEN = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
# The fields of each kind of step ("file" and "delete" need no "kind": the original format).
STEP_FIELDS = {
    "file": {"kind", "path", "tmp", "sha256", "mode", "uid", "gid", "atime_ns", "mtime_ns"},
    "delete": {"kind", "path", "delete"},
    "dir": {"kind", "path", "mode", "uid", "gid"},
    "link": {"kind", "path", "target", "uid", "gid"},
    "parents": {"kind", "path"},  # make the missing directories above `path`
}


NO_ATTRIBUTES = Attributes(0, 0, 0, 0, 0)


@dataclass(frozen=True)
class Step:
    kind: str
    path: str
    tmp: str = ""
    sha256: str = ""
    target: str = ""
    attributes: Attributes = NO_ATTRIBUTES  # file: all; dir: mode, uid, gid; link: uid, gid


def refusal(entries: tuple[SyncEntry, ...], rel: str) -> str | None:
    """Why this host refuses to write or delete `rel`, or None if it is one of its 'sync' paths."""
    mode = mode_of(entries, rel)
    if mode is None:
        return "under none of this host's SYNC_FILES entries: refused"
    if mode == "verify":
        return "under a 'verify' entry of this host's SYNC_FILES (compared only, never written or deleted): refused"
    return None


def parse_step(i: int, item: object) -> Step:
    """One step of a batch, its types and ranges checked (SyncError naming the path and field)."""
    if not isinstance(item, dict):
        raise SyncError(f"step {i}: expected an object, got {shown(item)}")
    rel = item.get("path")
    problem = path_problem(rel)
    if problem is not None or not isinstance(rel, str):
        raise SyncError(f"step {i}: path {shown(rel)}: {problem}")
    kind = item.get("kind", "delete" if "delete" in item else "file")
    if not isinstance(kind, str) or kind not in STEP_FIELDS:  # (a list is no dict key: check the type first)
        raise SyncError(f"/{rel}: field 'kind': expected one of {', '.join(STEP_FIELDS)}, got {shown(kind)}")
    unknown = sorted(str(name)[:40] for name in set(item) - STEP_FIELDS[kind])
    if unknown:
        raise SyncError(f"/{rel}: unknown fields for a {kind} step: {', '.join(unknown[:5])}")
    if kind == "delete":
        if item.get("delete") is not True:
            raise SyncError(f"/{rel}: field 'delete': expected true, got {shown(item.get('delete'))}")
        return Step("delete", rel)
    if kind == "parents":
        return Step("parents", rel)
    if kind == "link":
        target = item.get("target")
        if not isinstance(target, str) or not target or "\0" in target:
            raise SyncError(f"/{rel}: field 'target': expected a link's text, got {shown(target)}")
        try:
            os.fsencode(target)
        except UnicodeEncodeError:
            raise SyncError(f"/{rel}: field 'target': not encodable as a file name") from None
        owner = {name: item.get(name) for name in ("uid", "gid")}
        return Step("link", rel, target=target, attributes=_attributes(rel, {"mode": 0o777, **owner}))
    if kind == "dir":
        return Step("dir", rel, attributes=_attributes(rel, {k: item.get(k) for k in ("mode", "uid", "gid")}))
    tmp, sha256 = item.get("tmp"), item.get("sha256")
    tmp_problem = path_problem(tmp)
    if tmp_problem is not None or not isinstance(tmp, str):
        raise SyncError(f"/{rel}: field 'tmp': {tmp_problem}")
    if os.path.dirname(tmp) != os.path.dirname(rel) or not os.path.basename(tmp).startswith(TMP_PREFIX):
        raise SyncError(f"/{rel}: field 'tmp': /{tmp} is not a temp file next to it")
    if not isinstance(sha256, str) or not SHA256.fullmatch(sha256):
        raise SyncError(f"/{rel}: field 'sha256': expected 64 lowercase hex digits, got {shown(sha256)}")
    return Step("file", rel, tmp=tmp, sha256=sha256, attributes=_attributes(rel, item))


def _attributes(rel: str, fields: dict[str, object]) -> Attributes:
    try:
        return Attributes.parse({"atime_ns": 0, "mtime_ns": 0, **fields})
    except SyncError as e:
        raise SyncError(f"/{rel}: {e}") from None


def apply_batch(root: str, entries: tuple[SyncEntry, ...], data: object, report: Callable[[str], None]) -> None:
    """Check every step of the batch (its types, and that this host owns its path); if one is
    refused nothing is done, and the SyncError names each refused path and why. Then apply them
    in order, `report`ing what each did; on the first failure the remaining temp files go."""
    if not isinstance(data, list):
        raise SyncError(f"bad input: expected a list of steps, got {shown(data)}")
    steps: list[Step] = []
    problems: list[str] = []
    for i, item in enumerate(data):
        try:
            step = parse_step(i, item)
        except SyncError as e:
            problems.append(str(e))
            continue
        steps.append(step)
        why = refusal(entries, step.path)
        if why is not None:
            problems.append(f"/{step.path}: {why}")
    receiver = Receiver(root, entries)
    try:
        if problems:
            receiver.discard(steps)
            more = f"; and {len(problems) - 10} more" if len(problems) > 10 else ""
            raise SyncError(
                f"refused {len(problems)} of {len(data)} steps, nothing changed: {'; '.join(problems[:10])}{more}"
            )
        for i, step in enumerate(steps):
            try:
                line = receiver.apply(step)
            except (SyncError, OSError) as e:
                receiver.discard(steps[i:])
                raise SyncError(f"/{step.path}: {e}") from None
            if line:
                report(line)
    finally:
        receiver.close()


class _Missing(SyncError):
    """A directory on the way to a path is not there."""


class Receiver:
    """Steps applied under `root` for this host's `entries`; close() makes them durable (one
    fsync per changed directory) and closes the directory descriptors it keeps."""

    def __init__(self, root: str, entries: tuple[SyncEntry, ...]) -> None:
        self.root, self.entries = root, entries
        self._dirs: dict[tuple[str, int], int] = {}  # (parent, entry depth) -> its descriptor
        self._changed: set[tuple[str, int]] = set()

    def close(self) -> None:
        try:
            for key in sorted(self._changed & set(self._dirs)):
                os.fsync(self._dirs[key])
        except OSError as e:
            raise SyncError(f"/{key[0]}: making the changes durable failed: {e}") from None
        finally:
            for fd in self._dirs.values():
                os.close(fd)
            self._dirs.clear()

    def apply(self, step: Step) -> str:
        if step.kind == "delete":
            return self.remove(step.path)
        if step.kind == "parents":
            self._parent(step.path, create=True)
            return ""
        if step.kind == "dir":
            return self.make_dir(step.path, step.attributes)
        if step.kind == "link":
            return self.make_link(step.path, step.target, step.attributes)
        return self.commit(step.tmp, step.path, step.sha256, step.attributes)

    def _parent(self, rel: str, create: bool = False) -> tuple[int, str]:
        """A descriptor of the directory holding `rel`, reached without following a symlink from
        the entry's own path down (`create`: making the missing directories), and the name in it."""
        parts = rel.split("/")
        depth = top_depth(self.entries, rel)
        if depth is None:
            raise SyncError(f"/{rel}: under no entry here")
        key = ("/".join(parts[:-1]), depth)
        if key not in self._dirs:
            fd = os.open(self.root, DIR_OPEN)
            for k, name in enumerate(parts[:-1], start=1):
                fd = self._into(fd, name, "/".join(parts[:k]), follow=k < depth, create=create)
            self._dirs[key] = fd
        return self._dirs[key], parts[-1]

    @staticmethod
    def _into(fd: int, name: str, where: str, follow: bool, create: bool) -> int:
        """The descriptor of directory `name` in `fd` (which is closed)."""
        flags = DIR_OPEN if follow else DIR_OPEN | os.O_NOFOLLOW
        try:
            try:
                return os.open(name, flags, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise _Missing(f"/{where}: no such directory here") from None
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o755, dir_fd=fd)
                os.fsync(fd)  # the new directory's own entry
                return os.open(name, flags, dir_fd=fd)
            except OSError as e:
                if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                what = kind_of(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode)
                what = "a symlink" if what == "link" else f"a {what}, not a directory"
                raise SyncError(f"/{where} is {what} on this host: a sync never writes or deletes through it") from None
        finally:
            os.close(fd)

    def _changed_in(self, rel: str) -> None:
        self._changed.add((os.path.dirname(rel), top_depth(self.entries, rel) or 0))

    def _make_room(self, d: int, name: str, clear: bool) -> None:
        """Make way for a new file, link or directory: a file there is kept as NAME.failover-prev
        (and unlinked if `clear`), an empty directory removed, a link removed if `clear`."""
        try:
            st = os.stat(name, dir_fd=d, follow_symlinks=False)
        except FileNotFoundError:
            return
        kind = kind_of(st.st_mode)
        if kind == "file":
            prev, prev_tmp = name + PREV_SUFFIX, name + PREV_SUFFIX + ".tmp"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(prev_tmp, dir_fd=d)
            os.link(name, prev_tmp, src_dir_fd=d, dst_dir_fd=d, follow_symlinks=False)
            os.replace(prev_tmp, prev, src_dir_fd=d, dst_dir_fd=d)
        elif kind == "dir":
            try:
                os.rmdir(name, dir_fd=d)
            except OSError as e:
                if e.errno != errno.ENOTEMPTY:
                    raise
                raise SyncError("a directory with files here: `failover sync --full` deletes them first") from None
            return
        elif kind != "link":
            raise SyncError(f"a {kind} here: never replaced by a sync")
        if clear:
            os.unlink(name, dir_fd=d)

    def commit(self, tmp_rel: str, rel: str, sha256: str, attributes: Attributes) -> str:
        """Put a received temp file in place: verify its hash, give it its owner, mode and times,
        make it durable, keep the previous version as FILE.failover-prev, rename atomically."""
        d, name = self._parent(rel)
        tmp = os.path.basename(tmp_rel)
        try:
            fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=d)
        except FileNotFoundError:
            raise SyncError(f"/{tmp_rel}: no such temp file") from None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise SyncError(f"/{tmp_rel}: a symlink, not a received file") from None
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:  # a hard link would change another file
                raise SyncError(f"/{tmp_rel}: not a received file (a {kind_of(st.st_mode)}, {st.st_nlink} links)")
            digest = hashlib.sha256()
            while chunk := os.read(fd, CHUNK):
                digest.update(chunk)
            got = digest.hexdigest()
            if got != sha256:
                os.unlink(tmp, dir_fd=d)
                raise SyncError(f"received content has SHA-256 {got[:12]}..., expected {sha256[:12]}...: discarded")
            os.fchown(fd, attributes.uid, attributes.gid)
            os.fchmod(fd, attributes.mode)  # after chown, which clears set-id bits
            os.utime(fd, ns=(attributes.atime_ns, attributes.mtime_ns))
            os.fsync(fd)
        finally:
            os.close(fd)
        self._make_room(d, name, clear=False)
        os.replace(tmp, name, src_dir_fd=d, dst_dir_fd=d)
        self._changed_in(rel)
        return f"{rel}: in place ({sha256[:12]}...)"

    def make_dir(self, rel: str, attributes: Attributes) -> str:
        d, name = self._parent(rel, create=True)
        try:
            is_dir = stat.S_ISDIR(os.stat(name, dir_fd=d, follow_symlinks=False).st_mode)
        except FileNotFoundError:
            is_dir = False
        if not is_dir:
            self._make_room(d, name, clear=True)
            os.mkdir(name, 0o700, dir_fd=d)  # private until its owner and mode are set
            self._changed_in(rel)
        fd = os.open(name, DIR_OPEN | os.O_NOFOLLOW, dir_fd=d)
        try:
            os.fchown(fd, attributes.uid, attributes.gid)
            os.fchmod(fd, attributes.mode)
        finally:
            os.close(fd)
        return f"{rel}: directory ({attributes.mode:04o})"

    def make_link(self, rel: str, target: str, attributes: Attributes) -> str:
        d, name = self._parent(rel, create=True)
        self._make_room(d, name, clear=False)
        tmp = f"{TMP_PREFIX}{secrets.token_hex(6)}"
        os.symlink(target, tmp, dir_fd=d)
        try:
            os.chown(tmp, attributes.uid, attributes.gid, dir_fd=d, follow_symlinks=False)
            os.replace(tmp, name, src_dir_fd=d, dst_dir_fd=d)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=d)
            raise
        self._changed_in(rel)
        return f"{rel}: symlink"

    def remove(self, rel: str) -> str:
        """Delete a file, a symlink (never its target) or an empty directory."""
        try:
            d, name = self._parent(rel)
            kind = kind_of(os.stat(name, dir_fd=d, follow_symlinks=False).st_mode)
        except (_Missing, FileNotFoundError):
            return f"{rel}: already absent"
        if kind == "dir":
            os.rmdir(name, dir_fd=d)
        elif kind in ("file", "link"):
            os.unlink(name, dir_fd=d)
        else:
            raise SyncError(f"a {kind}: a sync deletes only files, directories and symlinks")
        self._changed_in(rel)
        return f"{rel}: deleted"

    def discard(self, steps: list[Step]) -> None:
        """Remove the temp files of steps that will not run, where this host may write (a temp
        file elsewhere waits for clean_temp, or for an operator), never through a symlink."""
        for step in steps:
            if step.kind != "file" or refusal(self.entries, step.tmp) is not None:
                continue
            with contextlib.suppress(OSError, SyncError):
                d, name = self._parent(step.tmp)
                if stat.S_ISREG(os.stat(name, dir_fd=d, follow_symlinks=False).st_mode):
                    os.unlink(name, dir_fd=d)


def commit(root: str, tmp_rel: str, rel: str, sha256: str, attributes: Attributes) -> str:
    """One received file put in place under `root`, as if `root` were one 'sync' entry."""
    return _single(root, {"tmp": tmp_rel, "path": rel, "sha256": sha256, **asdict(attributes)})


def remove(root: str, rel: str) -> str:
    """One path deleted under `root`, as if `root` were one 'sync' entry."""
    return _single(root, {"path": rel, "delete": True})


def _single(root: str, item: dict[str, object]) -> str:
    lines: list[str] = []
    try:
        apply_batch(root, (SyncEntry("/"),), [item], lines.append)
    except SyncError as e:
        raise SyncError(str(e).removeprefix(f"/{item['path']}: ")) from None
    return "\n".join(lines)
